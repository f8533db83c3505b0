"""PyTorch beside tf.data on shared cores: a torch-backend run of the CIFAR harness (fed by a
tf.data pipeline) alone and two at once, with PyTorch's OpenMP threads as they come, waiting
passively (`OMP_WAIT_POLICY=PASSIVE`) or one per process (`OMP_NUM_THREADS=1`).

Each measurement is one process of `benchmarks.cifar.train` (KERAS_BACKEND=torch, the `cpu`
profile's ResNet-18 at width 16, batch 128, synthetic images: no download), whose record gives
every epoch's training time. "two at once" starts two such processes together and takes both
of their times. The settings are interleaved round by round, so a slow spell of the machine
falls on all of them alike; the report gives each setting's median epoch time and its ratio
to "alone" with the default threads. Epoch 1 holds the first steps' set-up; the later epochs
are the steady state. Writes benchmarks/results/torch_threads.{md,json}.

    python -m benchmarks.torch_threads            # about 10 minutes on 2 cores
    python -m benchmarks.torch_threads --tiny     # a smoke run of the harness (seconds a run)
    python -m benchmarks.torch_threads --from-json

docs/backends.md ("PyTorch beside tf.data") says what a user should set.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile

from benchmarks import _harness as h

# --settings name: (label, environment settings, processes at once)
SETTINGS = {
    "alone": ("alone", {}, 1),
    "alone-passive": ("alone, OMP_WAIT_POLICY=PASSIVE", {"OMP_WAIT_POLICY": "PASSIVE"}, 1),
    "two": ("two at once", {}, 2),
    "two-passive": ("two at once, OMP_WAIT_POLICY=PASSIVE", {"OMP_WAIT_POLICY": "PASSIVE"}, 2),
    "two-one-thread": ("two at once, OMP_NUM_THREADS=1", {"OMP_NUM_THREADS": "1"}, 2),
}
# What the measured processes must not inherit: the settings under test (the test suite's
# conftest sets OMP_WAIT_POLICY for every process it starts).
_CLEARED = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")


def train_command(args, out):
    profile = ["--profile", "tiny"] if args.tiny else ["--profile", "cpu", "--milestones", "1"]
    return h.module_command("benchmarks.cifar.train", *profile, "--optimizer", "lookahead-sgd",
                            "--synthetic", args.images, "--epochs", args.epochs,
                            "--no-train-eval", "--verbose", 0, "--out", out)


def measure(args, name):
    """One round of setting `name`: its processes started together; per process, its epochs'
    training seconds and its steps per epoch."""
    label, settings, count = SETTINGS[name]
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.update(settings, KERAS_BACKEND="torch", TF_CPP_MIN_LOG_LEVEL="3")
    with tempfile.TemporaryDirectory() as tmp:
        outs = [os.path.join(tmp, f"run{i}.json") for i in range(count)]
        procs = [subprocess.Popen(train_command(args, out), cwd=h.ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for out in outs]
        errors = [p.communicate()[1] for p in procs]
        for p, err in zip(procs, errors):
            if p.returncode:
                raise SystemExit(f"{label}: a training process failed (exit {p.returncode}):\n"
                                 f"{err[-2000:]}")
        runs = []
        for out in outs:
            with open(out) as f:
                record = json.load(f)
            runs.append({"seconds": [e["seconds"] for e in record["epochs"]],
                         "steps_per_epoch": record["steps_per_epoch"]})
    return runs


def run_all(args):
    runs = {name: [] for name in args.settings}
    done, total = 0, args.rounds * len(args.settings)
    for _ in range(args.rounds):
        for name in args.settings:
            got = measure(args, name)
            runs[name] += got
            done += 1
            times = "; ".join(", ".join(f"{s:.1f}" for s in one["seconds"]) for one in got)
            h.progress(f"[{done}/{total}] {SETTINGS[name][0]}: epoch seconds {times}")
    return runs


def measure_all(args, payload):
    payload["runs"] = run_all(args)
    payload["summary"] = summarize(payload["runs"])


def summarize(runs):
    """Per setting: median seconds of epoch 1 and of the later epochs, and their ratios to
    "alone"."""
    def median(name, later):
        return statistics.median(s for one in runs[name]
                                 for s in (one["seconds"][1:] if later else one["seconds"][:1]))

    summary = {}
    for name in runs:
        first, later = median(name, False), median(name, True)
        summary[name] = {"label": SETTINGS[name][0], "first_s": first, "later_s": later,
                         "first_ratio": first / median("alone", False),
                         "later_ratio": later / median("alone", True),
                         "processes": len(runs[name])}
    return summary


def write_results(payload, out):
    args, summary = payload["args"], payload["summary"]
    lines = h.header("PyTorch beside tf.data on shared cores", payload["command"],
                     payload["machine"]) + [
        f"A torch-backend run of the CIFAR harness (Lookahead(SGD), "
        f"{'the tiny profile' if args['tiny'] else 'the cpu profile: ResNet-18 at width 16'}, "
        f"batch {payload['batch_size']}, "
        f"{payload['runs']['alone'][0]['steps_per_epoch']} steps an epoch on "
        f"synthetic images, fed by tf.data), alone or two at once, {args['epochs']} epochs, "
        f"{args['rounds']} round{'s' if args['rounds'] != 1 else ''} of every setting "
        "interleaved. Medians over every process of a setting; the ratio is to the median of "
        "\"alone\" with PyTorch's default threads.",
        "", "| setting | processes measured | epoch 1, s | ratio | later epochs, s | ratio |",
        "|---|---|---|---|---|---|"]
    for s in summary.values():
        lines.append(f"| {s['label']} | {s['processes']} | {s['first_s']:.2f} | "
                     f"{s['first_ratio']:.2f} | {s['later_s']:.2f} | {s['later_ratio']:.2f} |")
    lines += ["", "Every process's epoch times are in `torch_threads.json`.", ""]
    h.write_json(os.path.join(out, "torch_threads.json"), payload)
    with open(os.path.join(out, "torch_threads.md"), "w") as f:
        f.write("\n".join(lines))
    h.progress(f"wrote {os.path.join(out, 'torch_threads.md')}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="measurements of every setting")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--images", type=int, default=2400,
                   help="synthetic images (4 in 5 for training: 15 steps of 128 by default)")
    p.add_argument("--settings", default=",".join(SETTINGS),
                   help="comma-separated, from: " + ", ".join(SETTINGS) + " (alone is always "
                   "measured: the ratios are to it)")
    p.add_argument("--tiny", action="store_true",
                   help="the harness's tiny profile, 80 images, 2 epochs, one round")
    p.add_argument("--out", default=h.RESULTS)
    p.add_argument("--from-json", action="store_true",
                   help="rewrite torch_threads.md from torch_threads.json (no training)")
    args = p.parse_args(argv)
    for name in ("rounds", "epochs", "images"):
        if getattr(args, name) < (2 if name == "epochs" else 1):
            p.error(f"--{name} {getattr(args, name)}: must be "
                    f"{'2' if name == 'epochs' else '1'} or more")
    names = [n for n in args.settings.split(",") if n]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown or not names:
        p.error(f"--settings {args.settings!r}: choose from {', '.join(SETTINGS)}")
    args.settings = ["alone"] + [n for n in dict.fromkeys(names) if n != "alone"]
    if args.tiny:
        args.rounds, args.epochs, args.images = 1, 2, 80
    return args


def main(argv=None):
    args = parse_args(argv)
    h.measure_or_rewrite(args, "torch_threads", ("rounds", "epochs", "images", "tiny",
                                                 "settings"),
                         measure_all, write_results, batch_size=16 if args.tiny else 128)


if __name__ == "__main__":
    main()
