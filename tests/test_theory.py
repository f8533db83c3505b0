"""The paper's analysis, checked two ways: closed forms against cases with known answers, and the
project's optimizer against the closed forms. Noisy quadratic (Sec. 3.1, Lemma 1, Prop. 2) and
classical momentum on quadratics (Sec. 3.2, App. B.1)."""


import numpy as np
import pytest

from benchmarks.theory import analytic, momentum, noisy_quadratic

A = np.array([1.0, 0.3, 3.0])
SIGMA2 = 1.0 / A  # Σ = A⁻¹, as in the paper's Fig. 3


@pytest.mark.backend_independent
@pytest.mark.parametrize("lr", [0.05, 0.2, 0.6])
def test_one_step_lookahead_is_sgd_with_a_smaller_learning_rate(lr):
    # k = 1: φ ← φ − α γ ∇L, i.e. SGD with learning rate α γ
    for alpha in (0.3, 0.5, 0.9):
        np.testing.assert_allclose(analytic.v_star_lookahead(A, SIGMA2, lr, 1, alpha),
                                   analytic.v_star_sgd(A, SIGMA2, alpha * lr), rtol=1e-12)


@pytest.mark.backend_independent
@pytest.mark.parametrize("k", [1, 5, 20])
def test_alpha_one_is_sgd(k):
    np.testing.assert_allclose(analytic.v_star_lookahead(A, SIGMA2, 0.1, k, 1.0),
                               analytic.v_star_sgd(A, SIGMA2, 0.1), rtol=1e-12)


@pytest.mark.backend_independent
def test_lookahead_never_has_more_variance_than_sgd():
    # Prop. 2: V*_LA ≤ V*_SGD for every stable learning rate, k and α in (0, 1]
    for lr in np.linspace(0.01, 0.6, 12):
        for k in (2, 5, 10):
            for alpha in np.linspace(0.1, 1.0, 10):
                assert np.all(analytic.v_star_lookahead(A, SIGMA2, lr, k, alpha)
                              <= analytic.v_star_sgd(A, SIGMA2, lr) * (1 + 1e-12))


@pytest.mark.backend_independent
def test_lemma_1_recursions_reach_the_closed_forms():
    lr, k, alpha = 0.2, 5, 0.5
    _, v_sgd = analytic.sgd_trajectory(A, SIGMA2, lr, np.ones(3), np.zeros(3), 3000)
    _, v_la = analytic.lookahead_trajectory(A, SIGMA2, lr, k, alpha, np.ones(3), np.zeros(3), 600)
    np.testing.assert_allclose(v_sgd[-1], analytic.v_star_sgd(A, SIGMA2, lr), rtol=1e-9)
    np.testing.assert_allclose(v_la[-1], analytic.v_star_lookahead(A, SIGMA2, lr, k, alpha),
                               rtol=1e-9)


@pytest.mark.parametrize("lr, k, alpha", [(0.1, None, None), (0.1, 5, 0.5), (0.3, 5, 0.8),
                                          (0.1, 10, 0.5)])
def test_measured_stationary_variance_matches_prop_2(lr, k, alpha):
    # 4000 chains × 40 reads: the estimate's relative standard error is about 1-2%.
    measured = noisy_quadratic.measure_stationary_variance(A, SIGMA2, lr, k, alpha)
    if k is None:
        expected = analytic.v_star_sgd(A, SIGMA2, lr)
    else:
        expected = analytic.v_star_lookahead(A, SIGMA2, lr, k, alpha)
    np.testing.assert_allclose(measured, expected, rtol=0.06)



def _outer_matrix(lam, lr, beta, k, alpha):
    """The analytic outer map on (φ, m), built from App. B.1's per-step matrix."""
    bk = np.linalg.matrix_power(analytic.momentum_matrix(lam, lr, beta), k)
    return np.array([[1 - alpha + alpha * bk[0, 0], alpha * bk[0, 1]], [bk[1, 0], bk[1, 1]]])


@pytest.mark.parametrize("lam, lr, beta, k, alpha", [
    (1.0, 0.1, 0.9, 5, 0.5),     # under-damped: complex eigenvalues
    (0.01, 0.5, 0.5, 5, 0.5),    # over-damped: real eigenvalues
    (2.0, 0.3, 0.95, 20, 0.5),   # the paper's k = 20
    (1.0, 0.1, 0.9, 1, 0.8),
])
def test_the_real_optimizer_is_the_linear_system_of_app_b1(lam, lr, beta, k, alpha):
    measured = momentum.measured_outer_map(lam, lr, beta, k, alpha)
    expected = _outer_matrix(lam, lr, beta, k, alpha)
    np.testing.assert_allclose(measured, expected, rtol=2e-5, atol=2e-6)
    rate = np.max(np.abs(np.linalg.eigvals(measured))) ** (1 / k)
    assert rate == pytest.approx(analytic.lookahead_cm_rate([lam], lr, beta, k, alpha), rel=1e-4)


@pytest.mark.backend_independent
def test_lookahead_cm_rate_reduces_to_cm_at_alpha_one():
    lams = np.geomspace(1e-3, 1, 7)
    for lr in (0.01, 0.1, 1.0):
        assert analytic.lookahead_cm_rate(lams, lr, 0.9, 10, 1.0) == pytest.approx(
            analytic.cm_rate(lams, lr, 0.9), rel=1e-9)


@pytest.mark.backend_independent
def test_cm_rate_is_sqrt_beta_when_every_eigenvalue_is_under_damped():
    # complex roots of z² − (1 + β − ηλ) z + β have modulus √β
    beta = 0.81
    lams = np.array([0.1, 0.5, 1.0])
    lr = 1.0  # (1 − √β)² = 0.01 ≤ ηλ ≤ (1 + √β)² = 3.61 for every λ
    assert analytic.cm_rate(lams, lr, beta) == pytest.approx(0.9, rel=1e-12)
