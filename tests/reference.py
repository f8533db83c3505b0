"""An independent numpy implementation of Lookahead (Algorithm 1 of Zhang et al., 2019).

Written from the paper and from the update rules Keras documents for SGD (momentum) and Adam;
it shares no code with the package and is only imported by the tests.

Algorithm 1:
    φ_0 = θ_0
    for t = 1, 2, ...:
        θ_{t,0} = φ_{t-1}
        for i = 1..k:  θ_{t,i} = θ_{t,i-1} + A(L, θ_{t,i-1}, d)
        φ_t = φ_{t-1} + α (θ_{t,k} − φ_{t-1})
with the inner optimizer's first moment maintained, reset to zero, or interpolated
(m ← α m + (1 − α) m_prev, m_prev its value right after the previous sync) at each sync.

Outer momentum (Kallusky et al. 2025, "SNOO: Step-K Nesterov Outer Optimizer"; DiLoCo's outer
step, Douillard et al. 2023, on one worker), the sync's slow-weight line replaced by PyTorch's
SGD with momentum μ, rate η = α, applied to the pseudo-gradient s = φ − θ_{t,k}:
        b_t = μ b_{t-1} + s
        φ_t = φ_{t-1} − η (μ b_t + s)      (Nesterov)      or      φ_{t-1} − η b_t   (plain)
"""

import numpy as np


class SGD:
    """Keras SGD: m ← β m − lr g;  θ ← θ + m  (θ ← θ + β m − lr g with Nesterov)."""

    def __init__(self, lr, momentum=0.0, nesterov=False):
        self.lr, self.beta, self.nesterov = lr, momentum, nesterov

    def init(self, theta):
        return {"m": np.zeros_like(theta)}

    def step(self, theta, g, state, t):
        if self.beta == 0:
            return theta - self.lr * g
        m = self.beta * state["m"] - self.lr * g
        state["m"] = m
        if self.nesterov:
            return theta + self.beta * m - self.lr * g
        return theta + m

    first_moment = "m"


class Adam:
    """Keras Adam at step t (1-based):
    m ← m + (1 − β1)(g − m);  v ← v + (1 − β2)(g² − v)
    θ ← θ − lr √(1 − β2^t)/(1 − β1^t) · m / (√v + ε)
    """

    def __init__(self, lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        self.lr, self.b1, self.b2, self.eps = lr, beta_1, beta_2, epsilon

    def init(self, theta):
        return {"m": np.zeros_like(theta), "v": np.zeros_like(theta)}

    def step(self, theta, g, state, t):
        state["m"] = state["m"] + (1 - self.b1) * (g - state["m"])
        state["v"] = state["v"] + (1 - self.b2) * (g * g - state["v"])
        a = self.lr * np.sqrt(1 - self.b2**t) / (1 - self.b1**t)
        return theta - a * state["m"] / (np.sqrt(state["v"]) + self.eps)

    first_moment = "m"


class RAdam:
    """Liu et al. (2020), Algorithm 2, at step t (1-based), in TF Addons' form (ε added to √v̂,
    the adaptive step from ρ_t ≥ sma_threshold, its warm-up/decay schedule), with Keras's
    decoupled weight decay applied first (θ ← θ − lr·wd·θ, lr without the schedule factor):
        m ← β1 m + (1 − β1) g;  v ← β2 v + (1 − β2) g²;  m̂ = m/(1 − β1^t);  v̂ = v/(1 − β2^t)
        ρ∞ = 2/(1 − β2) − 1;  ρ_t = ρ∞ − 2tβ2^t/(1 − β2^t)
        ρ_t ≥ threshold:  r = √((ρ_t − 4)(ρ_t − 2)ρ∞ / ((ρ∞ − 4)(ρ∞ − 2)ρ_t));
                          θ ← θ − lr_t r m̂/(√v̂ + ε)
        otherwise:        θ ← θ − lr_t m̂
    lr_t: with total_steps T > 0 and w = T·warmup_proportion, lr·t/w for t ≤ w, then
    lr + (min_lr − lr)·min(t − w, T − w)/(T − w).
    The scalars (ρ_t, r, lr_t, the corrections) are computed in float64.
    """

    def __init__(self, lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7, sma_threshold=5.0,
                 total_steps=0, warmup_proportion=0.1, min_lr=0.0, weight_decay=None):
        self.lr, self.b1, self.b2, self.eps = lr, beta_1, beta_2, epsilon
        self.threshold, self.total, self.warmup, self.min_lr = (
            sma_threshold, total_steps, warmup_proportion, min_lr)
        self.wd = weight_decay

    def init(self, theta):
        return {"m": np.zeros_like(theta), "v": np.zeros_like(theta)}

    def rate(self, t):
        if self.total <= 0:
            return self.lr
        w = self.total * self.warmup
        if t <= w:
            return self.lr * t / w
        span = max(self.total - w, 1)
        return self.lr + (self.min_lr - self.lr) * min(t - w, span) / span

    def step(self, theta, g, state, t):
        if self.wd:
            theta = theta - np.float32(self.lr * self.wd) * theta
        state["m"] = self.b1 * state["m"] + (1 - self.b1) * g
        state["v"] = self.b2 * state["v"] + (1 - self.b2) * g * g
        m_hat = state["m"] / (1 - self.b1**t)
        v_hat = state["v"] / (1 - self.b2**t)
        rho_inf = 2 / (1 - self.b2) - 1
        rho = rho_inf - 2 * t * self.b2**t / (1 - self.b2**t)
        if rho >= self.threshold:
            r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            return theta - self.rate(t) * r * m_hat / (np.sqrt(v_hat) + self.eps)
        return theta - self.rate(t) * m_hat

    first_moment = "m"


class Groups:
    """Keras's MultiOptimizer: parameter group i (θ[i] along the first axis) updated by its own
    optimizer, each with its own state and the same step count t. The state is presented as
    whole arrays, group i's values at [i], so that Lookahead's policies act on every group's
    moment at once (a group without the slot keeps zeros there, untouched by its optimizer).
    """

    def __init__(self, *inners):
        self.inners = inners

    def init(self, theta):
        parts = [inner.init(theta[i]) for i, inner in enumerate(self.inners)]
        names = sorted({n for part in parts for n in part})
        return {n: np.stack([part.get(n, np.zeros_like(theta[i])) for i, part in enumerate(parts)])
                for n in names}

    def step(self, theta, g, state, t):
        new = theta.copy()
        for i, inner in enumerate(self.inners):
            part = {n: state[n][i].copy() for n in inner.init(theta[i])}
            new[i] = inner.step(theta[i], g[i], part, t)
            for n, value in part.items():
                state[n][i] = value
        return new

    first_moment = "m"


def lookahead(inner, theta0, grad_fn, steps, k, alpha, inner_state="maintain", record=None,
              momentum=0.0, nesterov=True):
    """Runs `steps` inner updates of Lookahead(inner); returns per-step (fast, slow, state).

    `grad_fn(theta)` gives the gradient at the current fast weights. Computed in float32, like
    the weights it is compared with (numpy keeps python scalars at the array's precision).

    Extensions beyond Algorithm 1's constants:
    - `k` may be a function of the number of syncs done: the next sync comes after that many
      updates since the last one;
    - `alpha` may be a function of the number of syncs done, or ("adaptive", alpha_low,
      curvature) with `curvature(state, t)` the diagonal Â: then at each sync, with d = φ − θ
      and g the gradient of the k-th update, α* = 1 + gᵀd / (dᵀÂd) (paper, Prop. 1), and
      α = clip(α*, alpha_low, 1);
    - `record`, a dict, receives the list of α used ("alpha") and of α* ("estimate");
    - `momentum` μ > 0: the outer step with momentum (the module's docstring), η = α.
    """
    theta = np.asarray(theta0, np.float32).copy()
    phi = theta.copy()
    state = inner.init(theta)
    cached = np.zeros_like(theta)
    buffer = np.zeros_like(theta)
    history = []
    since, syncs = 0, 0
    alphas, estimates = [], []
    for t in range(1, steps + 1):
        g = grad_fn(theta)
        theta = inner.step(theta, g, state, t)
        since += 1
        if since < (k(syncs) if callable(k) else k):
            history.append((theta.copy(), phi.copy(), {n: v.copy() for n, v in state.items()}))
            continue
        if isinstance(alpha, tuple):
            _, alpha_low, curvature = alpha
            d = (phi - theta).astype(np.float64)
            den = np.sum(curvature(state, t) * d * d)
            est = 1.0 + np.sum(g * d) / den if den > 0 else 1.0
            estimates.append(est)
            a = np.float32(min(max(est, alpha_low), 1.0))
        else:
            a = alpha(syncs) if callable(alpha) else alpha
            a = np.float32(a) if callable(alpha) else a
        alphas.append(a)
        if momentum:
            s = phi - theta
            buffer = momentum * buffer + s
            phi = phi - a * (momentum * buffer + s if nesterov else buffer)
        else:
            phi = phi + a * (theta - phi)
        theta = phi.copy()
        m = state.get(inner.first_moment)
        if inner_state == "reset":
            state[inner.first_moment] = np.zeros_like(m)
        elif inner_state == "interpolate":
            m = a * m + (1 - a) * cached
            state[inner.first_moment] = m
            cached = m.copy()
        since, syncs = 0, syncs + 1
        history.append((theta.copy(), phi.copy(), {n: v.copy() for n, v in state.items()}))
    if record is not None:
        record["alpha"], record["estimate"] = alphas, estimates
    return history


def multilayer(inner, theta0, grad_fn, steps, cycles, alphas):
    """Multilayer Lookahead (Pushkin & Barba, 2021) by its recursive definition.

    Level 0 is one update of the inner optimizer. Level l ≥ 1 is Lookahead around level l − 1:
    its slow weights φ_l start at the current weights, it runs `cycles[l-1]` cycles of level
    l − 1 from there, then φ_l ← φ_l + α_l (θ − φ_l) and θ ← φ_l. The optimizer repeats the top
    level; every level below starts each of its cycles afresh, from the weights it is given.
    Returns, per inner update, (θ, [φ_1, ..., φ_n]) as they stand after it (a level not yet
    started holds θ_0).
    """
    theta = np.asarray(theta0, np.float32).copy()
    state = inner.init(theta)
    slows = [theta.copy() for _ in cycles]
    history = []
    t = 0

    def level(n, theta):
        """(θ after running level n from θ, whether the level ran to its sync)."""
        nonlocal t
        if n == 0:
            t += 1
            theta = inner.step(theta, grad_fn(theta), state, t)
            history.append((theta.copy(), [s.copy() for s in slows]))
            return theta, True
        slows[n - 1] = theta.copy()
        for _ in range(cycles[n - 1]):
            if t >= steps:
                return theta, False
            theta, complete = level(n - 1, theta)
            if not complete:
                return theta, False
        phi = slows[n - 1] + alphas[n - 1] * (theta - slows[n - 1])
        slows[n - 1] = phi
        theta = phi.copy()
        for below in range(n - 1):  # given θ now: their next cycles start from it
            slows[below] = theta.copy()
        history[-1] = (theta.copy(), [s.copy() for s in slows])
        return theta, True

    while t < steps:
        theta, _ = level(len(cycles), theta)
    return history
