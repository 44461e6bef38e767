"Sweeps of core's metrics and likelihoods against scipy (the notebook holds the small worked cases)."
import numpy as np, pytest, scipy.stats, torch
from stlearn_nb.core import (pearson_per_gene, spearman_per_gene, correlation_summary, poisson_log_prob,
                             nb_log_prob, zinb_log_prob, seed_everything)

@pytest.mark.parametrize('n,G,lam', [(5, 3, 0.5), (37, 50, 2.0), (200, 7, 30.0)])
def test_correlations_match_scipy_with_ties(n, G, lam):
    rng = np.random.default_rng(n * G)
    pred, true = rng.poisson(lam, (n, G)).astype(float), rng.poisson(lam, (n, G)) + 0.5 * rng.poisson(lam, (n, G))
    r, rho = pearson_per_gene(pred, true), spearman_per_gene(pred, true)
    for g in range(G):
        const = np.ptp(pred[:, g]) == 0 or np.ptp(true[:, g]) == 0
        if const: assert np.isnan(r[g]) and np.isnan(rho[g]); continue
        assert r[g] == pytest.approx(scipy.stats.pearsonr(pred[:, g], true[:, g])[0], abs=1e-10)
        assert rho[g] == pytest.approx(scipy.stats.spearmanr(pred[:, g], true[:, g])[0], abs=1e-10)

def test_constant_genes_are_nan_without_warnings(recwarn):
    x = np.ones((10, 4)); y = np.random.default_rng(0).normal(size=(10, 4))
    assert np.isnan(spearman_per_gene(x, y)).all() and np.isnan(pearson_per_gene(y, x)).all()
    assert len(recwarn) == 0
    s = correlation_summary(np.r_[pearson_per_gene(y, y), np.nan])
    assert s == dict(mean=1.0, median=1.0, n_genes=4, n_undefined=1)

def test_correlation_is_invariant_to_affine_maps():
    rng = np.random.default_rng(1); p, t = rng.normal(size=(50, 6)), rng.normal(size=(50, 6))
    np.testing.assert_allclose(pearson_per_gene(3 * p + 7, t), pearson_per_gene(p, t), atol=1e-12)
    np.testing.assert_allclose(spearman_per_gene(np.exp(p), t), spearman_per_gene(p, t), atol=1e-12)

def test_count_likelihoods_on_a_grid_match_scipy():
    c, mu, theta = np.meshgrid(np.arange(0, 60, 3.), np.geomspace(1e-3, 200, 9), np.geomspace(0.05, 500, 7), indexing='ij')
    c, mu, theta = (torch.tensor(a.ravel(), dtype=torch.float64) for a in (c, mu, theta))
    np.testing.assert_allclose(poisson_log_prob(c, mu).numpy(), scipy.stats.poisson.logpmf(c, mu), rtol=1e-9, atol=1e-9)
    ref = scipy.stats.nbinom.logpmf(c, theta, theta / (theta + mu))
    np.testing.assert_allclose(nb_log_prob(c, mu, theta).numpy(), ref, rtol=1e-8, atol=1e-8)
    logits = torch.linspace(-4, 4, len(c), dtype=torch.float64); pi = torch.sigmoid(logits).numpy()
    zref = np.where(c.numpy() == 0, np.log(pi + (1 - pi) * np.exp(ref)), np.log1p(-pi) + ref)
    np.testing.assert_allclose(zinb_log_prob(c, mu, theta, logits).numpy(), zref, rtol=1e-8, atol=1e-8)

def test_likelihoods_sum_to_one_and_have_gradients():
    c = torch.arange(0, 400, dtype=torch.float64)
    mu = torch.tensor(7.3, dtype=torch.float64, requires_grad=True)
    for lp in (poisson_log_prob(c, mu), nb_log_prob(c, mu, torch.tensor(2.0, dtype=torch.float64)),
               zinb_log_prob(c, mu, torch.tensor(2.0, dtype=torch.float64), torch.tensor(0.3, dtype=torch.float64))):
        assert lp.exp().sum().item() == pytest.approx(1.0, abs=1e-9)
    (-poisson_log_prob(torch.tensor([3.0], dtype=torch.float64), mu).sum()).backward()
    assert mu.grad.item() == pytest.approx(1 - 3 / 7.3)   # d/dmu (mu - c log mu)

def test_seed_everything_reproduces_torch_and_numpy():
    seed_everything(11); a = torch.randn(3), np.random.rand(2)
    seed_everything(11); b = torch.randn(3), np.random.rand(2)
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_core_silences_fastai_torch_jit_warning_only():
    "Importing stlearn_nb.core first hides fastai's torch.jit FutureWarning, and only that message."
    import subprocess, sys
    code = ("import warnings, stlearn_nb.core, fastai.layers\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('default')\n"
            "    warnings.warn('other future warning', FutureWarning)\n"
            "print(len(w))")
    r = subprocess.run([sys.executable, '-W', 'default', '-c', code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert 'torch.jit' not in r.stderr, r.stderr
    assert r.stdout.strip() == '1'   # other FutureWarnings still reach the user
    control = subprocess.run([sys.executable, '-W', 'default', '-c', 'import fastai.layers'],
                             capture_output=True, text=True, timeout=120)
    if 'torch.jit.script' not in control.stderr:
        import pytest; pytest.skip('this fastai/torch pair no longer warns: the filter is untested here')
