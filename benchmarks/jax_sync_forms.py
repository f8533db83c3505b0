"""Which form of the conditional sync is cheaper under jax.jit: element-wise selects or lax.cond?

keras_lookahead's JAX path writes the sync as selects (docs/design.md explains why for
XLA). This script checks the alternative in plain JAX, outside Keras, so that only the form
differs: one jitted, buffer-donating step of Adam on a flat float32 vector, alone, then with the
Lookahead sync every k-th step written (a) as `jnp.where` selects and (b) as `lax.cond`, and the
sync alone (the limit, as in performance.py). Ratios are medians of per-round ratios against
Adam alone, called alternately (benchmarks/_harness.py).

    python -m benchmarks.jax_sync_forms            # 1M, 4M, 16M parameters, k=5; ~2 minutes
    python -m benchmarks.jax_sync_forms --quick    # smoke run

Writes benchmarks/results/jax_sync_forms.md and .json.
"""

import argparse
import os

from benchmarks import _harness as h

ALPHA = 0.5


def _adam(theta, m, v, g):
    import jax.numpy as jnp

    m = 0.9 * m + 0.1 * g
    v = 0.999 * v + 0.001 * g * g
    return theta - 1e-3 * m / (jnp.sqrt(v) + 1e-7), m, v


def steps(k):
    """Jitted, donating steps on (theta, m, v, t) or (theta, slow, m, v, t)."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    def adam(state, g):
        theta, m, v, t = state
        return (*_adam(theta, m, v, g), t + 1)

    def select(state, g):
        theta, slow, m, v, t = state
        theta, m, v = _adam(theta, m, v, g)
        sync = (t + 1) % k == 0
        slow = jnp.where(sync, slow + ALPHA * (theta - slow), slow)
        return jnp.where(sync, slow, theta), slow, m, v, t + 1

    def cond(state, g):
        theta, slow, m, v, t = state
        theta, m, v = _adam(theta, m, v, g)

        def sync(pair):
            new = pair[1] + ALPHA * (pair[0] - pair[1])
            return new, new

        theta, slow = lax.cond((t + 1) % k == 0, sync, lambda pair: pair, (theta, slow))
        return theta, slow, m, v, t + 1

    def sync_alone(state, g):
        theta, slow, m, v, t = state
        slow = slow + ALPHA * (theta - slow)
        return slow, slow, m, v, t

    return {name: jax.jit(fn, donate_argnums=0) for name, fn in
            (("adam", adam), ("select", select), ("cond", cond), ("sync alone", sync_alone))}


def measure(size, k, rounds, calls):
    import jax
    import jax.numpy as jnp

    g = jax.random.normal(jax.random.PRNGKey(0), (size,)) * 1e-2
    fns = steps(k)
    states = {}

    def stepper(name):
        n = 4 if name == "adam" else 5
        states[name] = tuple(jnp.zeros(size) + i for i in range(n - 1)) + (jnp.int32(0),)

        def call():
            states[name] = fns[name](states[name], g)
            jax.block_until_ready(states[name])
        return call

    base = stepper("adam")
    out = {}
    for name in ("select", "cond", "sync alone"):
        r = h.compare(base, stepper(name), calls=calls, rounds=rounds)
        out[name] = r
        states.pop(name)
        h.progress(f"  {size / 1e6:g}M k={k} {name:10s}: {r['ratio']:.3f} "
                   f"({r['ratio_min']:.2f}–{r['ratio_max']:.2f})")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--out", default=h.RESULTS)
    args = p.parse_args(argv)
    if args.k < 1 or args.rounds < 1:
        p.error(f"--k {args.k}, --rounds {args.rounds}: both must be 1 or more")
    sizes = (1_000_000,) if args.quick else (1_000_000, 4_000_000, 16_000_000)
    rounds = 2 if args.quick else args.rounds
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    results = {}
    for size in sizes:
        # about the same time per round at every size, and whole sync periods per round
        calls = args.k * max(1, round(40 * 1_000_000 / size / args.k))
        results[size] = measure(size, args.k, rounds, calls)
    info = h.machine()
    lines = h.header("The JAX sync: selects or lax.cond", h.command_line(), info) + [
             f"Plain JAX, one jitted step with donated buffers: Adam on a flat float32 vector "
             f"with the Lookahead sync every k={args.k} steps written as selects or as "
             "lax.cond, and the sync alone, each against Adam alone; median of per-round "
             f"ratios ({rounds} rounds), min–max in brackets.", "",
             "| parameters | selects | lax.cond | sync alone | limit (1 + sync/k) |",
             "|---|---|---|---|---|"]
    for size, r in results.items():
        cells = [f"{r[n]['ratio']:.3f} ({r[n]['ratio_min']:.2f}–{r[n]['ratio_max']:.2f})"
                 for n in ("select", "cond", "sync alone")]
        limit = 1 + r["sync alone"]["ratio"] / args.k
        lines.append(f"| {size / 1e6:g}M | " + " | ".join(cells) + f" | {limit:.3f} |")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "jax_sync_forms.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    h.write_json(os.path.join(args.out, "jax_sync_forms.json"),
                 {"command": h.command_line(), "machine": info, "k": args.k,
                  "results": {str(s): r for s, r in results.items()}})
    h.progress(f"wrote {os.path.join(args.out, 'jax_sync_forms.md')}")


if __name__ == "__main__":
    main()
