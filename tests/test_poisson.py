"""The vectorised exact Poisson sampler (darkseg.synth.poisson) against the Poisson pmf."""

from __future__ import annotations

import math

import numpy as np
import pytest

from darkseg.synth import poisson as P
from darkseg.synth.poisson import poisson_numpy

stats = pytest.importorskip("scipy.stats", reason="scipy (a dev dependency) gives the reference pmf")

N = 200_000


def chi2_pvalue(x: np.ndarray, lam: float) -> float:
    """Chi-square goodness-of-fit p-value of integer samples ``x`` against Poisson(lam).

    Bins are single values, merged from both tails until every bin expects >= 20 counts.
    """
    x = x.astype(np.int64)
    n = x.size
    lo = int(stats.poisson.ppf(1e-7, lam)) if lam > 0 else 0
    hi = int(stats.poisson.isf(1e-7, lam)) + 1
    ks = np.arange(lo, hi + 1)
    edges_p = stats.poisson.pmf(ks, lam)
    edges_p[0] = stats.poisson.cdf(lo, lam)  # left tail into the first bin
    edges_p[-1] = stats.poisson.sf(hi - 1, lam)  # right tail into the last bin
    counts = np.bincount(np.clip(x, lo, hi) - lo, minlength=ks.size).astype(np.float64)
    exp = edges_p * n
    # merge small expected bins into their inner neighbour, from both ends
    obs_b, exp_b = list(counts), list(exp)
    while len(exp_b) > 1 and exp_b[0] < 20:
        e, o = exp_b.pop(0), obs_b.pop(0)
        exp_b[0] += e
        obs_b[0] += o
    while len(exp_b) > 1 and exp_b[-1] < 20:
        e, o = exp_b.pop(), obs_b.pop()
        exp_b[-1] += e
        obs_b[-1] += o
    if len(exp_b) == 1:  # a degenerate distribution: every sample must sit in the one bin
        return 1.0 if obs_b[0] == n else 0.0
    obs_a, exp_a = np.array(obs_b), np.array(exp_b)
    chi2 = float(((obs_a - exp_a) ** 2 / exp_a).sum())
    return float(stats.chi2.sf(chi2, df=len(exp_a) - 1))


# both regimes, grid points of the table, the boundary at LARGE (64), and huge means
LAMS = [0.003, 0.06, 0.25, 0.5, 1.0, 3.7, 12.75, 37.0, 63.999, 64.0, 64.5, 150.0, 1234.5, 5000.0]


@pytest.mark.parametrize("lam", LAMS)
def test_matches_poisson_pmf(lam):
    x = poisson_numpy(np.full(N, lam), np.random.default_rng(int(lam * 1000) + 1))
    assert x.dtype == np.float64 and np.all(x == np.round(x)) and x.min() >= 0
    assert chi2_pvalue(x, lam) > 1e-4
    assert abs(x.mean() - lam) < 6 * math.sqrt(lam / N)


def test_mixed_means_each_pixel_has_its_own_distribution():
    """Both regimes in one call, interleaved: each group matches its own pmf (no mix-up of indices)."""
    lams = np.array([0.2, 4.4, 40.0, 300.0])
    lam = np.tile(lams, N // 4).reshape(100, -1, 4)  # an image-like (h, w, 4) layout
    x = poisson_numpy(lam, np.random.default_rng(7))
    assert x.shape == lam.shape
    for c, lv in enumerate(lams):
        assert chi2_pvalue(x[..., c].ravel(), lv) > 1e-4, lv


def test_neighbouring_draws_are_uncorrelated():
    lam = np.full(N, 8.0)
    lam[::2] = 90.0  # alternate regimes too
    x = poisson_numpy(lam, np.random.default_rng(3))
    for sl in (slice(0, None, 2), slice(1, None, 2)):
        v = x[sl]
        r = np.corrcoef(v[:-1], v[1:])[0, 1]
        assert abs(r) < 5 / math.sqrt(v.size)


def test_chi_square_check_accepts_numpy_and_detects_a_wrong_sampler():
    """The acceptance test above passes NumPy's sampler and has power: a 2 % error in the mean, or
    rounded Gaussians, fail it."""
    rng = np.random.default_rng(0)
    for lam in (0.06, 3.7, 37.0):
        assert chi2_pvalue(rng.poisson(lam, N), lam) > 1e-4
    assert chi2_pvalue(rng.poisson(1.02 * 37.0, N), 37.0) < 1e-4
    assert chi2_pvalue(rng.poisson(1.02 * 300.0, N), 300.0) < 1e-4
    gauss = np.maximum(np.round(rng.normal(3.7, math.sqrt(3.7), N)), 0)
    assert chi2_pvalue(gauss, 3.7) < 1e-4


def test_zero_mean_is_zero_and_empty_input_works():
    x = poisson_numpy(np.zeros((3, 5)), np.random.default_rng(0))
    assert x.shape == (3, 5) and not x.any()
    assert poisson_numpy(np.zeros((0, 4)), np.random.default_rng(0)).shape == (0, 4)


def test_seeded_and_float32_input():
    lam = np.linspace(0, 60, 5000, dtype=np.float32).reshape(50, 100)
    a = poisson_numpy(lam, np.random.default_rng(11))
    b = poisson_numpy(lam, np.random.default_rng(11))
    c = poisson_numpy(lam, np.random.default_rng(12))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("bad", [-1e-3, np.nan, np.inf])
def test_rejects_invalid_means(bad):
    lam = np.ones(10)
    lam[3] = bad
    with pytest.raises(ValueError, match="finite and >= 0"):
        poisson_numpy(lam, np.random.default_rng(0))


def test_log_factorial_table_and_series():
    k = np.array([0, 1, 2, 7, 100, 255, 256, 257, 1000, 12345, 1e6])
    ref = np.array([math.lgamma(v + 1) for v in k])
    np.testing.assert_allclose(P._log_factorial(k.astype(np.float64)), ref, rtol=1e-14, atol=1e-14)


def test_cdf_table_rows():
    """Every tabulated row is a non-decreasing CDF of Poisson(row * STEP) ending at the sentinel."""
    cdf = P._CDF.reshape(-1, P._LEN)
    assert np.all(np.diff(cdf, axis=1) >= 0) and np.all(cdf[:, -1] == 2.0)
    for row in (0, 1, 17, cdf.shape[0] - 1):
        ref = stats.poisson.cdf(np.arange(P._LEN - 1), row * P.STEP)
        np.testing.assert_allclose(cdf[row, :-1], ref, rtol=0, atol=1e-13)


def test_pvalues_over_many_means_are_uniform():
    """Exactness across the whole range: for 60 random means (both regimes, up to 8000) the
    goodness-of-fit p-values of 50k draws each are uniform, as they are for an exact sampler."""
    rng = np.random.default_rng(123)
    lams = np.concatenate(
        [rng.uniform(0, 10, 20), rng.uniform(10, 64, 20), np.exp(rng.uniform(np.log(64), np.log(8000), 20))]
    )
    ps = [chi2_pvalue(poisson_numpy(np.full(50_000, lv), rng), lv) for lv in lams]
    assert stats.kstest(ps, "uniform").pvalue > 1e-3


def test_torch_front_end_on_cpu_is_seeded_and_exact():
    import torch

    from darkseg.synth.poisson import poisson_torch

    lam = torch.tensor([0.3, 5.0, 25.0, 900.0]).repeat(N // 4).view(-1, 4)
    a = poisson_torch(lam, torch.Generator().manual_seed(5))
    b = poisson_torch(lam, torch.Generator().manual_seed(5))
    assert a.dtype == torch.float32 and a.shape == lam.shape and torch.equal(a, b)
    g = torch.Generator().manual_seed(5)
    poisson_torch(lam, g)
    assert not torch.equal(poisson_torch(lam, g), a)  # the generator advanced
    for c in range(4):
        assert chi2_pvalue(a[:, c].numpy(), float(lam[0, c])) > 1e-4
