"""Resumable sweeps: each run is one process writing one result file; a run whose file exists
is not redone, so an interrupted sweep restarts where it stopped. One progress line per run."""

import os
import subprocess
import sys
import time

from benchmarks import _harness as h


def run_sweep(runs, command, result_path, summary, log_dir, cwd, done=os.path.exists):
    """runs: [(name, extra arguments)]; command(name, extra) is the run's argv after the
    Python executable (["-m", module, ...]), run from `cwd`; result_path(name) is the file the
    run writes last, and done(result_path(name)) says whether the run is finished (by default:
    the file exists); summary(name) is the run's progress line. A run's output goes to
    <log_dir>/<name>.log."""
    os.makedirs(log_dir, exist_ok=True)
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
    import json

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
