"""The performance suite: what Lookahead costs, against its inner optimizer and against peers.

One command, each Keras backend in its own process (the backend is fixed at import), every
comparison timed side by side in that process (benchmarks/_harness.compare: alternating call by
call after warm-up, median of per-round ratios):

- scaling: the optimizer step alone, Lookahead(inner) / inner, for 1M, 4M, 16M and 64M float32
  parameters, k in {1, 2, 5, 10, 20}, inner Adam and SGD(momentum=0.9), in every execution mode
  (TensorFlow XLA and graph, JAX jit, PyTorch eager), with the measured limit beside it: the
  sync alone (slow <- slow + alpha(fast - slow); fast <- slow), timed in the same mode, / k;
- peers at every size, k=5: optax.lookahead(adam) / optax.adam (JAX) and pytorch-optimizer's
  Lookahead(Adam) / torch.optim.Adam (PyTorch), each against its own framework's inner optimizer;
- memory: bytes of optimizer state (optimizer.variables) per inner_state mode, and the peak
  resident memory of a process that builds and steps the optimizer on 16M parameters;
- whole training step: model.fit of a ResNet-style CNN and of a small Transformer encoder.

Writes benchmarks/results/performance.md, performance.json (every raw number) and
performance_scaling.png. On a machine with a GPU, every backend is measured again with the GPU
visible (the "device" column; `--devices gpu` for that column alone); here only the CPU is. Each
timed call waits for the device: JAX blocks on its outputs, PyTorch synchronizes CUDA. The GPU
column has been measured for JAX and PyTorch (benchmarks/results/gpu/); TensorFlow was not on that
machine, and whether its timed tf.function calls wait for the GPU's queue is not verified.

    python -m benchmarks.performance                  # everything, under 20 minutes on 2 cores
    python -m benchmarks.performance --quick          # a smoke run of every part (~3 minutes)
    python -m benchmarks.performance --tiny           # every part at the smallest sizes (the
                                                      # tests' profile: it proves the suite runs)
    python -m benchmarks.performance --backends jax   # one backend
    python -m benchmarks.performance --sizes 4000000,16000000 --ks 5 --inners Adam \
        --optimizer-only --out /tmp/perf              # the headline cells alone
    python -m benchmarks.performance --from-json      # rewrite .md/.png from performance.json
"""

import argparse
import gc
import importlib.util
from importlib import metadata
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from benchmarks import _harness as h
from benchmarks import _workloads as wl

RESULTS = h.RESULTS
BACKENDS = ("tensorflow", "jax", "torch")
SIZES = (1_000_000, 4_000_000, 16_000_000, 64_000_000)
KS = (1, 2, 5, 10, 20)
PEER_K = 5
TARGET_OPTIMIZER = wl.TARGET_OPTIMIZER  # Lookahead(Adam)/Adam at k=5, compiled paths
TARGET_FIT = wl.TARGET_FIT
COMPILED = {("tensorflow", "XLA"), ("tensorflow", "graph"), ("jax", "jit")}
MEMORY_PARAMS = 16_000_000
TINY_PARAMS = 20_000  # --tiny's one size, for the optimizer step and the memory probes
# --tiny's CNN width: its strided 1x1 convolution needs 16 input channels on torch, whose CPU
# convolutions hang or crash below that (docs/backends.md, "Few channels")
TINY_CNN_WIDTH = 16
NEVER = 10**9  # a sync period no measurement reaches
INNER_STATES = ("maintain", "reset", "interpolate")
MODES = {"tensorflow": ("XLA", "graph"), "jax": ("jit",), "torch": ("eager",)}
INNERS = ("Adam", "SGD(momentum=0.9)")
# the rows of Lookahead with outer momentum (ours, not a peer)
SNOO = "keras_lookahead, outer momentum"


def calls_for(size, args):
    """Calls per round: about the same time per comparison at every size."""
    return max(2, int(args.calls * 4_000_000 / size))


def cycle_rounds(calls, k, args, rounds=None):
    """(calls, rounds) for a Lookahead comparison: every round a whole number of sync periods.

    A round's ratio is its Lookahead time over its inner time; a round of 2 calls at k=5 holds
    one sync or none, and the median over such rounds falls below the true mean cost (it
    measured 0.92-0.99 at 16M-64M, below 1). So a round takes the next multiple of k calls,
    and the rounds shrink to keep about the same number of calls, at least 3 of them."""
    rounds = args.rounds if rounds is None else rounds
    per_round = k * -(-calls // k)
    return per_round, max(min(3, rounds), round(rounds * calls / per_round))


def is_headline(backend, mode, inner_name):
    """Whether the target is judged on this path's k=5 cell: Lookahead(Adam), compiled."""
    return inner_name == "Adam" and (backend, mode) in COMPILED


# -- scaling and peers ---------------------------------------------------------------------------

def scaling_rows(backend, args):
    import keras_lookahead

    modes_of = {"tensorflow": wl.tf_modes, "jax": wl.jax_modes, "torch": wl.torch_modes}[backend]
    size, mode, inner_name = args.worker_size, args.worker_mode, args.worker_inner
    make_inner = wl.keras_inners()[inner_name]
    shapes = wl.parameter_shapes(size)
    calls = calls_for(size, args)
    optimizer_step, sync_step = modes_of(shapes)[mode]
    base = optimizer_step(make_inner)
    # The headline cells and the sync timing their limit comes from get more rounds: per-round
    # ratios spread by about +-0.1 here, and at 16M-64M a k=5 cell has only 3 rounds otherwise.
    headline = is_headline(backend, mode, inner_name)
    rounds = args.headline_rounds if headline else args.rounds
    sync = h.compare(base, sync_step(), calls=calls, rounds=rounds)
    never = None
    if headline:
        # Lookahead whose sync never comes: the per-step cost of its form alone (the selects
        # under XLA read and write the slow weights on every step).
        la = optimizer_step(lambda: keras_lookahead.Lookahead(
            make_inner(), sync_period=NEVER, slow_step_size=wl.ALPHA))
        never = h.compare(base, la, calls=calls, rounds=rounds)["ratio"]
        del la
    rows = []
    for k in args.ks:
        la = optimizer_step(lambda k=k: keras_lookahead.Lookahead(
            make_inner(), sync_period=k, slow_step_size=wl.ALPHA))
        k_calls, k_rounds = cycle_rounds(calls, k, args, rounds if headline and k == PEER_K
                                         else None)
        r = h.compare(base, la, calls=k_calls, rounds=k_rounds)
        r.update(backend=backend, mode=mode, inner=inner_name, k=k, params=size,
                 implementation="keras_lookahead", sync_over_inner=sync["ratio"],
                 limit=1 + sync["ratio"] / k, never_sync=never)
        rows.append(r)
        h.progress(f"  {backend:10s} {mode:5s} {size / 1e6:3g}M {inner_name:18s} "
                   f"k={k:2d}: {r['ratio']:.3f} (limit {r['limit']:.3f})")
        del la
        gc.collect()
    if inner_name == "Adam" and PEER_K in args.ks:
        rows.append(outer_momentum_row(backend, mode, size, base, optimizer_step, sync_step,
                                       make_inner, calls, rounds if headline else None, args))
    del base
    gc.collect()
    if inner_name == "Adam" and mode == MODES[backend][0]:
        rows += peer_rows(backend, shapes, size, calls, args)
    return rows


def outer_momentum_row(backend, mode, size, base, optimizer_step, sync_step, make_inner, calls,
                       rounds, args):
    """Lookahead with outer momentum (SNOO: rate wl.OUTER_RATE, μ wl.OUTER_MOMENTUM, Nesterov)
    around Adam at k=PEER_K, against Adam, with its limit: 1 + (its sync alone)/k."""
    import keras_lookahead

    sync = h.compare(base, sync_step(momentum=wl.OUTER_MOMENTUM), calls=calls,
                     rounds=rounds or args.rounds)
    la = optimizer_step(lambda: keras_lookahead.Lookahead(
        make_inner(), sync_period=PEER_K, slow_step_size=wl.OUTER_RATE,
        slow_momentum=wl.OUTER_MOMENTUM))
    k_calls, k_rounds = cycle_rounds(calls, PEER_K, args, rounds)
    r = h.compare(base, la, calls=k_calls, rounds=k_rounds)
    r.update(backend=backend, mode=mode, inner="Adam", k=PEER_K, params=size,
             implementation=SNOO, sync_over_inner=sync["ratio"],
             limit=1 + sync["ratio"] / PEER_K, never_sync=None)
    h.progress(f"  {backend:10s} {mode:5s} {size / 1e6:3g}M Adam, outer momentum     "
               f"k={PEER_K:2d}: {r['ratio']:.3f} (limit {r['limit']:.3f})")
    del la
    gc.collect()
    return r


def peer_rows(backend, shapes, size, calls, args):
    calls, rounds = cycle_rounds(calls, PEER_K, args)
    if backend == "jax" and importlib.util.find_spec("optax"):
        rows = wl.optax_rows(shapes, argparse.Namespace(calls=calls, rounds=rounds),
                             ks=(PEER_K,))
    elif backend == "torch" and importlib.util.find_spec("pytorch_optimizer"):
        rows = [torch_peer_row(shapes, calls, rounds)]
    else:
        return []
    for r in rows:
        r["params"] = size
    return rows


def torch_peer_row(shapes, calls, rounds):
    """pytorch-optimizer's Lookahead(Adam) against torch.optim.Adam, eager, fixed gradients."""
    import pytorch_optimizer
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"  # where Keras's torch backend works
    wait = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def stepper(wrap):
        params = [torch.nn.Parameter(torch.as_tensor(a, device=device).clone())
                  for a in wl.random_arrays(shapes, 0, 0.01)]
        for p, g in zip(params, wl.random_arrays(shapes, 1)):
            p.grad = torch.as_tensor(g, device=device)
        opt = torch.optim.Adam(params, lr=1e-3)
        if wrap:
            opt = pytorch_optimizer.Lookahead(opt, k=PEER_K, alpha=wl.ALPHA)

        def run():
            opt.step()
            wait()

        return run

    r = h.compare(stepper(False), stepper(True), calls=calls, rounds=rounds)
    r.update(backend="torch", mode="eager", inner="torch.optim.Adam", k=PEER_K,
             implementation=f"pytorch-optimizer {metadata.version('pytorch-optimizer')}",
             limit=None)
    h.progress(f"  torch      eager pytorch_optimizer.Lookahead(Adam) k={PEER_K}: "
               f"{r['ratio']:.3f}")
    return r


# -- whole training steps ------------------------------------------------------------------------

def transformer_encoder(seed=0, vocab=2000, length=64, width=128, heads=4, blocks=2):
    import keras

    keras.utils.set_random_seed(seed)
    class AddPositions(keras.layers.Layer):
        def build(self, shape):
            self.table = self.add_weight((shape[1], shape[2]), initializer="normal")

        def call(self, x):
            return x + self.table[None]

    tokens = keras.Input((length,), dtype="int32")
    x = AddPositions()(keras.layers.Embedding(vocab, width)(tokens))
    for _ in range(blocks):
        a = keras.layers.MultiHeadAttention(heads, width // heads)(x, x)
        x = keras.layers.LayerNormalization()(x + a)
        f = keras.layers.Dense(4 * width, activation="gelu")(x)
        x = keras.layers.LayerNormalization()(x + keras.layers.Dense(width)(f))
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(tokens, keras.layers.Dense(2)(x))


def fit_rows(backend, args):
    import keras

    from keras_lookahead import Lookahead

    rng = np.random.default_rng(0)
    batch, steps = args.fit_batch, args.fit_steps
    # --tiny: the same two architectures at small widths (its ratios mean nothing)
    image, cnn, vocab, length, width = ((8, TINY_CNN_WIDTH, 50, 8, 8) if args.tiny
                                        else (32, 32, 2000, 64, 128))
    data = {
        "ResNet-style CNN": (lambda: wl.resnet_cnn(image_size=image, width=cnn),
                             rng.normal(size=(steps * batch, image, image, 3)).astype("float32")),
        "Transformer encoder": (
            lambda: transformer_encoder(vocab=vocab, length=length, width=width,
                                        blocks=1 + (not args.tiny)),
            rng.integers(0, vocab, size=(steps * batch, length)).astype("int32")),
    }
    y = rng.integers(0, 2, size=(steps * batch,))
    jit = backend != "torch"  # on torch jit_compile means torch.compile; the eager step is meant
    rows = []
    for name, (build, x) in data.items():
        def fitter(opt, build=build, x=x):
            model = build()
            model.compile(optimizer=opt, jit_compile=jit,
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            return (lambda: model.fit(x, y, batch_size=batch, epochs=1, shuffle=False,
                                      verbose=0)), model

        base, model = fitter(keras.optimizers.Adam(1e-3))
        la, _ = fitter(Lookahead(keras.optimizers.Adam(1e-3), sync_period=5))
        # --tiny: one timed fit each, the first (its numbers mean nothing, its parts all run)
        r = h.compare(base, la, calls=1 if args.tiny else 2, rounds=args.fit_rounds,
                      warmup=0 if args.tiny else 2)
        r.update(backend=backend, model=name, jit_compile=jit, steps_per_call=steps, batch=batch,
                 params=int(sum(np.prod(v.shape) for v in model.trainable_variables)))
        rows.append(r)
        h.progress(f"  {backend:10s} fit step, {name} ({r['params']:,} params): "
                   f"{r['ratio']:.3f}")
    return rows


# -- memory ---------------------------------------------------------------------------------------

def state_rows():
    """Bytes of optimizer.variables, inner alone and per inner_state mode (backend-neutral)."""
    import keras

    from keras_lookahead import Lookahead

    shapes = wl.parameter_shapes(4_000_000)
    params = sum(int(np.prod(s)) for s in shapes)

    def state_bytes(opt):
        opt.build([keras.Variable(np.zeros(s, "float32")) for s in shapes])
        return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in opt.variables)

    rows = []
    for inner_name, make in wl.keras_inners().items():
        alone = state_bytes(make())
        for mode in INNER_STATES:
            extra = state_bytes(Lookahead(make(), inner_state=mode)) - alone
            rows.append({"inner": inner_name, "inner_state": mode, "params": params,
                         "inner_bytes": alone, "extra_bytes": extra,
                         "extra_in_params": extra / (4 * params)})
    return rows


def _reset_peak_rss():
    """Linux: start a new peak-RSS measurement (writing 5 to clear_refs resets VmHWM)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def peak_memory_worker(backend, config, params):
    """In a fresh process: build `params` parameters and Adam (or Lookahead(Adam) with the
    inner_state `config`), take 3 steps, and report the peak resident memory of that part
    (the imports' peak excluded where Linux lets the peak be reset)."""
    import keras

    from keras_lookahead import Lookahead

    shapes = wl.parameter_shapes(params)
    keras.ops.add(keras.ops.ones((2,)), 1.0)  # the backend's runtime up before the measurement
    _reset_peak_rss()
    variables = [keras.Variable(np.full(s, 0.01, "float32")) for s in shapes]
    grads = [keras.ops.convert_to_tensor(np.ones(s, "float32")) for s in shapes]
    opt = keras.optimizers.Adam(1e-3)
    if config != "inner alone":
        opt = Lookahead(opt, sync_period=2, inner_state=config)
    opt.build(variables)
    for _ in range(3):  # eager steps: the same on every backend, syncs included
        opt.apply(grads, variables)
    return _peak_rss_bytes()


def peak_memory_rows(backend, args, configs=("inner alone",) + INNER_STATES):
    """One fresh process per configuration (the first is the baseline the others are read
    against), each reporting its own peak resident memory."""
    rows = []
    for config in configs:
        cmd = h.module_command(__spec__.name, "--peak-memory", config,
                               "--memory-params", args.memory_params)
        env = {**os.environ, "KERAS_BACKEND": backend}
        out = subprocess.run(cmd, check=True, env=env, capture_output=True, text=True,
                             cwd=h.ROOT).stdout
        rows.append({"backend": backend, "config": config, "params": args.memory_params,
                     "peak_bytes": int(out.strip().splitlines()[-1])})
    base = rows[0]["peak_bytes"]
    for r in rows:
        r["extra_in_params"] = (r["peak_bytes"] - base) / (4 * args.memory_params)
    h.progress(f"  {backend:10s} peak memory over Adam alone, in parameter copies: " + ", ".join(
        f"{r['config']} {r['extra_in_params']:+.2f}" for r in rows[1:]))
    return rows


# -- one backend's process -------------------------------------------------------------------------

def worker(backend, args):
    """One part of one backend's measurements: the optimizer step at one size, in one mode,
    for one inner optimizer (--worker-size/-mode/-inner; the peers with Adam), or, with
    --worker-size 0, the fit steps and memory. A fresh process per part: the memory of each
    step built (variables, state, gradients) is not given back to the system within a process
    (measured on TensorFlow for the inner optimizer alone too), and at 64M parameters a
    process building every step runs out of 24 GB."""
    import keras

    assert keras.backend.backend() == backend, (keras.backend.backend(), backend)
    payload = {"optimizer": [], "fit": [], "peak_memory": [], "machine": h.machine()}
    if args.worker_size:
        h.progress(f"[{backend}, {args.device}] optimizer step, {args.worker_size / 1e6:g}M "
                   f"parameters, {args.worker_mode}, {args.worker_inner}")
        payload["optimizer"] = scaling_rows(backend, args)
    else:
        h.progress(f"[{backend}, {args.device}] whole fit steps")
        payload["fit"] = fit_rows(backend, args)
        h.progress(f"[{backend}, {args.device}] memory")
        payload["peak_memory"] = peak_memory_rows(backend, args)
        if backend == "tensorflow":
            payload["state"] = state_rows()
    for part in ("optimizer", "fit", "peak_memory"):
        for r in payload[part]:
            r["device"] = args.device
    h.write_json(args.worker_out, payload)


def gpu_present():
    if shutil.which("nvidia-smi") is None:
        return False
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return out.returncode == 0 and "GPU" in out.stdout


# -- report ----------------------------------------------------------------------------------------

def plot_scaling(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours = [r for r in rows if r["implementation"] == "keras_lookahead"]
    paths = sorted({(r["device"], r["backend"], r["mode"]) for r in ours})
    inners = sorted({r["inner"] for r in ours})
    fig, axes = plt.subplots(len(inners), len(paths), squeeze=False, sharex=True,
                             figsize=(3.2 * len(paths), 2.9 * len(inners)))
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(KS)))
    for i, inner in enumerate(inners):
        for j, (device, backend, mode) in enumerate(paths):
            ax = axes[i][j]
            for k, color in zip(KS, colors):
                pts = sorted((r["params"], r["ratio"], r["limit"]) for r in ours
                             if (r["device"], r["backend"], r["mode"], r["inner"], r["k"])
                             == (device, backend, mode, inner, k))
                if not pts:
                    continue
                xs = [p[0] for p in pts]
                ax.plot(xs, [p[1] for p in pts], "o-", color=color, ms=3, label=f"k={k}")
                ax.plot(xs, [p[2] for p in pts], ":", color=color, lw=1)
            peers = sorted((r["params"], r["ratio"]) for r in rows
                           if not r["implementation"].startswith("keras_lookahead")
                           and r["device"] == device
                           and r["backend"] == backend and inner == "Adam")
            if peers:
                ax.plot([p[0] for p in peers], [p[1] for p in peers], "s--", color="#e45756",
                        ms=3, label=f"peer, k={PEER_K}")
            ax.set_xscale("log")
            ax.axhline(1, color="#999999", lw=0.5)
            ax.set_ylim(0.9, 2.2)
            ax.set_title(f"{backend} {mode} ({device}), {inner.split('(')[0]}", fontsize=8)
            if i == len(inners) - 1:
                ax.set_xlabel("parameters")
            if j == 0:
                ax.set_ylabel("Lookahead / inner")
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=6, loc="upper right")
    fig.suptitle("Optimizer step time ratio vs size; dotted: the limit 1 + (sync alone)/k; "
                 "peers above 2.2 are off the scale (see the table)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def fmt_ratio(r):
    return f"{r['ratio']:.3f} ({r['ratio_min']:.2f}–{r['ratio_max']:.2f})"


def outer_momentum_section(rows, ours):
    """Lookahead with outer momentum beside Lookahead, both around Adam at k=PEER_K."""
    snoo = [r for r in rows if r["implementation"] == SNOO]
    lines = ["", f"## Outer momentum (SNOO) beside Lookahead, Adam, k={PEER_K}", "",
             f"Lookahead with outer momentum (`slow_momentum={wl.OUTER_MOMENTUM}`, Nesterov, "
             f"outer rate {wl.OUTER_RATE}) and Lookahead (α {wl.ALPHA}), each against Adam "
             "alone. Its sync reads the slow weights, the fast weights and the buffer and "
             "writes all three: six weight-sized arrays against Lookahead's four, so where "
             f"memory bandwidth bounds the step its limit is about 1 + 6/(7k) = "
             f"{1 + 6 / (7 * PEER_K):.3f} (an Adam step reads and writes seven); the measured "
             "limit is 1 + (its sync alone / Adam's step) / k.", "",
             "| device | backend | mode | parameters | Lookahead | with outer momentum | its "
             "limit | outer momentum / Lookahead |", "|---|---|---|---|---|---|---|---|"]
    if not snoo:
        return lines + ["| – | not measured (it runs with Adam at k=5) | | | | | | |"]
    for r in sorted(snoo, key=lambda r: (r["device"], r["backend"], r["mode"], r["params"])):
        la = next((o for o in ours if (o["device"], o["backend"], o["mode"], o["inner"], o["k"],
                                       o["params"]) == (r["device"], r["backend"], r["mode"],
                                                        "Adam", PEER_K, r["params"])), None)
        lines.append(f"| {r['device']} | {r['backend']} | {r['mode']} | "
                     f"{r['params'] / 1e6:g}M | {fmt_ratio(la) if la else '–'} | "
                     f"{fmt_ratio(r)} | {r['limit']:.3f} | "
                     + (f"{r['ratio'] / la['ratio']:.3f}" if la else "–") + " |")
    return lines


def write_markdown(path, payload):
    args, rows = payload["args"], payload["optimizer"]
    info = payload["machines"][0] if payload["machines"] else {}
    ours = [r for r in rows if r["implementation"] == "keras_lookahead"]
    lines = h.header("Performance", payload["command"], info) + [
             f"Devices measured: {', '.join(payload['devices'])}.", "",
             "Every ratio is the median over rounds of (candidate time / baseline time), the "
             "two called alternately, call by call, in one process per backend after warm-up "
             f"({args['rounds']} rounds for the optimizer, with about the same time per round at "
             f"every size, {args.get('headline_rounds', args['rounds'])} for the headline's "
             "compiled cells and their limit; "
             "for Lookahead every round is a whole number of sync periods, so fewer "
             f"and longer rounds at large k and size, at least 3; {args['fit_rounds']} rounds of "
             f"two {args['fit_steps']}-step fits for "
             "the models); min–max over rounds in brackets. Per-round ratios on this shared "
             "machine spread by about ±0.1.", ""]

    lines += ["## Headline: Lookahead(Adam) / Adam at k=5", "",
              f"Target on compiled paths: ≤ {TARGET_OPTIMIZER}.", "",
              "| device | backend | mode | " + " | ".join(
                  f"{s / 1e6:g}M" for s in args["sizes"]) + " | limit at largest | target |",
              "|---|---|---|" + "---|" * len(args["sizes"]) + "---|---|"]
    misses = []
    for device, backend, mode in sorted({(r["device"], r["backend"], r["mode"]) for r in ours}):
        at = {r["params"]: r for r in ours if (r["device"], r["backend"], r["mode"],
                                               r["inner"], r["k"]) == (device, backend, mode,
                                                                       "Adam", PEER_K)}
        cells = [f"{at[size]['ratio']:.3f}" if size in at else "–" for size in args["sizes"]]
        last = next((at[size] for size in reversed(args["sizes"]) if size in at), None)
        verdict = "–"
        if (backend, mode) in COMPILED and last is not None:
            over = [at[size] for size in args["sizes"]
                    if size in at and at[size]["ratio"] > TARGET_OPTIMIZER]
            verdict = "**misses**" if over else "meets"
            if over:
                misses.append((backend, mode, over))
        limit = f"{last['limit']:.3f}" if last else "–"
        lines.append(f"| {device} | {backend} | {mode} | " + " | ".join(cells) +
                     f" | {limit} | {verdict} |")
    lines += ["", "*limit*: 1 + (time of the sync alone / time of the inner step) / k, the sync "
              "timed by itself in the same mode: the cost of doing nothing but the sync every "
              "k-th step. Lookahead's ratio should approach it, and both fall towards 1 as k "
              "grows."]
    if misses:
        lines += ["", "Misses: " + "; ".join(
            f"{b} {m} at " + ", ".join(
                f"{r['params'] / 1e6:g}M ({r['ratio']:.3f}, limit {r['limit']:.3f}"
                + (f", with a sync that never comes {r['never_sync']:.3f}"
                   if r.get("never_sync") else "")
                + f", rounds {r['ratio_min']:.2f}–{r['ratio_max']:.2f})" for r in rs)
            for b, m, rs in misses) + ". A ratio above the target while it sits at its limit "
            "is the sync's own cost on this machine's memory bandwidth; above the limit is "
            "Lookahead's, and the ratio with a sync that never comes (sync period 10⁹) is the "
            "part paid on every step. The floor: a sync moves four weight-sized arrays (reads "
            "the fast and slow weights, writes both), an Adam step seven (reads weights, "
            "gradient and two moments, writes three), so where memory bandwidth bounds both, "
            f"the sync alone costs about 4/7 of a step: 1 + 4/(7·5) = {1 + 4 / 35:.3f} at k=5, "
            f"{TARGET_OPTIMIZER - 1 - 4 / 35:.3f} under the target. "
            "docs/design.md gives the reasons for each path's form."]

    lines += ["", "## Scaling: every size, k and inner optimizer", "",
              "Ratio, with the limit in brackets.", "",
              "| device | backend | mode | inner | parameters | " + " | ".join(
                  f"k={k}" for k in args["ks"]) + " | inner ms |",
              "|---|---|---|---|---|" + "---|" * len(args["ks"]) + "---|"]
    groups = sorted({(r["device"], r["backend"], r["mode"], r["inner"], r["params"])
                     for r in ours})
    for key in groups:
        by_k = {r["k"]: r for r in ours
                if (r["device"], r["backend"], r["mode"], r["inner"], r["params"]) == key}
        cells = [f"{by_k[k]['ratio']:.3f} ({by_k[k]['limit']:.3f})" if k in by_k else "–"
                 for k in args["ks"]]
        ms = 1e3 * next(iter(by_k.values()))["baseline_s"]
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {key[4] / 1e6:g}M | " +
                     " | ".join(cells) + f" | {ms:.1f} |")

    lines += outer_momentum_section(rows, ours)
    peers = [r for r in rows if not r["implementation"].startswith("keras_lookahead")]
    lines += ["", f"## Peers, k={PEER_K}, each against its own framework's inner optimizer", "",
              "| device | implementation | inner | parameters | inner ms | Lookahead ms | "
              "ratio (min–max) | ours, same backend and size |",
              "|---|---|---|---|---|---|---|---|"]
    for r in sorted(peers, key=lambda r: (r["device"], r["implementation"], r["params"])):
        mine = [o for o in ours if (o["device"], o["backend"], o["inner"], o["k"], o["params"]) ==
                (r["device"], r["backend"], "Adam", PEER_K, r["params"])]
        lines.append(f"| {r['device']} | {r['implementation']} | {r['inner']} | "
                     f"{r['params'] / 1e6:g}M | {1e3 * r['baseline_s']:.1f} | "
                     f"{1e3 * r['candidate_s']:.1f} | {fmt_ratio(r)} | " +
                     (", ".join(f"{o['mode']} {o['ratio']:.3f}" for o in mine) or "–") + " |")
    if not peers:
        lines.append("| – | no peer installed (`pip install optax pytorch-optimizer`) "
                     "| | | | | | |")
    lines += ["", "optax's `lookahead` computes both branches of its sync on every step."]

    lines += ["", "## Memory", "",
              "Optimizer state, from `optimizer.variables` (4M parameters): what Lookahead adds "
              "to the inner optimizer's own state.", "",
              "| inner | inner_state | inner state bytes | added bytes | added / parameter bytes "
              "| expected |", "|---|---|---|---|---|---|"]
    for m in payload.get("state", []):
        # the slow weights; with "interpolate" also the cached first moment (both inners have one)
        expected = 2.0 if m["inner_state"] == "interpolate" else 1.0
        ok = abs(m["extra_in_params"] - expected) < 1e-6
        lines.append(f"| {m['inner']} | {m['inner_state']} | {m['inner_bytes']:,} | "
                     f"{m['extra_bytes']:,} | {m['extra_in_params']:.4f} | {expected:g} "
                     f"{'(exact)' if ok else '**(differs)**'} |")
    lines += ["", "The extra bytes beyond whole copies are a few scalars (the sync flag and, "
              "with schedules, counters).", "",
              f"Peak resident memory of a fresh process that builds Adam or Lookahead(Adam) on "
              f"{args['memory_params'] / 1e6:g}M parameters and takes 3 eager steps, minus Adam "
              "alone's, in copies of the parameters (runtime allocations make it approximate):",
              "", "| device | backend | " + " | ".join(INNER_STATES) + " |",
              "|---|---|" + "---|" * len(INNER_STATES)]
    for device, backend in sorted({(r["device"], r["backend"]) for r in payload["peak_memory"]}):
        by = {r["config"]: r for r in payload["peak_memory"]
              if (r["device"], r["backend"]) == (device, backend)}
        lines.append(f"| {device} | {backend} | " + " | ".join(
            f"{by[c]['extra_in_params']:+.2f}" if c in by else "–" for c in INNER_STATES) + " |")

    lines += ["", "Peak memory is approximate: TensorFlow and JAX allocate temporaries during "
              "the eager steps (JAX compiles each operation), and PyTorch's allocator reuses "
              "freed blocks, so its row can even fall below zero. The count from "
              "`optimizer.variables` above is the exact one."]
    lines += ["", "## Whole training step", "",
              f"`model.fit`, batch {args.get('fit_batch', 64)}, Adam vs Lookahead(Adam, k=5); "
              f"target ≤ {TARGET_FIT}. "
              "jit_compile on TensorFlow and JAX; PyTorch eager.", "",
              "| device | backend | model | parameters | ratio (min–max) | target |",
              "|---|---|---|---|---|---|"]
    for f in payload["fit"]:
        ok = f["ratio"] <= TARGET_FIT
        lines.append(f"| {f['device']} | {f['backend']} | {f['model']} | {f['params']:,} | "
                     f"{fmt_ratio(f)} | {'meets' if ok else '**misses**'} |")
    lines += ["", "![scaling](performance_scaling.png)", ""]
    with open(path, "w") as fh:
        fh.write("\n".join(lines))


def report(payload, out):
    h.write_json(os.path.join(out, "performance.json"), payload)
    plot_scaling(payload["optimizer"], os.path.join(out, "performance_scaling.png"))
    write_markdown(os.path.join(out, "performance.md"), payload)
    h.progress(f"wrote {os.path.join(out, 'performance.md')}")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", default=",".join(BACKENDS),
                   help="comma-separated; those not installed are skipped")
    p.add_argument("--quick", action="store_true", help="smoke run of every part, ~3 minutes")
    p.add_argument("--tiny", action="store_true",
                   help="every part at the smallest sizes and counts, for the tests: it proves "
                        "that the suite runs and reports; its numbers mean nothing")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--headline-rounds", type=int, default=21,
                   help="rounds for Lookahead(Adam) at k=5 on compiled paths, the target's "
                        "cells, and for the sync timing of their limit")
    p.add_argument("--calls", type=int, default=10, help="calls per round at 4M parameters")
    p.add_argument("--fit-steps", type=int, default=10)
    p.add_argument("--fit-rounds", type=int, default=5)
    p.add_argument("--memory-params", type=int, default=MEMORY_PARAMS)
    p.add_argument("--out", default=RESULTS)
    p.add_argument("--devices", help="comma-separated, of cpu and gpu (default: cpu, and gpu "
                   "where nvidia-smi lists one)")
    p.add_argument("--from-json", action="store_true",
                   help="rewrite performance.md and the plot from performance.json (no timing)")
    p.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    p.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    p.add_argument("--worker-size", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--worker-mode", default="", help=argparse.SUPPRESS)
    p.add_argument("--worker-inner", default="", help=argparse.SUPPRESS)
    p.add_argument("--sizes", help="comma-separated parameter counts of the scaling part "
                   f"(default {','.join(map(str, SIZES))})")
    p.add_argument("--ks", help=f"comma-separated sync periods (default {','.join(map(str, KS))})")
    p.add_argument("--inners", help=f"comma-separated inner optimizers, of {', '.join(INNERS)} "
                   "(default all)")
    p.add_argument("--optimizer-only", action="store_true",
                   help="only the optimizer-step part: no fit steps, no memory")
    p.add_argument("--peak-memory", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    given = {name: getattr(args, name) for name in ("sizes", "ks", "inners")}
    args.sizes, args.ks, args.inners = SIZES, KS, INNERS
    if args.quick and args.tiny:
        p.error("--quick and --tiny: choose one")
    args.fit_batch = 64
    if args.quick:
        args.sizes, args.ks, args.inners = (1_000_000,), (1, 5), ("Adam",)
        args.rounds, args.calls, args.fit_steps, args.fit_rounds = 2, 4, 2, 1
        args.headline_rounds = 2
        args.memory_params = 2_000_000
    if args.tiny:
        args.sizes, args.ks, args.inners = (TINY_PARAMS,), (1, 5), ("Adam",)
        args.rounds = args.headline_rounds = args.fit_steps = args.fit_rounds = 1
        args.calls, args.fit_batch, args.memory_params = 2, 4, TINY_PARAMS
    for name, parse in (("sizes", int), ("ks", int), ("inners", str)):
        if given[name] is None:
            continue
        try:
            values = tuple(parse(v) for v in given[name].split(",") if v)
        except ValueError:
            p.error(f"--{name} {given[name]!r}: must be comma-separated integers")
        if not values or (parse is int and min(values) < 1):
            p.error(f"--{name} {given[name]!r}: must list values of 1 or more")
        setattr(args, name, values)
    if args.devices is not None:
        devices = [d for d in args.devices.split(",") if d]
        if not devices or set(devices) - {"cpu", "gpu"}:
            p.error(f"--devices {args.devices!r}: must be comma-separated, of cpu and gpu")
        if "gpu" in devices and not gpu_present():
            p.error("--devices gpu: nvidia-smi lists no GPU on this machine")
        args.devices = list(dict.fromkeys(devices))
    unknown = sorted(set(args.inners) - set(INNERS))
    if unknown:
        p.error(f"--inners: unknown {unknown}; choose from {list(INNERS)}")
    for name in ("rounds", "headline_rounds", "calls", "fit_steps", "fit_rounds",
                 "memory_params"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} {getattr(args, name)}: must be 1 or more")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.peak_memory:
        return print(peak_memory_worker(os.environ["KERAS_BACKEND"], args.peak_memory,
                                        args.memory_params))
    if args.worker:
        return worker(args.worker, args)
    os.makedirs(args.out, exist_ok=True)
    if args.from_json:
        with open(os.path.join(args.out, "performance.json")) as f:
            return report(json.load(f), args.out)

    backends = [b for b in args.backends.split(",") if b]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        raise SystemExit(f"--backends: unknown {unknown}; choose from {BACKENDS}")
    devices = args.devices or ["cpu"] + (["gpu"] if gpu_present() else [])
    payload = {"command": h.command_line(), "devices": devices, "optimizer": [], "fit": [],
               "peak_memory": [], "machines": [],
               "args": {k: getattr(args, k) for k in ("sizes", "ks", "inners", "rounds",
                                                      "headline_rounds", "calls",
                                                      "fit_steps", "fit_rounds",
                                                      "memory_params", "quick", "tiny",
                                                      "fit_batch", "optimizer_only")}}
    for device in devices:
        for backend in backends:
            if importlib.util.find_spec(backend) is None:
                h.progress(f"[{backend}] not installed: skipped")
                continue
            env = {**os.environ, "KERAS_BACKEND": backend}
            if device == "cpu":
                env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU column even where a GPU is present
            parts = [(size, mode, inner) for size in args.sizes for mode in MODES[backend]
                     for inner in args.inners]
            if not args.optimizer_only:
                parts.append((0, "", ""))  # last: fit steps and memory
            for size, mode, inner in parts:
                with tempfile.TemporaryDirectory() as tmp:
                    out = os.path.join(tmp, "worker.json")
                    cmd = h.module_command(__spec__.name, "--worker", backend,
                                           "--worker-out", out, "--device", device,
                                           "--worker-size", size, "--worker-mode", mode,
                                           "--worker-inner", inner, *argv)
                    subprocess.run(cmd, check=True, env=env, cwd=h.ROOT)
                    with open(out) as f:
                        part = json.load(f)
                for key in ("optimizer", "fit", "peak_memory"):
                    payload[key] += part[key]
                if "state" in part:
                    payload["state"] = part["state"]
            payload["machines"].append(part["machine"])
    if not payload["optimizer"]:
        raise SystemExit("no backend could be measured")
    report(payload, args.out)


if __name__ == "__main__":
    main()
