"""What does Lookahead cost per step? Lookahead(inner) against inner alone, side by side.

For each Keras backend, in its own process (the backend is fixed at import):
- optimizer-only steps on 25M float32 parameters (fixed gradients, no model), for Adam and
  SGD(momentum=0.9), k in {5, 10}, in every execution mode the backend has: TensorFlow under XLA
  (`tf.function(jit_compile=True)`) and in graph mode (`tf.function`); JAX with
  `stateless_apply` inside `jax.jit` with buffer donation; PyTorch eager;
- the measured limit: the sync alone (slow ← slow + α(fast − slow); fast ← slow), timed in the
  same mode, divided by k;
- on JAX, when optax is installed, `optax.lookahead(optax.adam)` against `optax.adam` in the same
  process: the peer implementation, against its own framework's inner optimizer;
- a whole `model.fit` step of a small ResNet-style CNN (compiled where the backend compiles);
- and the optimizer state each inner_state mode adds.

Writes benchmarks/results/overhead.md, overhead.json and overhead.png.

    python benchmarks/overhead.py                     # every installed backend, ~12 minutes
    python benchmarks/overhead.py --backends jax      # one backend
    python benchmarks/overhead.py --quick             # a smoke run (4M parameters, few rounds)
    python benchmarks/overhead.py --from-json         # rewrite .md/.png from overhead.json
"""

import argparse
import functools
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from benchmarks import _harness as h  # noqa: E402

RESULTS = os.path.join(HERE, "results")
BACKENDS = ("tensorflow", "jax", "torch")
TARGET_OPTIMIZER = 1.12  # Lookahead(Adam)/Adam at k=5 on every path (issues #2, #3)
TARGET_FIT = 1.02
ALPHA = 0.5


def parameter_shapes(total):
    """Layer-like shapes adding up to `total` parameters: matrices with their biases."""
    shapes, n = [], 0
    width = 2000
    while n + width * width + width <= total:
        shapes += [(width, width), (width,)]
        n += width * width + width
    if total - n > 0:
        shapes.append((total - n,))
    return shapes


def random_arrays(shapes, seed, scale=1.0):
    """Random float32 arrays of `shapes`, made once per (shapes, seed, scale) and then shared
    (drawing 64M normals takes seconds; the timings do not depend on the values)."""
    return _random_arrays(tuple(tuple(s) for s in shapes), seed, scale)


@functools.lru_cache(maxsize=8)
def _random_arrays(shapes, seed, scale):
    rng = np.random.default_rng(seed)
    return [(scale * rng.normal(size=s)).astype("float32") for s in shapes]


# -- per-backend steps: each returns a callable running one (blocking) step ------------------

def keras_inners():
    import keras

    return {
        "Adam": lambda: keras.optimizers.Adam(1e-3),
        "SGD(momentum=0.9)": lambda: keras.optimizers.SGD(1e-3, momentum=0.9),
    }


def tf_modes(shapes):
    import keras
    import tensorflow as tf

    def optimizer_step(make_opt, jit):
        variables = [keras.Variable(a) for a in random_arrays(shapes, 0, 0.01)]
        grads = [tf.constant(a) for a in random_arrays(shapes, 1)]
        opt = make_opt()
        opt.build(variables)
        return tf.function(lambda: opt.apply(grads, variables), jit_compile=jit)

    def sync_step(jit):
        fast = [tf.Variable(a) for a in random_arrays(shapes, 2)]
        slow = [tf.Variable(a) for a in random_arrays(shapes, 3)]

        def sync():
            for f, s in zip(fast, slow):
                new = s + ALPHA * (f - s)
                s.assign(new)
                f.assign(new)

        return tf.function(sync, jit_compile=jit)

    return {mode: (lambda make, jit=jit: optimizer_step(make, jit), lambda jit=jit: sync_step(jit))
            for mode, jit in (("XLA", True), ("graph", False))}


def jax_modes(shapes):
    import jax
    import keras

    def optimizer_step(make_opt):
        variables = [keras.Variable(a) for a in random_arrays(shapes, 0, 0.01)]
        grads = [jax.numpy.asarray(a) for a in random_arrays(shapes, 1)]
        opt = make_opt()
        opt.build(variables)
        # Donated buffers, as Keras's JAX trainer does: the step may update state in place. The
        # outputs come in the inputs' order, so that XLA aliases each buffer with its own update
        # (stateless_apply returns (variables, optimizer state), the reverse of its arguments).
        def apply(ov, tv):
            new_tv, new_ov = opt.stateless_apply(ov, grads, tv)
            return new_ov, new_tv

        step = jax.jit(apply, donate_argnums=(0, 1))
        state = {"opt": [v.value for v in opt.variables], "vars": [v.value for v in variables]}

        def run():
            state["opt"], state["vars"] = step(state["opt"], state["vars"])
            jax.block_until_ready(state["vars"])

        return run

    def sync_step():
        def sync(fast, slow):
            new = [s + ALPHA * (f - s) for f, s in zip(fast, slow)]
            return new, new  # one value, two output buffers, as two variables hold it

        step = jax.jit(sync, donate_argnums=(0, 1))
        state = {"fast": [jax.numpy.asarray(a) for a in random_arrays(shapes, 2)],
                 "slow": [jax.numpy.asarray(a) for a in random_arrays(shapes, 3)]}

        def run():
            state["fast"], state["slow"] = step(state["fast"], state["slow"])
            jax.block_until_ready(state["slow"])

        return run

    return {"jit": (optimizer_step, sync_step)}


def torch_modes(shapes):
    import keras
    import torch

    def optimizer_step(make_opt):
        variables = [keras.Variable(a) for a in random_arrays(shapes, 0, 0.01)]
        grads = [torch.as_tensor(a) for a in random_arrays(shapes, 1)]
        opt = make_opt()
        opt.build(variables)
        return lambda: opt.apply(grads, variables)

    def sync_step():
        fast = [torch.as_tensor(a) for a in random_arrays(shapes, 2)]
        slow = [torch.as_tensor(a) for a in random_arrays(shapes, 3)]

        from keras_lookahead import _forms, _keras_compat  # the package's torch sync

        op = _keras_compat.torch_foreach()

        def run():
            with torch.no_grad():
                _forms.torch_slow_update(op, slow, fast, ALPHA)

        return run

    return {"eager": (optimizer_step, sync_step)}


def optax_rows(shapes, args, ks=(5, 10)):
    """optax.lookahead(adam) vs optax.adam, jitted with donation, in the JAX process."""
    import jax
    import optax

    rows = []
    params = {str(i): jax.numpy.asarray(a) for i, a in enumerate(random_arrays(shapes, 0, 0.01))}
    grads = {str(i): jax.numpy.asarray(a) for i, a in enumerate(random_arrays(shapes, 1))}

    def stepper(tx, wrap_params):
        p = optax.LookaheadParams.init_synced(params) if wrap_params else params
        p = jax.tree_util.tree_map(lambda x: x + 0, p)  # own buffers (donated below)
        state = {"p": p, "s": tx.init(p)}

        def update(p, s):
            updates, s = tx.update(grads, s, p)  # gradients for the fast params only
            return optax.apply_updates(p, updates), s

        update = jax.jit(update, donate_argnums=(0, 1))

        def run():
            state["p"], state["s"] = update(state["p"], state["s"])
            jax.block_until_ready(state["p"])

        return run

    base = stepper(optax.adam(1e-3), False)
    for k in ks:
        la = stepper(optax.lookahead(optax.adam(1e-3), sync_period=k, slow_step_size=ALPHA), True)
        r = h.compare(base, la, calls=args.calls, rounds=args.rounds)
        r.update(backend="jax", mode="jit", inner="optax.adam", k=k, implementation="optax",
                 limit=None)
        rows.append(r)
        h.progress(f"  jax   jit   optax.lookahead(adam)  k={k:2d}: ratio {r['ratio']:.3f}")
    return rows


def bench_optimizer(backend, args):
    import keras_lookahead

    shapes = parameter_shapes(args.params)
    modes = {"tensorflow": tf_modes, "jax": jax_modes, "torch": torch_modes}[backend](shapes)
    rows = []
    for mode, (optimizer_step, sync_step) in modes.items():
        for inner_name, make_inner in keras_inners().items():
            base = optimizer_step(make_inner)
            floor = h.compare(base, sync_step(), calls=args.calls, rounds=args.rounds)
            for k in (5, 10):
                la = optimizer_step(lambda: keras_lookahead.Lookahead(
                    make_inner(), sync_period=k, slow_step_size=ALPHA))
                r = h.compare(base, la, calls=args.calls, rounds=args.rounds)
                r.update(backend=backend, mode=mode, inner=inner_name, k=k,
                         implementation="keras_lookahead", limit=1 + floor["ratio"] / k,
                         sync_over_inner=floor["ratio"])
                rows.append(r)
                h.progress(f"  {backend:5.5s} {mode:5s} {inner_name:18s} k={k:2d}: ratio "
                           f"{r['ratio']:.3f} (limit {r['limit']:.3f}; inner "
                           f"{1e3 * r['baseline_s']:.1f} ms)")
                del la
            del base
    if backend == "jax" and importlib.util.find_spec("optax") is not None:
        rows += optax_rows(shapes, args)
    return rows


def resnet_cnn(seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    for filters, stride in ((32, 1), (64, 2), (64, 1)):
        shortcut = x
        y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", activation="relu")(x)
        y = keras.layers.Conv2D(filters, 3, padding="same")(y)
        if stride != 1 or shortcut.shape[-1] != filters:
            shortcut = keras.layers.Conv2D(filters, 1, strides=stride)(shortcut)
        x = keras.layers.Activation("relu")(keras.layers.Add()([y, shortcut]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def bench_fit(backend, args):
    import keras
    from keras_lookahead import Lookahead

    rng = np.random.default_rng(0)
    steps, batch = args.fit_steps, 64
    x = rng.normal(size=(steps * batch, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(steps * batch,))
    jit = backend != "torch"  # on torch jit_compile means torch.compile; the eager step is meant

    def fitter(opt):
        model = resnet_cnn()
        model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True), jit_compile=jit)
        return lambda: model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0), model

    base, model = fitter(keras.optimizers.Adam(1e-3))
    la, _ = fitter(Lookahead(keras.optimizers.Adam(1e-3), sync_period=5))
    r = h.compare(base, la, calls=2, rounds=args.fit_rounds, warmup=2)
    r.update(backend=backend, jit_compile=jit, steps_per_call=steps, batch=batch,
             params=int(sum(np.prod(v.shape) for v in model.trainable_variables)))
    h.progress(f"  {backend} fit step, ResNet-style CNN ({r['params']:,} params, "
               f"jit_compile={jit}): ratio {r['ratio']:.3f}")
    return r


def memory_rows():
    """Optimizer state bytes per inner_state mode, from optimizer.variables (backend-neutral)."""
    import keras
    from keras_lookahead import Lookahead

    shapes = [(1000, 1000), (1000,), (1000, 10), (10,)]
    params = sum(int(np.prod(s)) for s in shapes)

    def state_bytes(opt):
        vs = [keras.Variable(np.zeros(s, "float32")) for s in shapes]
        opt.build(vs)
        return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in opt.variables)

    rows = []
    for inner_name, make in keras_inners().items():
        alone = state_bytes(make())
        for mode in ("maintain", "reset", "interpolate"):
            extra = state_bytes(Lookahead(make(), inner_state=mode)) - alone
            rows.append({"inner": inner_name, "inner_state": mode, "inner_bytes": alone,
                         "extra_bytes": extra, "extra_in_params": extra / (4 * params)})
    return {"rows": rows, "params": params}


def worker(backend, args):
    """Runs in a process whose KERAS_BACKEND is `backend`; writes its numbers to args.worker_out."""
    import keras

    assert keras.backend.backend() == backend, (keras.backend.backend(), backend)
    h.progress(f"[{backend}] optimizer step, {args.params / 1e6:g}M parameters")
    payload = {"optimizer": bench_optimizer(backend, args), "machine": h.machine()}
    h.progress(f"[{backend}] whole fit step")
    payload["fit"] = bench_fit(backend, args)
    if backend == "tensorflow":
        payload["memory"] = memory_rows()
    h.write_json(args.worker_out, payload)


# -- report ------------------------------------------------------------------------------------

def plot(rows, fits, params, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["implementation"] == "keras_lookahead"]
    fig, ax = plt.subplots(figsize=(max(8, 0.75 * len(rows)), 4.2))
    labels = [f"{r['backend'][:5]} {r['mode']}\n{r['inner'].split('(')[0]} k={r['k']}"
              for r in rows]
    xs = np.arange(len(rows))
    err = [[r["ratio"] - r["ratio_min"] for r in rows], [r["ratio_max"] - r["ratio"] for r in rows]]
    ax.bar(xs, [r["ratio"] - 1 for r in rows], bottom=1, yerr=err, capsize=3, color="#4c78a8",
           ecolor="#888888", label="Lookahead(inner) / inner (median, min-max over rounds)")
    ax.scatter(xs, [r["limit"] for r in rows], marker="_", s=500, linewidths=3, color="#f58518",
               zorder=3, label="limit: 1 + (sync alone)/k")
    ax.axhline(TARGET_OPTIMIZER, color="#e45756", ls="--", lw=1, label=f"target {TARGET_OPTIMIZER}")
    ax.set_xticks(xs, labels, fontsize=7)
    ax.set_ylabel("step time ratio")
    ax.set_ylim(0.9, max(1.3, max(min(r["ratio_max"], 2.0) for r in rows) + 0.05))
    fit_text = ", ".join(f"{b} {f['ratio']:.3f}x" for b, f in fits.items())
    ax.set_title(f"Optimizer step, {params / 1e6:g}M parameters; fit step: {fit_text}",
                 fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def verdict(ok):
    return "meets target" if ok else "**misses target**"


def write_markdown(path, payload):
    args, rows, fits = payload["args"], payload["optimizer"], payload["fit"]
    info = payload["machines"][0] if payload["machines"] else {}
    versions = ", ".join(f"{m} {info[m]}" for m in ("keras", "tensorflow", "jax", "torch", "numpy")
                         if m in info)
    lines = ["# Lookahead overhead per step", "",
             f"Written by `{payload['command']}`; do not edit by hand.", "",
             f"Machine: {info.get('cpu')}, {info.get('cores')} cores; {versions}; "
             f"commit {info.get('commit')}.", "",
             "Each ratio is the median over rounds of (Lookahead(inner) time / inner time). The "
             "two were called alternately, call by call, in one process per backend, after "
             f"warm-up ({args['rounds']} rounds of {args['calls']} calls each for the optimizer; "
             f"{args['fit_rounds']} rounds of two {args['fit_steps']}-step fits each for the "
             "model). Per-round ratios on this shared machine spread by about ±0.1; the min–max "
             "range is shown.", "",
             f"## Optimizer step only, {args['params'] / 1e6:g}M float32 parameters", "",
             "| backend | mode | implementation | inner | k | inner ms | Lookahead ms | "
             "ratio (min–max) | limit | target |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        target = "–"
        if r["inner"] in ("Adam", "optax.adam") and r["k"] == 5:
            target = f"≤ {TARGET_OPTIMIZER}: {verdict(r['ratio'] <= TARGET_OPTIMIZER)}"
            if r["implementation"] != "keras_lookahead":
                target = "(peer)"
        limit = "–" if r.get("limit") is None else f"{r['limit']:.3f}"
        lines.append(
            f"| {r['backend']} | {r['mode']} | {r['implementation']} | {r['inner']} | {r['k']} | "
            f"{1e3 * r['baseline_s']:.1f} | {1e3 * r['candidate_s']:.1f} | {r['ratio']:.3f} "
            f"({r['ratio_min']:.3f}–{r['ratio_max']:.3f}) | {limit} | {target} |")
    lines += ["", "*limit*: 1 + (time of the sync alone / time of the inner step) / k, the sync "
              "timed by itself in the same mode: what Lookahead must cost if it does nothing but "
              "the sync every k-th step. On PyTorch the sync alone is timed as "
              "`torch._foreach_lerp_` + `torch._foreach_copy_`, the fastest form there is. "
              "*optax* rows: `optax.lookahead(optax.adam)` against `optax.adam`, both jitted with "
              "donated buffers, in the JAX process (the peer, against its own inner optimizer).",
              "", "## Whole training step", "",
              "`model.fit` of a ResNet-style CNN (batch 64, 32×32×3 inputs), Adam vs "
              "Lookahead(Adam, k=5):", "",
              "| backend | jit_compile | parameters | ratio (min–max) | target |",
              "|---|---|---|---|---|"]
    for backend, f in fits.items():
        lines.append(f"| {backend} | {f['jit_compile']} | {f['params']:,} | {f['ratio']:.3f} "
                     f"({f['ratio_min']:.3f}–{f['ratio_max']:.3f}) | ≤ {TARGET_FIT}: "
                     f"{verdict(f['ratio'] <= TARGET_FIT)} |")
    mem = payload.get("memory")
    if mem:
        lines += ["", "## Optimizer state", "",
                  f"Bytes of `optimizer.variables` on a {mem['params']:,}-parameter model, minus "
                  "the inner optimizer's own:", "",
                  "| inner | inner_state | inner state bytes | extra bytes | extra / parameter bytes |",
                  "|---|---|---|---|---|"]
        for m in mem["rows"]:
            lines.append(f"| {m['inner']} | {m['inner_state']} | {m['inner_bytes']:,} | "
                         f"{m['extra_bytes']:,} | {m['extra_in_params']:.3f} |")
        lines += ["", "Expected: one copy of the parameters (the slow weights), two with "
                  "\"interpolate\" (plus the cached momentum)."]
    lines += ["", "![overhead](overhead.png)", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def report(payload, out):
    h.write_json(os.path.join(out, "overhead.json"), payload)
    plot(payload["optimizer"], payload["fit"], payload["args"]["params"],
         os.path.join(out, "overhead.png"))
    write_markdown(os.path.join(out, "overhead.md"), payload)
    h.progress(f"wrote {os.path.join(out, 'overhead.md')}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated; those not installed are skipped")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4M params, few rounds")
    parser.add_argument("--params", type=int, default=25_000_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--fit-steps", type=int, default=20)
    parser.add_argument("--fit-rounds", type=int, default=7)
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--from-json", action="store_true",
                        help="rewrite overhead.md and .png from overhead.json (no timing)")
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.params, args.rounds, args.calls, args.fit_steps, args.fit_rounds = (
            4_000_000, 3, 5, 5, 3)
    if args.worker:
        return worker(args.worker, args)
    os.makedirs(args.out, exist_ok=True)
    if args.from_json:
        with open(os.path.join(args.out, "overhead.json")) as f:
            return report(json.load(f), args.out)

    backends = [b for b in args.backends.split(",") if b]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        raise SystemExit(f"--backends: unknown {unknown}; choose from {BACKENDS}")
    payload = {"command": h.command_line(), "optimizer": [], "fit": {}, "machines": [],
               "args": {k: getattr(args, k) for k in (
                   "params", "rounds", "calls", "fit_steps", "fit_rounds")}}
    for backend in backends:
        if importlib.util.find_spec(backend) is None:
            h.progress(f"[{backend}] not installed: skipped")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "worker.json")
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", backend,
                   "--worker-out", out] + list(argv or sys.argv[1:])
            subprocess.run(cmd, check=True, env={**os.environ, "KERAS_BACKEND": backend})
            with open(out) as f:
                part = json.load(f)
        payload["optimizer"] += part["optimizer"]
        payload["fit"][backend] = part["fit"]
        payload["machines"].append(part["machine"])
        if "memory" in part:
            payload["memory"] = part["memory"]
    if not payload["optimizer"]:
        raise SystemExit("no backend could be measured")
    report(payload, args.out)


if __name__ == "__main__":
    main()
