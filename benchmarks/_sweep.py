"""Resumable sweeps: each run is one process writing one result file; a run whose file exists
is not redone, so an interrupted sweep restarts where it stopped, but only if the file records
the arguments the sweep asks for (a run's name does not hold them all). One progress line per
run."""

import json
import os
import subprocess
import sys
import time

from benchmarks import _harness as h


# Arguments that say where a run writes, or how much it prints, not what it computes; they are
# not compared with a record's (a sweep's data folder may be a fresh temporary extraction, so
# only whether one was given is compared).
WHERE_AND_HOW_LOUD = frozenset({"out", "run_dir", "resume", "verbose", "checkpoint_dir",
                                "vocab_dir", "tfds_dir"})


def argument_changes(recorded, requested, before=None):
    """The arguments whose value in a run's record (`recorded`: its "args") differs from the
    run asked for (`requested`: the training script's parsed arguments, as a dict), as
    ["--name recorded (asked: requested)", ...]. An argument the record lacks (the script gained
    it later) counts with `before[name]`, the value the script used before it existed, and as
    changed when `before` does not say."""
    before = before or {}
    changes = []
    for key, asked in requested.items():
        if key in WHERE_AND_HOW_LOUD:
            continue
        then = recorded[key] if key in recorded else before.get(key, _NOT_RECORDED)
        if key == "data_dir":
            then, asked = (then if then is _NOT_RECORDED else bool(then)), bool(asked)
        if _plain(then) != _plain(asked):
            shown = "not recorded" if then is _NOT_RECORDED else repr(_plain(then))
            changes.append(f"--{key.replace('_', '-')} {shown} (asked: {_plain(asked)!r})")
    return changes


_NOT_RECORDED = object()


def _plain(value):
    """A value as JSON gives it back: tuples are lists."""
    return list(value) if isinstance(value, tuple) else value


def refuse_changed_record(tag, path, recorded, argv, parse, before=None):
    """Stops the sweep if the record at `path` was made with other arguments than `argv`
    (parsed by the training script's `parse`), naming them: a record is only kept for the run
    it records."""
    changes = argument_changes(recorded, vars(parse(argv)), before)
    if changes:
        raise SystemExit(
            f"{tag}: the record {path} was made with other arguments than this sweep asks for: "
            f"{'; '.join(changes)}. Remove it (and the run's log) to re-run it with these "
            "arguments, or give the sweep another --out.")


def run_sweep(runs, command, result_path, summary, log_dir, cwd, *, parse, before=None,
              done=os.path.exists):
    """runs: [(name, extra arguments)]; command(name, extra) is the run's argv after the
    Python executable (["-m", module, ...]), run from `cwd`; result_path(name) is the JSON
    record the run writes (its "args" are the script's parsed arguments), and
    done(result_path(name)) says whether the run is finished (by default: the file exists);
    summary(name) is the run's progress line. A run's output goes to <log_dir>/<name>.log.

    A record already there (finished, or one a run resumes from) must have been made with the
    arguments asked for now, as the training script's `parse` reads them (`before`: the
    values of arguments the script gained later, for older records); otherwise the sweep stops
    before running anything, naming the arguments that differ (refuse_changed_record)."""
    os.makedirs(log_dir, exist_ok=True)
    for i, (name, extra) in enumerate(runs, 1):
        path = result_path(name)
        if os.path.exists(path):
            with open(path) as f:
                recorded = json.load(f)["args"]
            argv = command(name, extra)
            refuse_changed_record(f"[{i}/{len(runs)}] {name}", path, recorded,
                                  argv[2:] if argv[0] == "-m" else argv, parse, before)
    for i, (name, extra) in enumerate(runs, 1):
        tag = f"[{i}/{len(runs)}] {name}"
        if done(result_path(name)):
            h.progress(f"{tag}: done before, kept")
            continue
        start = time.time()
        log_path = os.path.join(log_dir, f"{name}.log")
        with open(log_path, "w") as log:
            code = subprocess.run([sys.executable, *command(name, extra)], stdout=log,
                                  stderr=subprocess.STDOUT, cwd=cwd).returncode
        if code or not done(result_path(name)):
            raise SystemExit(f"{tag} failed (exit {code}): see {log_path}")
        h.progress(f"{tag}: {summary(name)} ({time.time() - start:.0f} s)")


def load_run_records(folder, done=os.path.exists):
    """{run name: record} of the runs in `folder` (one sub-folder each, its record.json) that
    done(path) says are finished."""
    records = {}
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name, "record.json")
            if done(path):
                with open(path) as f:
                    records[name] = json.load(f)
    return records


def partial_sweep(names, finished, seeds, later=None):
    """(how many of the main comparison's runs are not finished, the report's line naming
    them): the runs of `names` not in `finished`, then `later` = (count, description) for runs
    that cannot be named yet (their rates come from runs not finished), counted with them; no
    line when every one has finished."""
    missing = [n for n in names if n not in finished]
    count = len(missing) + (later[0] if later else 0)
    if not count:
        return 0, []
    missing += [later[1]] if later else []
    return count, [f"**A partial sweep**: {count} run{'s' if count > 1 else ''} of the "
                   f"main comparison ({seeds} seeds) not finished yet: {', '.join(missing)}.",
                   ""]


def add_common_arguments(parser, script):
    """--data-dir, --out, --report and the arguments after `--`, passed to every run."""
    parser.add_argument("--data-dir", help=f"passed to {script} (default: tfds)")
    parser.add_argument("--out", default=h.RESULTS)
    parser.add_argument("--report", action="store_true", help="only rewrite the report")
    parser.add_argument("extra", nargs="...",
                        help="after --: more arguments for every run, e.g. -- --epochs 3")


def main(parser, argv, run_all, write_report, check=None):
    """Parses, checks --seeds (and what check(parser, args) checks), runs what is missing
    (unless --report), writes the report."""
    args = parser.parse_args(argv)
    if args.extra and args.extra[0] == "--":
        args.extra = args.extra[1:]
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds}: must be 1 or more")
    if check:
        check(parser, args)
    if not args.report:
        run_all(args)
    write_report(args)
