"Tests for stlearn_nb.ppi_de: references (statsmodels, scipy, loop formulas), a coverage simulation, the CLI."
import math, os, subprocess, sys
import numpy as np, pandas as pd, pytest, torch
from scipy.optimize import minimize
from scipy.stats import norm
import statsmodels.api as sm
from stlearn_nb import ppi_de as P
from stlearn_nb.data import shared_data_dir

torch.set_num_threads(2)


def _data(seed=0, n=400, N=3000, G=5, offsets=True):
    rng = np.random.default_rng(seed)
    rates = rng.uniform(0.5, 6, (3, G))
    y, yu = rng.choice(3, n, p=[.5, .3, .2]), rng.choice(3, N, p=[.5, .3, .2])
    o, ou = (rng.normal(0, .3, n), rng.normal(0, .3, N)) if offsets else (None, None)
    eo = np.exp(o) if offsets else np.ones(n)
    euo = np.exp(ou) if offsets else np.ones(N)
    x = rng.negative_binomial(4, 4 / (4 + eo[:, None] * rates[y]))
    xu = rng.negative_binomial(4, 4 / (4 + euo[:, None] * rates[yu]))
    flip = lambda v: np.where(rng.random(len(v)) < .25, rng.choice(3, len(v)), v)
    return dict(x=x, y=y, yh=flip(y), xu=xu, yhu=flip(yu), o=o, ou=ou, w=rng.uniform(.5, 2, n))


def _loss_np(theta, x, y, o, family, phi):
    "Per-cell loss for one gene, plain numpy (independent of the torch code)."
    z = P.glm_design(y).numpy()
    lin = z @ theta + (0 if o is None else o)
    m = np.exp(lin)
    if family == 'poisson': return m - x * lin
    return -(x * lin - (x + phi) * np.log(phi + m))


@pytest.mark.parametrize('family', ['poisson', 'nb'])
def test_pointestimate_matches_scipy_minimize(family):
    "The PPI objective at lambda=0.4 with weights and offsets, minimised per gene by scipy, equals ours."
    d = _data(1)
    lam, phi = 0.4, np.full(d['x'].shape[1], 3.0)
    ours = P.ppi_glm_pointestimate(d['x'], d['y'], d['yh'], d['xu'], d['yhu'], lam=lam, weights=d['w'], offset=d['o'],
                                   offset_unlabeled=d['ou'], family=family, inv_dispersion=phi).numpy()
    w = d['w'] / d['w'].sum() * len(d['w'])
    for g in range(d['x'].shape[1]):
        f = lambda t: (lam * _loss_np(t, d['xu'][:, g], d['yhu'], d['ou'], family, phi[g]).mean()
                       + (w * (_loss_np(t, d['x'][:, g], d['y'], d['o'], family, phi[g])
                               - lam * _loss_np(t, d['x'][:, g], d['yh'], d['o'], family, phi[g]))).mean())
        ref = minimize(f, np.zeros(3), method='BFGS', options={'gtol': 1e-10}).x
        np.testing.assert_allclose(ours[g], ref, atol=1e-5)


def test_sandwich_matches_loop_formula():
    "Sandwich covariance at a fixed lambda equals the per-cell loop formula H^-1 [Cov(G - lam F) + n/N lam^2 Cov(F~)] H^-1 / n."
    d = _data(2, offsets=False)
    lam = 0.6
    fit = P.ppi_glm_fit(d['x'], d['y'], d['yh'], d['xu'], d['yhu'], lam=lam, weights=d['w'])
    n, N = len(d['y']), len(d['yhu'])
    w = d['w'] / d['w'].sum() * n
    for g in range(d['x'].shape[1]):
        th = fit['theta'][g].numpy()
        def grads(x, y, wt):
            out = []
            for i in range(len(y)):
                z = P.glm_design([y[i]]).numpy()[0]
                out.append(wt[i] * z * (np.exp(z @ th) - x[i]))
            return np.array(out)
        G_, F_, Fu = grads(d['x'][:, g], d['y'], w), grads(d['x'][:, g], d['yh'], w), grads(d['xu'][:, g], d['yhu'], np.ones(N))
        H = sum(w[i] * np.outer(z, z) * np.exp(z @ th) for i, z in enumerate(P.glm_design(d['y']).numpy())) / n
        V = np.cov((G_ - lam * F_).T, ddof=0) + n / N * lam**2 * np.cov(Fu.T, ddof=0)
        Hi = np.linalg.inv(H)
        np.testing.assert_allclose(fit['cov'][g].numpy(), Hi @ V @ Hi / n, rtol=1e-8)


def test_nb_classical_matches_statsmodels():
    "NB2 with fixed dispersion and offsets: beta equals statsmodels GLM NegativeBinomial; HC0 SE within 5%."
    d = _data(3, n=3000)
    phi = np.full(d['x'].shape[1], 4.0)
    fit = P.classical_glm_fit(d['x'], d['y'], offset=d['o'], family='nb', inv_dispersion=phi)
    for g in range(d['x'].shape[1]):
        r = sm.GLM(d['x'][:, g], P.glm_design(d['y']).numpy(), family=sm.families.NegativeBinomial(alpha=1 / 4.0),
                   offset=d['o']).fit(cov_type='HC0', tol=1e-12)
        np.testing.assert_allclose(fit['theta'][g].numpy(), r.params, rtol=1e-6, atol=1e-8)
        # statsmodels' GLM sandwich uses the expected (IRLS) information, ours the observed one: equal asymptotically
        np.testing.assert_allclose(fit['se'][g].item(), r.bse[1], rtol=0.05)


def test_estimate_inv_dispersion_recovers_truth():
    rng = np.random.default_rng(4)
    y = rng.choice(3, 40_000); rates = np.array([[2., 5.], [4., 1.], [3., 3.]])
    x = rng.negative_binomial(np.array([2., 8.]), np.array([2., 8.]) / (np.array([2., 8.]) + rates[y]))
    fit = P.classical_glm_fit(x, y)
    phi = P.estimate_inv_dispersion(torch.as_tensor(x, dtype=torch.float64), P.glm_design(y), fit['theta'])
    np.testing.assert_allclose(phi.numpy(), [2., 8.], rtol=0.1)


def test_ci_functions_agree_with_fit():
    d = _data(5)
    lo, hi = P.ppi_glm_ci(d['x'], d['y'], d['yh'], d['xu'], d['yhu'], alpha=0.1)
    fit = P.ppi_glm_fit(d['x'], d['y'], d['yh'], d['xu'], d['yhu'])
    np.testing.assert_allclose(((hi - lo) / 2).numpy(), norm.ppf(0.95) * fit['se'].numpy(), rtol=1e-12)
    lo0, hi0 = P.classical_glm_ci(d['x'], d['y'])
    assert lo0.shape == (d['x'].shape[1],) and torch.isfinite(hi0).all()
    # the classical interval is the ppi interval at lam = 0
    lo1, hi1 = P.ppi_glm_ci(d['x'], d['y'], d['yh'], d['xu'], d['yhu'], lam=0.0)
    np.testing.assert_allclose(lo1.numpy(), lo0.numpy(), rtol=1e-10)


def test_batched_equals_unbatched():
    "A leading replicate axis gives the same fits as one call per replicate."
    ds = [_data(s, n=200, N=800, offsets=False) for s in (6, 7)]
    stack = lambda k: np.stack([d[k] for d in ds])
    batched = P.ppi_glm_fit(stack('x'), stack('y'), stack('yh'), stack('xu'), stack('yhu'), weights=stack('w'))
    for r, d in enumerate(ds):
        single = P.ppi_glm_fit(d['x'], d['y'], d['yh'], d['xu'], d['yhu'], weights=d['w'])
        np.testing.assert_allclose(batched['beta'][r].numpy(), single['beta'].numpy(), rtol=1e-10)
        np.testing.assert_allclose(batched['se'][r].numpy(), single['se'].numpy(), rtol=1e-10)
        np.testing.assert_allclose(batched['lam'][r].numpy(), single['lam'].numpy(), rtol=1e-10)


def test_undefined_gene_is_nan_and_counted():
    d = _data(8, offsets=False)
    d['x'][:, 0] = 0   # no counts at all: beta undefined
    tab = P.de_table(P.classical_glm_fit(d['x'], d['y']))
    assert not tab['ok'].iloc[0] and tab['ok'].iloc[1:].all() and np.isnan(tab['p_adj'].iloc[0])


@pytest.fixture(scope='module')
def sim():
    "A small version of the simulation study (150 replicates, N=5000, n=300)."
    genes = P.simulate_de_genes(0)
    reps = P.ppi_sim_replicates(150, 5000, 300, seed=11, genes=genes, chunk=50,
                                arms=('naive', 'classical', 'ppi++', 'classical_pi_weights'))
    return genes, reps


def test_coverage_of_valid_arms_and_failure_of_wrong_ones(sim):
    genes, reps = sim
    R = reps['classical']['beta'].shape[0]
    table, _ = P.ppi_sim_summary(reps, genes, 0.05)
    t = table.set_index('arm')
    # 3 binomial SEs of a rate over R replicates (conservative: the 20 genes are pooled)
    tol = 3 * math.sqrt(0.05 * 0.95 / R)
    for arm in ('classical', 'ppi++'):
        assert abs(t.loc[arm, 'coverage'] - 0.95) < tol, (arm, t.loc[arm, 'coverage'], tol)
        assert t.loc[arm, 'type1_error'] < 0.05 + tol
    assert t.loc['ppi++', 'width_vs_classical'] < 0.95
    assert t.loc['naive', 'coverage'] < 0.95 - 5 * tol and t.loc['naive', 'type1_error'] > 0.5
    assert t.loc['classical_pi_weights', 'coverage'] < 0.95 - tol      # weights not inverted: under-covers
    # lower alpha: the valid arms still cover at 1 - alpha
    t90 = P.ppi_sim_summary(reps, genes, 0.10)[0].set_index('arm')
    assert abs(t90.loc['ppi++', 'coverage'] - 0.90) < 3 * math.sqrt(0.1 * 0.9 / R)


def test_weighted_classical_is_unbiased_under_stratified_design(sim):
    genes, reps = sim
    truth = genes['lfc'].to_numpy()
    def z_bias(arm):
        b = reps[arm]['beta']
        return (b.mean(0) - truth) / (b.std(0, ddof=1) / math.sqrt(len(b)))
    # per gene |bias| under 4 standard errors of the mean (20 genes: a 4-SE excursion has probability ~1e-3)
    assert np.abs(z_bias('classical')).max() < 4, z_bias('classical')
    # sampling probabilities used as weights (not inverted) are biased far beyond that
    assert np.abs(z_bias('classical_pi_weights')).max() > 8
    assert np.abs(reps['classical_pi_weights']['beta'].mean(0) - truth).mean() > 0.05


def test_curation_log_resumes_after_crash(tmp_path, monkeypatch):
    path = tmp_path / 'curation.csv'
    log = P.CurationLog(path, ['a', 'b', 'c'], [1, 0, 2])
    log.record('a', 'relabel', 0)
    real_replace = os.replace
    def crash(*args): raise KeyboardInterrupt('kernel died')
    monkeypatch.setattr(os, 'replace', crash)
    with pytest.raises(KeyboardInterrupt): log.record('b', 'accept')
    monkeypatch.setattr(os, 'replace', real_replace)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['curation.csv']
    log2 = P.CurationLog(path, ['a', 'b', 'c'], [1, 0, 2])
    assert log2.pending == ['b', 'c'] and log2.curated_labels().to_dict() == {'a': 0}
    log2.record('b', 'accept'); log2.record('c', 'reject'); log2.record('a', 'accept')   # re-deciding overrides
    assert P.CurationLog(path, ['a', 'b', 'c'], [1, 0, 2]).curated_labels().to_dict() == {'b': 0, 'c': 2, 'a': 1}
    with pytest.raises(ValueError, match='relabel needs a label'): log2.record('a', 'relabel')
    with pytest.raises(ValueError, match='not in this curation set'): P.CurationLog(path, ['a'], [1])


def test_curation_widget_builds_headless(tmp_path):
    pytest.importorskip('ipywidgets')
    log = P.CurationLog(tmp_path / 'c.csv', ['a', 'b'], [1, 0])
    panel = P.curation_widget(log, describe=lambda c: f'cell {c}')
    buttons = panel.children[2].children
    buttons[1].value = 2           # relabel dropdown -> 'other'
    buttons[2].click()
    assert log.curated_labels().to_dict() == {'a': 2} and log.pending == ['b']


def test_merfish_real_data_runs():
    folder = shared_data_dir('merfish_hypothalamus_rctd')
    if folder is None: pytest.skip('shared MERFISH data (merfish_hypothalamus_rctd) not found')
    from stlearn_nb.data import read_merfish_rctd
    import anndata as ad
    mer, _ = read_merfish_rctd(folder)
    x = mer.layers['counts'].toarray()
    rng = np.random.default_rng(0)
    mer.obs['lab'] = rng.choice(['A', 'B', 'C'], mer.n_obs)
    cur, unl = mer[:150].copy(), mer[150:].copy()
    tab = P.ppi_de(unl, cur, 'lab', 'lab', 'A', 'B', method='classical')
    ref = P.classical_glm_fit(x[:150], P._codes(mer.obs['lab'][:150], 'A', 'B'))
    np.testing.assert_allclose(tab['beta'].to_numpy(), np.where(tab['ok'], ref['beta'].numpy(), np.nan), rtol=1e-10)
    assert list(tab.index) == list(mer.var_names)


def test_cli_quick(tmp_path):
    out = tmp_path / 'ppi'
    r = subprocess.run([sys.executable, '-c', 'import sys; from stlearn_nb.cli import main; sys.exit(main(sys.argv[1:]))', 'ppi-sim', '--quick', '--out', str(out),
                        '--set', 'n_reps=6', '--set', 'n_unlabeled=2000', '--set', 'n_curated=200', '--set', 'chunk=6'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = pd.read_csv(out / 'results.csv')
    assert list(res['arm']) == list(P.SIM_ARMS) and (out / 'ppi_sim.png').exists() and (out / 'per_gene.csv').exists()


def test_plots_draw_what_the_tables_say():
    import matplotlib; matplotlib.use('Agg')
    d = _data(9, offsets=False)
    tabs = {'classical': P.de_table(P.classical_glm_fit(d['x'], d['y'])),
            'ppi++': P.de_table(P.ppi_glm_fit(d['x'], d['y'], d['yh'], d['xu'], d['yhu']))}
    ax = P.plot_volcano(tabs['ppi++'])
    assert ax.get_title() == f"{int((tabs['ppi++']['p_adj'] < 0.05).sum())} genes at BH 5%"
    ax = P.plot_forest(tabs, tabs['classical'].index[:3])
    assert len(ax.containers) == 2 and [t.get_text() for t in ax.get_yticklabels()] == list(tabs['classical'].index[:3])
    genes = P.simulate_de_genes(0)
    table, per_gene = P.ppi_sim_summary(P.ppi_sim_replicates(4, 500, 100, genes=genes, chunk=4), genes)
    ax = P.plot_sim_coverage(table, 4)
    np.testing.assert_allclose([p.get_height() for p in ax.patches[:4]], table['coverage'])
    assert len(P.plot_sim_width(per_gene).lines) == 3
