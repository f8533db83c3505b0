"""Lookahead's sync, written once, on values (Algorithm 1 of Zhang, Lucas, Hinton & Ba, 2019,
with the outer momentum of SNOO and DiLoCo).

With the inner optimizer A updating the fast weights θ:

    for each step:  θ ← θ + A(θ)                      (the inner optimizer, as configured)
                    if A applied its k-th update since the last sync:      (`sync_is_due`)
                        the sync (`sync`):
                        μ = 0:  φ ← φ + α (θ − φ)                          (Lookahead)
                        μ > 0:  s = φ − θ;  b ← μ b + s;                   (SNOO; DiLoCo's outer
                                φ ← φ − α (μ b + s)   (Nesterov)            step on one worker)
                                φ ← φ − α b           (plain momentum)
                        θ ← φ
                        m ← policy(m, m_prev, α)                           (App. C.5)

With μ = 0, φ − α s = φ + α(θ − φ): SNOO without momentum is Lookahead with α its outer rate.

`lookahead.py` holds the state these act on (φ, b, m_prev, counters) and chooses what a sync
touches; `_steps.py` decides, in the form each execution mode needs, *whether* a step syncs, and
writes what `sync` hands it (its `write`). Both import this module, which imports neither.

`sync` works on lists of values through a small set of list operations (`KerasListOps` here;
`_steps.TorchListOps` for PyTorch's in-place multi-tensor ops). An operation may write its
result into its first argument (PyTorch's does, to save memory traffic), so `sync` passes first
only values whose old contents it no longer needs: the slow weight, the momentum buffer, the
inner optimizer's moment and its own temporaries, never a fast weight.
"""

from typing import NamedTuple

from keras import ops

from keras_lookahead import inner_state as policies


class SyncInputs(NamedTuple):
    """What a sync reads, as values, in lists aligned by variable.

    fast, slow: θ and φ of the variables the step updated; buffer: their outer-momentum
    buffers b ([] when μ = 0); moment: the inner optimizer's first moments the policy acts on
    ([] for "maintain"); cached: their m_prev ("interpolate" only, else []); held_fast: θ of
    the variables the step did not update (a layer frozen after build): their slow weights
    follow them; held_moment: the moments of those, which their m_prev follows.
    """

    fast: list
    slow: list
    buffer: list
    moment: list
    cached: list
    held_fast: list
    held_moment: list


class SyncResult(NamedTuple):
    """What a sync wrote, aligned with `SyncInputs` (as its `write` returned it): the new fast,
    slow, buffer, moment and cached values of the updated variables, and the new slow weights
    and cached moments of the held ones. The fast weights are their input objects themselves
    when the sync leaves them as they are (α = 1, μ = 0)."""

    fast: list
    slow: list
    buffer: list
    moment: list
    cached: list
    held_slow: list
    held_cached: list


class Outer(NamedTuple):
    """The sync's hyperparameters: α (the outer rate: a Python float, or a scalar tensor for a
    scheduled or adaptive α), μ ≥ 0 (a Python float; 0: Lookahead), Nesterov or plain
    momentum, and the inner-state policy."""

    alpha: object
    momentum: float = 0.0
    nesterov: bool = True
    policy: str = policies.MAINTAIN


def sync(inputs, outer, slow_like, cached_like, list_ops, write=None):
    """The whole sync on values: new slow and fast weights, momentum buffers and moments.

    `slow_like`: for each held fast weight, the slow weight it becomes (its dtype);
    `cached_like`: for each held moment, its cached value (its dtype). Nothing here depends on
    the backend or the execution mode: `list_ops` does the arithmetic.

    `write(part, values)` stores each part's new values as soon as they are final, in the
    order buffer, slow, fast, moment, cached, held_slow, held_cached, and returns what the
    variables hold now; the sync goes on from those (default: nothing is stored). So each
    variable is written before anything reads its value again, and what comes after reads the
    *written* values: under XLA's selects (`_steps.SelectStep`) the fast weights are selected
    from the selected slow weights, and no old buffer has to outlive its variable's write. A
    writer casts to its variable's dtype (the fast weights are written the slow weights'
    values). Returns what was written, part by part (the fast weights unchanged when α = 1
    and μ = 0: then nothing is written to them).
    """
    o = list_ops
    if write is None:
        def write(part, values):
            return values
    fast32 = o.cast_like(inputs.fast, inputs.slow)  # θ in the slow weights' dtype
    buffer = inputs.buffer
    unchanged_fast = (outer.momentum == 0 and isinstance(outer.alpha, float)
                      and outer.alpha == 1.0)
    if outer.momentum == 0:
        if unchanged_fast:
            # φ + (θ − φ) can round differently from θ: the fast weights stay as they are
            slow = fast32
        else:
            slow = o.lerp(inputs.slow, fast32, outer.alpha)
    else:
        # b ← μ b + s, s = φ − θ the pseudo-gradient
        buffer = write("buffer", o.scale_add(buffer, outer.momentum,
                                             o.sub(inputs.slow, fast32)))
        if outer.nesterov:
            # φ − α (μ b + s) = φ + α (θ − φ) − α μ b: s is not a value shared by two writes
            # (XLA on CPU would compute it in a pass of its own and read it back twice)
            slow = o.add_scaled(o.lerp(inputs.slow, fast32, outer.alpha), buffer,
                                -outer.alpha * outer.momentum)
        else:
            slow = o.add_scaled(inputs.slow, buffer, -outer.alpha)  # φ − α b
    slow = write("slow", slow)
    fast = list(inputs.fast) if unchanged_fast else write("fast", slow)
    moment, cached = moment_update(inputs.moment, inputs.cached, outer, o, write)
    held_slow = write("held_slow", o.cast_like(inputs.held_fast, slow_like))
    held_cached = write("held_cached", o.cast_like(inputs.held_moment, cached_like))
    return SyncResult(fast, slow, buffer, moment, cached, held_slow, held_cached)


def moment_update(moment, cached, outer, list_ops, write):
    """The inner optimizer's first moments right after a sync, and their new cache (App. C.5),
    each written (`sync` says how) and returned as written.

    "reset": 0. "interpolate" (the authors' "pullback"): α m + (1 − α) m_prev, m_prev being the
    moment right after the previous sync (0 before the first), computed in the cache's dtype
    (float32 for a 16-bit moment), and cached for the next sync. "maintain": untouched (no
    moments are given). With outer momentum, α is the outer rate (what the slow weights would
    move by with μ = 0).
    """
    if not moment:
        return [], []
    o = list_ops
    if outer.policy == policies.RESET:
        return write("moment", o.zeros_like(moment)), []
    wide = o.cast_like(moment, cached)
    new = o.blend(wide, cached, outer.alpha)
    return write("moment", new), write("cached", new)


class KerasListOps:
    """The list operations of `sync` in `keras.ops`, value by value, returning new values (the
    form of TensorFlow and JAX, traced or compiled). Scalars may be tensors."""

    read = staticmethod(ops.convert_to_tensor)  # a variable's current value

    @staticmethod
    def scalar(value):
        return value

    @staticmethod
    def cast_like(values, likes):
        return [v if v.dtype == like.dtype else ops.cast(v, like.dtype)
                for v, like in zip(values, likes)]

    @staticmethod
    def lerp(a, b, t):
        """a + t (b − a)."""
        return [ops.add(x, ops.multiply(ops.cast(t, x.dtype), ops.subtract(y, x)))
                for x, y in zip(a, b)]

    @staticmethod
    def blend(a, b, t):
        """t a + (1 − t) b."""
        out = []
        for x, y in zip(a, b):
            t_ = ops.cast(t, x.dtype)
            out.append(ops.add(ops.multiply(t_, x), ops.multiply(ops.subtract(1, t_), y)))
        return out

    @staticmethod
    def scale_add(a, t, b):
        """t a + b."""
        return [ops.add(ops.multiply(ops.cast(t, x.dtype), x), y) for x, y in zip(a, b)]

    @staticmethod
    def add_scaled(a, b, t):
        """a + t b."""
        return [ops.add(x, ops.multiply(ops.cast(t, x.dtype), y)) for x, y in zip(a, b)]

    @staticmethod
    def sub(a, b):
        return [ops.subtract(x, y) for x, y in zip(a, b)]

    @staticmethod
    def zeros_like(a):
        return [ops.zeros_like(x) for x in a]


def max_outer_rate(momentum, nesterov=True):
    """The largest outer rate α allowed with outer momentum μ.

    μ = 0: 1, Lookahead's own bound: the slow weights move part of the way to the fast ones,
    never past them. μ > 0: the rate beyond which the outer iteration diverges even when the k
    inner steps reach the minimum of a quadratic (the pseudo-gradient s then has curvature 1
    along it: s = φ − φ*). On that model the outer step is heavy-ball or Nesterov momentum on
    h = 1, stable exactly for α < 2(1 + μ) (plain), α < 2(1 + μ)/(1 + 2μ) (Nesterov): the
    Jury conditions of x_{t+1} = (1 − α)(1 + μ) x_t − μ(1 − α) x_{t−1} (Nesterov) and
    x_{t+1} = (1 + μ − α) x_t − μ x_{t−1} (plain). Inner steps that fall short of the minimum
    (curvature below 1) would tolerate more; none can make a rate beyond this safe for every
    problem. The published settings lie well inside: DiLoCo α 0.7, μ 0.9 (limit 1.36), SNOO
    α 0.8, μ 0.75 (limit 1.4).
    """
    if momentum == 0:
        return 1.0
    if nesterov:
        return 2 * (1 + momentum) / (1 + 2 * momentum)
    return 2 * (1 + momentum)


def sync_is_due(applied, since_sync, k):
    """Does this step sync: the inner optimizer applied an update, the k-th since the last sync?

    `since_sync` counts the applied updates since the last sync, this one included. Operators
    only, so that the host-counted form (Python ints) and the device forms (tensors) share it.
    """
    return applied & (since_sync >= k)


def since_sync_at(count, k):
    """Applied updates since the last sync after `count` updates with a constant k (syncs fall
    at multiples of k): (count − 1) mod k + 1, which reaches k exactly at a sync. Also the
    number of syncs done before this one: (count − 1) // k."""
    return (count - 1) % k + 1, (count - 1) // k
