"""Does PyTorch's sync need its own, in-place list operations?

`algorithm.sync` is written once and does its arithmetic through list operations the caller
gives. TensorFlow and JAX use `algorithm.KerasListOps` (`keras.ops`, new values); PyTorch's
step uses `_steps.TorchListOps` (torch's multi-tensor `_foreach_` ops, writing in place into
the variables' storage). This script measures whether that second set earns its place: the
sync alone on Keras variables in torch eager, through `KerasListOps` with each part assigned
(`Variable.assign`) against through `TorchListOps` with its in-place writes, side by side in
one process (benchmarks/_harness.compare: alternating call by call, median of per-round
ratios), for Lookahead (α 0.5) and with outer momentum (SNOO: rate 0.8, μ 0.75), by size.
A sync runs every k-th step, so at k=1 its cost is the step's extra cost; at larger k, 1/k of it.

    python -m benchmarks.torch_sync_ops           # 1M, 4M, 16M; 4 to 9 minutes on 2 cores
    python -m benchmarks.torch_sync_ops --quick   # smoke run (1M)
    python -m benchmarks.torch_sync_ops --tiny    # the tests' profile (20k parameters)

Writes benchmarks/results/torch_sync_ops.md and .json. The measurement runs in a subprocess
with KERAS_BACKEND=torch (the backend is fixed when Keras is imported).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from benchmarks import _harness as h
from benchmarks import _workloads as wl

FORMS = (("lookahead", 0.0, wl.ALPHA), ("outer momentum", wl.OUTER_MOMENTUM, wl.OUTER_RATE))


def sync_pair(shapes, momentum, rate):
    """(in place, plain): two calls running the same sync on the same Keras variables."""
    import keras
    import torch

    from keras_lookahead import _steps, algorithm

    def variables(seed):
        return [keras.Variable(a) for a in wl.random_arrays(shapes, seed, 0.01)]

    fast, slow = variables(0), variables(1)
    buffers = variables(2) if momentum else []
    outer = algorithm.Outer(rate, momentum)
    targets = {"fast": fast, "slow": slow, "buffer": buffers}
    in_place = _steps.TorchListOps()

    def run(list_ops, write):
        with torch.no_grad():
            read = list_ops.read
            inputs = algorithm.SyncInputs([read(v) for v in fast], [read(v) for v in slow],
                                          [read(v) for v in buffers], [], [], [], [])
            algorithm.sync(inputs, outer, [], [], list_ops,
                           lambda part, values: write(targets.get(part, []), values))

    everything = fast + slow + buffers
    start = [keras.ops.convert_to_numpy(v).copy() for v in everything]

    def result_of(list_ops, write):
        for v, a in zip(everything, start):
            v.assign(a)
        run(list_ops, write)
        return [keras.ops.convert_to_numpy(v).copy() for v in everything]

    # Both must compute the same sync, or the timing compares two different things.
    plain = (algorithm.KerasListOps, _steps._assign)  # what CondStep writes with
    a, b = result_of(in_place, in_place.write), result_of(*plain)
    if not all(np.allclose(x, y, rtol=1e-5, atol=1e-7) for x, y in zip(a, b)):
        raise AssertionError("the in-place and the plain sync disagree")
    return (lambda: run(in_place, in_place.write),
            lambda: run(*plain))


def worker(sizes, rounds, out):
    results = {}
    for size in sizes:
        shapes = wl.parameter_shapes(size)
        calls = min(200, max(2, round(20 * 4_000_000 / size)))  # 80, 20, 5 at 1M, 4M, 16M
        for name, momentum, rate in FORMS:
            in_place, plain = sync_pair(shapes, momentum, rate)
            r = h.compare(in_place, plain, calls=calls, rounds=rounds)
            results.setdefault(str(size), {})[name] = r
            h.progress(f"  {size / 1e6:g}M {name:15s}: plain / in place {r['ratio']:.3f} "
                       f"({r['ratio_min']:.2f}–{r['ratio_max']:.2f})")
    with open(out, "w") as f:
        json.dump(results, f)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--out", default=h.RESULTS)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--sizes", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error(f"--rounds {args.rounds}: must be 1 or more")
    if args.worker:
        worker([int(s) for s in args.sizes.split(",")], args.rounds, args.worker)
        return
    sizes = ((20_000,) if args.tiny else (1_000_000,) if args.quick
             else (1_000_000, 4_000_000, 16_000_000))
    rounds = 2 if args.tiny or args.quick else args.rounds
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "results.json")
        subprocess.run([sys.executable, "-m", "benchmarks.torch_sync_ops", "--worker", path,
                        "--sizes", ",".join(map(str, sizes)), "--rounds", str(rounds)],
                       env={**os.environ, "KERAS_BACKEND": "torch"}, check=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        with open(path) as f:
            results = json.load(f)
    info = h.machine()
    lines = h.header("PyTorch's sync: in-place list operations or keras.ops",
                     h.command_line(), info) + [
        "The sync alone (`algorithm.sync`) on Keras variables in torch eager, through "
        "`algorithm.KerasListOps` with each part assigned, against through "
        "`_steps.TorchListOps` (in-place multi-tensor ops, PyTorch's step): time of the "
        f"first / time of the second, median of per-round ratios ({rounds} rounds), min–max "
        f"in brackets. Lookahead: α {wl.ALPHA}; outer momentum: rate {wl.OUTER_RATE}, "
        f"μ {wl.OUTER_MOMENTUM}, Nesterov. Above 1: the in-place operations are cheaper.", "",
        "| parameters | " + " | ".join(name for name, _, _ in FORMS) + " |",
        "|---|" + "---|" * len(FORMS)]
    for size, r in results.items():
        cells = [f"{r[n]['ratio']:.3f} ({r[n]['ratio_min']:.2f}–{r[n]['ratio_max']:.2f})"
                 for n, _, _ in FORMS]
        lines.append(f"| {int(size) / 1e6:g}M | " + " | ".join(cells) + " |")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "torch_sync_ops.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    h.write_json(os.path.join(args.out, "torch_sync_ops.json"),
                 {"command": h.command_line(), "machine": info, "rounds": rounds,
                  "results": results})
    h.progress(f"wrote {os.path.join(args.out, 'torch_sync_ops.md')}")


if __name__ == "__main__":
    main()
