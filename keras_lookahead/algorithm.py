"""Algorithm 1 of the Lookahead paper (Zhang, Lucas, Hinton & Ba, 2019), on values.

With the inner optimizer A updating the fast weights θ:

    for each step:  θ ← θ + A(θ)                      (the inner optimizer, as configured)
                    if A applied its k-th update since the last sync:   (`sync_is_due`)
                        φ ← φ + α (θ − φ);  θ ← φ       (`slow_update`)
                        m ← policy(m, m_prev, α)        (`momentum_update`, App. C.5)

These functions are the whole of the algorithm. `lookahead.py` holds the state they act on
(φ, m_prev, counters) and `_forms.py` runs the step in the form each execution mode needs; both
import this module, which imports neither.
"""

from keras import ops

from keras_lookahead import inner_state as policies


def slow_update(slow, fast, alpha):
    """φ + α (θ − φ): the slow weights after a sync; the fast weights restart from it.

    With α = 1 (a Python float) the fast weights are returned as they are: φ + (θ − φ) can
    round differently from θ.
    """
    if fast.dtype != slow.dtype:  # float32 slow weights of a 16-bit variable: in float32
        fast = ops.cast(fast, slow.dtype)
    if isinstance(alpha, float) and alpha == 1.0:
        return fast
    alpha = ops.cast(alpha, slow.dtype)
    return ops.add(slow, ops.multiply(alpha, ops.subtract(fast, slow)))


def momentum_update(policy, m, m_prev, alpha):
    """The inner optimizer's first moment right after a sync (paper, App. C.5).

    "reset": 0. "interpolate" (the authors' "pullback"): α m + (1 − α) m_prev, m_prev being the
    moment right after the previous sync (0 before the first). "maintain" never gets here.
    """
    if policy == policies.RESET:
        return ops.zeros_like(m)
    if m.dtype != m_prev.dtype:  # a float32 cache of a 16-bit moment: in float32
        m = ops.cast(m, m_prev.dtype)
    alpha = ops.cast(alpha, m.dtype)
    return ops.add(ops.multiply(alpha, m), ops.multiply(ops.subtract(1, alpha), m_prev))


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
