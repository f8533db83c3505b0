"""Timing helpers shared by the benchmark scripts.

Every comparison is made side by side in one process: after warm-up the two functions are
called alternately, call by call (so drift in machine load hits both), in rounds; the ratio is
taken round by round before the median. Absolute times on a shared machine mean
little; ratios measured this way are what the results files report.
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import time

# The benchmarks run as modules from the repository root (`python -m benchmarks.performance`),
# so that they import each other, the package and the examples' helpers without path edits.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")


def module_command(module, *args):
    """The argv that runs `module` (e.g. "benchmarks.cifar.train") in a new Python process;
    run it with cwd=ROOT."""
    return [sys.executable, "-m", module, *map(str, args)]


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(baseline, candidate, *, calls, rounds, warmup=3):
    """Median seconds per call of each, and the median of per-round ratios candidate/baseline.

    Within a round the two alternate call by call (ABAB..., BABA... in the next round), so a
    change in machine load hits both; a round's ratio is total candidate time / total baseline
    time over its calls.
    """
    for _ in range(warmup):
        baseline()
        candidate()
    base, cand, ratios = [], [], []
    for r in range(rounds):
        tb = tc = 0.0
        for _ in range(calls):
            if r % 2:
                tc += _timed(candidate)
                tb += _timed(baseline)
            else:
                tb += _timed(baseline)
                tc += _timed(candidate)
        base.append(tb / calls)
        cand.append(tc / calls)
        ratios.append(tc / tb)
    return {
        "baseline_s": statistics.median(base),
        "candidate_s": statistics.median(cand),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "rounds": rounds,
        "calls_per_round": calls,
    }


def machine(imported_only=False):
    """The CPU, its cores, Python, the versions of keras, tensorflow, jax, torch and numpy (with
    imported_only: those the process has imported, so that naming them loads nothing) and the
    commit."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}
    for mod in ("keras", "tensorflow", "jax", "torch", "numpy"):
        if imported_only and mod not in sys.modules:
            continue
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # not installed
            pass
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                        capture_output=True, text=True,
                                        cwd=os.path.dirname(__file__)).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True,
                                 cwd=os.path.dirname(__file__)).stdout.strip()
        if changed:  # the numbers come from code that is not that commit
            info["commit"] += " with uncommitted changes"
    except OSError:
        pass
    return info


def machines_line(records):
    """The report's line saying where its runs ran, from the `machines` each record keeps (the
    machine a run started on, then any other it was resumed on): runs are made over several
    sessions, and the machine that writes the report need not be theirs."""
    counts = {}
    for r in records:
        key = " then ".join(f"{m.get('cpu', 'unknown')}, {m.get('cores', '?')} cores, commit "
                            f"{m.get('commit', 'unknown')}" for m in r.get("machines", []))
        counts[key] = counts.get(key, 0) + 1
    parts = [f"{key or 'not recorded (made before records named their machine)'} "
             f"({n} run{'s' if n > 1 else ''})"
             for key, n in sorted(counts.items(), key=lambda kv: (not kv[0], kv[0]))]
    return [f"Runs made on: {'; '.join(parts)}.", ""]


def record_machine(record):
    """Adds this process's machine to `record["machines"]` unless it is the last one there."""
    here = machine(imported_only=True)
    seen = record.setdefault("machines", [])
    if not seen or seen[-1] != here:
        seen.append(here)


def command_line():
    """The command that started this process, as a user would type it from the root."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    start = f"-m {spec.name}" if spec is not None else os.path.relpath(sys.argv[0])
    return " ".join(["python", start, *sys.argv[1:]])


def header(title, command, machine, source="", detail=""):
    """The opening lines every results file shares: its title, the command that wrote it (and
    from what, for a report rewritten from run records), the machine with the versions of what
    was installed and the commit (for a report from run records: where the report was written;
    machines_line says where the runs ran), then `detail` (how the numbers were measured)."""
    versions = ", ".join(f"{m} {machine[m]}" for m in ("keras", "tensorflow", "jax", "torch",
                                                       "numpy") if m in machine)
    written = f"Written by `{command}`" + (f" from {source}" if source else "")
    lines = [f"# {title}", "", f"{written}; do not edit by hand.", "",
             f"{'Report written on' if source else 'Machine'}: "
             f"{machine.get('cpu', 'unknown')}, {machine.get('cores', '?')} cores; "
             f"{versions or 'no versions recorded'}; commit {machine.get('commit', 'unknown')}.",
             ""]
    return lines + ([detail, ""] if detail else [])


def write_json(path, payload):
    """`payload` as JSON at `path`, replaced in one step: a reader (or a run resumed after a
    crash) sees the old file or the new one, never half of it."""
    with open(path + ".tmp", "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def progress(msg):
    print(msg, flush=True)


def measure_or_rewrite(args, stem, arg_names, measure, write_results, **fixed):
    """The main of a script that writes `<stem>.md` and `<stem>.json` into `args.out`. With
    `args.from_json` the report is rewritten from the JSON and nothing is measured; otherwise
    the payload (the command, the machine, the arguments named in `arg_names`, then `fixed`)
    gets its measurements from `measure(args, payload)`, which adds them to it, and is written
    by `write_results(payload, out)`."""
    os.makedirs(args.out, exist_ok=True)
    if args.from_json:
        with open(os.path.join(args.out, stem + ".json")) as f:
            return write_results(json.load(f), args.out)
    payload = {"command": command_line(), "machine": machine(),
               "args": {k: getattr(args, k) for k in arg_names}, **fixed}
    measure(args, payload)
    return write_results(payload, args.out)
