"Tests for stlearn_nb.ppi_de: references (statsmodels, scipy, loop formulas), a coverage simulation, the CLI."
import math, os, subprocess, sys
import numpy as np, pandas as pd, pytest, torch
from scipy.optimize import minimize
from scipy.stats import norm
import statsmodels.api as sm
from stlearn_nb import ppi_de as P
from stlearn_nb.data import shared_data_dir

torch.set_num_threads(2)


def _data(seed=0, n=400, N=3000, G=5, offsets=True, K=3):
    rng = np.random.default_rng(seed)
    rates = rng.uniform(0.5, 6, (K, G))
    prob = [.5, .3, .2] if K == 3 else [.6, .4]
    y, yu = rng.choice(K, n, p=prob), rng.choice(K, N, p=prob)
    o, ou = (rng.normal(0, .3, n), rng.normal(0, .3, N)) if offsets else (None, None)
    eo = np.exp(o) if offsets else np.ones(n)
    euo = np.exp(ou) if offsets else np.ones(N)
    x = rng.negative_binomial(4, 4 / (4 + eo[:, None] * rates[y]))
    xu = rng.negative_binomial(4, 4 / (4 + euo[:, None] * rates[yu]))
    flip = lambda v: np.where(rng.random(len(v)) < .25, rng.choice(K, len(v)), v)
    return dict(x=x, y=y, yh=flip(y), xu=xu, yhu=flip(yu), o=o, ou=ou, w=rng.uniform(.5, 2, n))


def _loss_np(theta, x, y, o, family, phi):
    "Per-cell loss for one gene, plain numpy (independent of the torch code)."
    z = P.glm_design(y, len(theta)).numpy()
    lin = z @ theta + (0 if o is None else o)
    m = np.exp(lin)
    if family == 'poisson': return m - x * lin
    return -(x * lin - (x + phi) * np.log(phi + m))


@pytest.mark.parametrize('K', [2, 3])
@pytest.mark.parametrize('family', ['poisson', 'nb'])
def test_pointestimate_matches_scipy_minimize(family, K):
    "The PPI objective at lambda=0.4 with weights and offsets, minimised per gene by scipy, equals ours (two or three classes)."
    d = _data(1, K=K)
    lam, phi = 0.4, np.full(d['x'].shape[1], 3.0)
    ours = P.ppi_glm_pointestimate(d['x'], d['y'], d['yh'], d['xu'], d['yhu'], lam=lam, weights=d['w'], offset=d['o'],
                                   offset_unlabeled=d['ou'], family=family, inv_dispersion=phi, n_classes=K).numpy()
    w = d['w'] / d['w'].sum() * len(d['w'])
    for g in range(d['x'].shape[1]):
        f = lambda t: (lam * _loss_np(t, d['xu'][:, g], d['yhu'], d['ou'], family, phi[g]).mean()
                       + (w * (_loss_np(t, d['x'][:, g], d['y'], d['o'], family, phi[g])
                               - lam * _loss_np(t, d['x'][:, g], d['yh'], d['o'], family, phi[g]))).mean())
        ref = minimize(f, np.zeros(K), method='BFGS', options={'gtol': 1e-10}).x
        np.testing.assert_allclose(ours[g], ref, atol=1e-5)


@pytest.mark.parametrize('K', [2, 3])
def test_sandwich_matches_loop_formula(K):
    "Sandwich covariance at a fixed lambda equals the per-cell loop formula H^-1 [Cov(G - lam F) + n/N lam^2 Cov(F~)] H^-1 / n."
    d = _data(2, offsets=False, K=K)
    lam = 0.6
    fit = P.ppi_glm_fit(d['x'], d['y'], d['yh'], d['xu'], d['yhu'], lam=lam, weights=d['w'], n_classes=K)
    n, N = len(d['y']), len(d['yhu'])
    w = d['w'] / d['w'].sum() * n
    for g in range(d['x'].shape[1]):
        th = fit['theta'][g].numpy()
        def grads(x, y, wt):
            out = []
            for i in range(len(y)):
                z = P.glm_design([y[i]], K).numpy()[0]
                out.append(wt[i] * z * (np.exp(z @ th) - x[i]))
            return np.array(out)
        G_, F_, Fu = grads(d['x'][:, g], d['y'], w), grads(d['x'][:, g], d['yh'], w), grads(d['xu'][:, g], d['yhu'], np.ones(N))
        H = sum(w[i] * np.outer(z, z) * np.exp(z @ th) for i, z in enumerate(P.glm_design(d['y'], K).numpy())) / n
        V = np.cov((G_ - lam * F_).T, ddof=0) + n / N * lam**2 * np.cov(Fu.T, ddof=0)
        Hi = np.linalg.inv(H)
        np.testing.assert_allclose(fit['cov'][g].numpy(), Hi @ V @ Hi / n, rtol=1e-8)


@pytest.mark.parametrize('K', [2, 3])
def test_nb_classical_matches_statsmodels(K):
    "NB2 with fixed dispersion and offsets: beta and the HC0 sandwich SE equal statsmodels GLM NegativeBinomial."
    d = _data(3, n=3000, K=K)
    phi = np.full(d['x'].shape[1], 4.0)
    fit = P.classical_glm_fit(d['x'], d['y'], offset=d['o'], family='nb', inv_dispersion=phi, n_classes=K)
    for g in range(d['x'].shape[1]):
        # ours is the observed-information sandwich H_obs^-1 Cov(score) H_obs^-1 / n; statsmodels fitted by Newton with
        # optim_hessian='oim' computes the same estimator, so only rounding separates them (rtol 1e-8). Its default
        # (IRLS, expected information) differs by O(1/sqrt(n)) under the log link, which is not the NB2 canonical link.
        r = sm.GLM(d['x'][:, g], _design_np(d['y'], K), family=sm.families.NegativeBinomial(alpha=1 / 4.0),
                   offset=d['o']).fit(method='newton', optim_hessian='oim', cov_type='HC0', tol=1e-12)
        np.testing.assert_allclose(fit['theta'][g].numpy(), r.params, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(fit['se'][g].item(), r.bse[1], rtol=1e-8)


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
    assert (tab['status'] == np.where(tab['ok'], 'ok', 'all-zero gene')).all()


def test_status_says_why_a_gene_is_undefined():
    "Each reason on its own: zero counts in one group, a design class without cells, a compared group without cells."
    d = _data(9, offsets=False)
    x, y = d['x'].copy(), d['y']
    x[y == 0, 1] = 0; x[y == 1, 2] = 0
    fit = P.classical_glm_fit(x, y)
    assert P.de_table(fit)['status'].tolist() == ['ok', 'zero in reference', 'zero in target', 'ok', 'ok']
    two = np.where(y == 2, 0, y)                              # no cell in class 2 of a 3-class design
    assert set(P.de_table(P.classical_glm_fit(x, two))['status']) == {'singular design'}
    assert set(P.de_table(P.classical_glm_fit(x, np.where(y == 1, 0, y)))['status']) == {'empty group'}
    # batched fits carry the codes too (one per replicate and gene)
    assert P.classical_glm_fit(np.stack([x, x]), np.stack([y, two]))['status'].shape == (2, x.shape[1])


@pytest.fixture(scope='module')
def sim():
    "A small version of the simulation study (150 replicates, N=5000, n=300)."
    genes = P.simulate_de_genes(0)
    reps = P.ppi_sim_replicates(150, 5000, 300, seed=11, genes=genes, chunk=50,
                                arms=('naive', 'classical', 'ppi++', 'classical_pi_weights'))
    return genes, reps


def _rate_and_se(hits, nominal):
    """Rate of (R, G) per-interval hits pooled over replicates and genes, and its standard error. Genes of one replicate
    share cells (labels, depths, curation), so their hits are correlated: the SE is the replicate-block SE (spread of
    the R per-replicate rates / sqrt R), never below the binomial SE of R*G independent intervals at the nominal rate."""
    per_rep = hits.mean(1)
    return hits.mean(), max(per_rep.std(ddof=1) / math.sqrt(len(per_rep)), math.sqrt(nominal * (1 - nominal) / hits.size))


def _covers(r, truth, alpha, se_scale=1.0, q=None):
    "(R, G) interval hits |beta - truth| <= q se (undefined fits count as misses)."
    q = norm.ppf(1 - alpha / 2) if q is None else q
    with np.errstate(invalid='ignore'): return np.where(np.isfinite(r['beta'] + r['se']), np.abs(r['beta'] - truth) <= q * se_scale * r['se'], False)


def _covers_at_nominal(r, truth, alpha, **kw):
    rate, se = _rate_and_se(_covers(r, truth, alpha, **kw), 1 - alpha)
    return abs(rate - (1 - alpha)) < 3 * se, rate, se


def test_coverage_of_valid_arms_and_failure_of_wrong_ones(sim):
    genes, reps = sim
    truth, null = genes['lfc'].to_numpy(), (genes['kind'] == 'null').to_numpy()
    t = P.ppi_sim_summary(reps, genes, 0.05)[0].set_index('arm')
    for alpha in (0.05, 0.10):
        for arm in ('classical', 'ppi++'):
            ok, rate, se = _covers_at_nominal(reps[arm], truth, alpha)
            assert ok, (arm, alpha, rate, se)
            if alpha == 0.05: np.testing.assert_allclose(rate, t.loc[arm, 'coverage'], rtol=1e-12)   # the summary's rate
            rejects, se0 = _rate_and_se(~_covers({k: v[:, null] for k, v in reps[arm].items()}, 0.0, alpha), alpha)
            assert rejects < alpha + 3 * se0, (arm, alpha, rejects, se0)
        # negative controls, the same test: intervals 15% too narrow (an SE underestimated by 15%) and the
        # sampling probabilities used as weights (not inverted) under-cover and fail it
        assert not _covers_at_nominal(reps['ppi++'], truth, alpha, se_scale=0.85)[0]
        assert not _covers_at_nominal(reps['classical_pi_weights'], truth, alpha)[0]
        assert not _covers_at_nominal(reps['naive'], truth, alpha)[0]
    assert t.loc['ppi++', 'width_vs_classical'] < 0.95
    assert t.loc['naive', 'type1_error'] > 0.5


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


def test_merfish_real_cell_types_equal_statsmodels():
    "Real counts and real cell types (the MERFISH RCTD reference): classical ppi_de equals statsmodels' Poisson GLM (HC0) gene by gene."
    folder = shared_data_dir('merfish_hypothalamus_rctd')
    if folder is None: pytest.skip('shared MERFISH data (merfish_hypothalamus_rctd) not found')
    from stlearn_nb.data import read_merfish_reference   # the labelled half; its zero-count cells dropped (a warning says so)
    with pytest.warns(UserWarning, match='zero total counts'): ref = read_merfish_reference(folder, drop_zero=True)
    half = np.random.default_rng(0).random(ref.n_obs) < 0.5
    cur, unl = ref[half].copy(), ref[~half].copy()
    tab = P.ppi_de(unl, cur, 'cell_type', 'cell_type', 'Excitatory', 'Inhibitory', method='classical')
    assert list(tab.index) == list(ref.var_names)
    x = cur.layers['counts'].toarray() if hasattr(cur.layers['counts'], 'toarray') else np.asarray(cur.layers['counts'])
    types = cur.obs['cell_type'].astype(str).to_numpy()
    X = np.column_stack([np.ones(len(types)), types == 'Inhibitory', ~np.isin(types, ['Excitatory', 'Inhibitory'])]).astype(float)
    fewest = np.minimum(x[types == 'Excitatory'].sum(0), x[types == 'Inhibitory'].sum(0))
    for g in np.argsort(-fewest)[:5]:   # the five genes best expressed in both compared types
        r = sm.GLM(x[:, g], X, family=sm.families.Poisson()).fit(cov_type='HC0', tol=1e-12)
        np.testing.assert_allclose([tab['beta'].iloc[g], tab['se'].iloc[g]], [r.params[1], r.bse[1]], rtol=1e-7, err_msg=ref.var_names[g])


def test_cli_quick(tmp_path):
    "ppi-sim's quick run: results.csv and per_gene.csv equal the in-process call, and the valid arms cover the simulation's truth."
    out = tmp_path / 'ppi'
    opts = dict(n_reps=8, n_unlabeled=2000, n_curated=200, chunk=8)
    r = subprocess.run([sys.executable, '-c', 'import sys; from stlearn_nb.cli import main; sys.exit(main(sys.argv[1:]))', 'ppi-sim', '--quick', '--out', str(out),
                        *[a for k, v in opts.items() for a in ('--set', f'{k}={v}')]], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    res = pd.read_csv(out / 'results.csv')
    assert (out / 'ppi_sim.png').exists()
    exp = P.run_ppi_sim(quick=True, seed=0, **opts)
    pd.testing.assert_frame_equal(res, exp.table.reset_index(drop=True), check_exact=False, rtol=1e-9)
    pd.testing.assert_frame_equal(pd.read_csv(out / 'per_gene.csv', keep_default_na=False), exp.tables['per_gene'].reset_index(drop=True), check_exact=False, rtol=1e-9)
    # against the truth: the same replicates refitted; classical and PPI++ cover at 95% within 3 replicate-block SEs
    genes = P.simulate_de_genes(0)
    reps = P.ppi_sim_replicates(opts['n_reps'], opts['n_unlabeled'], opts['n_curated'], 0, genes, chunk=opts['chunk'])
    np.testing.assert_allclose(res.set_index('arm').loc['ppi++', 'coverage'], _covers(reps['ppi++'], genes['lfc'].to_numpy(), 0.05).mean(), rtol=1e-9)
    for arm in ('classical', 'ppi++'):
        ok, rate, se = _covers_at_nominal(reps[arm], genes['lfc'].to_numpy(), 0.05)
        assert ok, (arm, rate, se)
    assert not _covers_at_nominal(reps['naive'], genes['lfc'].to_numpy(), 0.05)[0]


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
    bars = [c for c in ax.containers if isinstance(c, matplotlib.container.BarContainer)]
    tops = [seg[:, 1].max() for c in bars for seg in c.errorbar.lines[2][0].get_segments()]
    lows = [seg[:, 1].min() for c in bars for seg in c.errorbar.lines[2][0].get_segments()]
    assert len(tops) == 2 * len(table)
    assert max(tops) <= 1 and min(lows) >= 0   # +-2 SE error bars clipped to [0, 1]
    assert {'nominal coverage 1 - alpha = 0.95', 'nominal type-I error alpha = 0.05'} <= {t.get_text() for t in ax.get_legend().get_texts()}
    ax = P.plot_volcano(tabs['ppi++'], method='ppi++', target='B', reference='A')
    assert ax.get_title().splitlines()[0] == 'ppi++: B vs A' and ax.get_xlabel() == 'log fold change (B / A)'
    assert len(P.plot_sim_width(per_gene).lines) == 3


# ---- every PPI++ component against an answer computed another way ----
# Per-cell scores and Hessians come from autograd through torch.distributions' Poisson / NegativeBinomial log
# probabilities on a design built here with numpy (no stlearn_nb code in the path); lambda* from ppi-python's
# `_calc_lam_glm`; the sandwich and the Satterthwaite df from plain per-cell loops over those scores.
from ppi_py.ppi import _calc_lam_glm


def _design_np(y, K):
    "Rows (1, [y=1], ..., [y=K-1]) built with numpy."
    y = np.asarray(y)
    return np.column_stack([np.ones(len(y))] + [(y == k).astype(float) for k in range(1, K)])


def _autograd_terms(theta, x, y, o, family, phi, K):
    "Per-cell scores d(-log p)/d theta (c, K) and per-cell Hessians (c, K, K) by autograd through torch.distributions."
    Z = torch.from_numpy(_design_np(y, K)); xt = torch.as_tensor(x, dtype=torch.float64)
    ot = torch.zeros(len(x), dtype=torch.float64) if o is None else torch.as_tensor(o, dtype=torch.float64)
    def nll_lin(lin):   # (c,) negative log-likelihood of each cell at linear predictor lin
        if family == 'poisson': return -torch.distributions.Poisson(torch.exp(lin), validate_args=False).log_prob(xt)
        # torch's NB(total_count=r, logits=l) has mean r e^l: the NB2 mean e^lin needs l = lin - log r
        return -torch.distributions.NegativeBinomial(torch.tensor(float(phi), dtype=torch.float64), logits=lin - math.log(phi),
                                                     validate_args=False).log_prob(xt)
    # the log-likelihood depends on theta through lin = z . theta only: score_i = z_i dl_i/dlin_i, Hessian_i = z_i z_i^T d2l_i/dlin_i^2
    lin = (Z @ torch.as_tensor(theta, dtype=torch.float64) + ot).requires_grad_()
    d1, = torch.autograd.grad(nll_lin(lin).sum(), lin, create_graph=True)
    d2, = torch.autograd.grad(d1.sum(), lin)
    score, hess = d1.detach()[:, None] * Z, d2[:, None, None] * Z[:, :, None] * Z[:, None, :]
    return score.numpy(), hess.numpy()


def _loop_pieces(fit, d, g, family, K, theta=None):
    "Per-cell G_i, F_i (weighted), F~_j and H for gene g at theta (the fit's by default), from `_autograd_terms`."
    th = fit['theta'][g].numpy() if theta is None else theta
    phi = None if family == 'poisson' else fit['inv_dispersion'][g].item()
    n = len(d['y'])
    w = np.ones(n) if d.get('w') is None else d['w'] / d['w'].sum() * n
    Gs, Hs = _autograd_terms(th, d['x'][:, g], d['y'], d['o'], family, phi, K)
    Fs, _ = _autograd_terms(th, d['x'][:, g], d['yh'], d['o'], family, phi, K)
    Fu, _ = _autograd_terms(th, d['xu'][:, g], d['yhu'], d['ou'], family, phi, K)
    return w[:, None] * Gs, w[:, None] * Fs, Fu, (w[:, None, None] * Hs).mean(0)


_CASES = [('poisson', None, True, 3), ('poisson', None, False, 2), ('nb', 3.0, True, 3), ('nb', None, True, 2), ('nb', None, False, 3)]


def _case(seed, family, phi, offsets, K, G):
    "One _CASES row as data, the fit's positional arguments and its keywords."
    d = _data(seed, offsets=offsets, K=K, G=G)
    kw = dict(weights=d['w'], offset=d['o'], offset_unlabeled=d['ou'], family=family, n_classes=K,
              inv_dispersion=None if phi is None else np.full(G, phi))
    return d, (d['x'], d['y'], d['yh'], d['xu'], d['yhu']), kw


@pytest.mark.parametrize('family,phi,offsets,K', _CASES)
def test_lambda_star_equals_ppi_python(family, phi, offsets, K):
    "lambda* per gene equals ppi-python's `_calc_lam_glm` (coord=1) on autograd scores at the lambda=1 fit, clipped and not."
    d, args, kw = _case(31, family, phi, offsets, K, 4)
    for clip in (True, False):
        fit = P.ppi_glm_fit(*args, clip=clip, **kw)
        theta1 = P.ppi_glm_pointestimate(*args, lam=1.0, **{**kw, 'inv_dispersion': fit['inv_dispersion']}).numpy()
        for g in range(4):
            if not np.isfinite(theta1[g]).all():   # the lambda = 1 fit is undefined (a class total < 0): lambda* falls back to 0
                assert fit['lam'][g].item() == 0; continue
            G_, F_, Fu, H = _loop_pieces(fit, d, g, family, K, theta1[g])
            ref = _calc_lam_glm(G_, F_, Fu, np.linalg.inv(H), coord=1, clip=clip, optim_mode='overall')
            np.testing.assert_allclose(fit['lam'][g].item(), float(ref), rtol=1e-7, atol=1e-10, err_msg=f'gene {g} clip {clip}')


def test_lambda_star_clipping_is_exercised():
    "Automated labels unrelated to the truth: some unclipped lambda* fall below 0 and are clipped to 0."
    d = _data(32, G=20, offsets=False)
    rand = np.random.default_rng(3).choice(3, len(d['y']))
    args = lambda yh: (d['x'], d['y'], yh, d['xu'], d['yhu'])
    raw = P.ppi_glm_fit(*args(rand), clip=False)['lam'].numpy()
    clipped = P.ppi_glm_fit(*args(rand), clip=True)['lam'].numpy()
    assert (raw < 0).any(), raw
    np.testing.assert_array_equal(clipped, np.clip(raw, 0, 1))
    fit = P.ppi_glm_fit(*args(rand), clip=False)
    theta1 = P.ppi_glm_pointestimate(*args(rand), lam=1.0).numpy()
    for g in np.flatnonzero(raw < 0)[:3]:   # ppi-python agrees below 0 and clips the same genes to 0
        G_, F_, Fu, H = _loop_pieces(fit, {**d, 'yh': rand, 'w': None}, g, 'poisson', 3, theta1[g])
        for clip, ours in ((False, raw[g]), (True, clipped[g])):
            np.testing.assert_allclose(ours, float(_calc_lam_glm(G_, F_, Fu, np.linalg.inv(H), coord=1, clip=clip)), rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize('family,phi,offsets,K', _CASES)
def test_sandwich_at_fitted_lambda_equals_percell_loop(family, phi, offsets, K):
    "Covariance at the fitted lambda* (and at lambda = 1, classical, naive) equals H^-1 [Cov(G - lam F) + n/N lam^2 Cov(F~)] H^-1 / n from autograd scores."
    d, args, kw = _case(33, family, phi, offsets, K, 3)
    n, N = len(d['y']), len(d['yhu'])
    for lam in (None, 1.0):
        fit = P.ppi_glm_fit(*args, lam=lam, **kw)
        for g in range(3):
            G_, F_, Fu, H = _loop_pieces(fit, d, g, family, K)
            l = fit['lam'][g].item()
            V = np.cov((G_ - l * F_).T, ddof=0) + n / N * l**2 * np.cov(Fu.T, ddof=0)
            Hi = np.linalg.inv(H)
            np.testing.assert_allclose(fit['cov'][g].numpy(), Hi @ V @ Hi / n, rtol=1e-7, err_msg=f'lam {lam} gene {g}')
    # classical (curated cells, weights) and naive (automated cells, no weights): the plain sandwich H^-1 Cov(G) H^-1 / n
    cls = P.classical_glm_fit(d['x'], d['y'], weights=d['w'], offset=d['o'], family=family, n_classes=K, inv_dispersion=kw['inv_dispersion'])
    nai = P.naive_glm_fit(d['xu'], d['yhu'], d['ou'], family, kw['inv_dispersion'], n_classes=K)
    for fit, dd in ((cls, d), (nai, {**d, 'x': d['xu'], 'y': d['yhu'], 'yh': d['yhu'], 'o': d['ou'], 'w': None})):
        for g in range(3):
            G_, _, _, H = _loop_pieces(fit, dd, g, family, K)
            Hi = np.linalg.inv(H)
            np.testing.assert_allclose(fit['cov'][g].numpy(), Hi @ np.cov(G_.T, ddof=0) @ Hi / len(G_), rtol=1e-7)


@pytest.mark.parametrize('family,phi,offsets,K', _CASES[:3])
def test_satterthwaite_df_equals_percell_moment_loop(family, phi, offsets, K):
    """df of se^2: psi_i = e_1^T H^-1 (G_i - lam F_i); the curated share s2 = (1/n) mean (psi - mean psi)^2 has
    Var(s2) ~ (mu4 - mu2^2) / n, so df_cur = 2 E[s2]^2 / Var(s2) = 2 n mu2^2 / (mu4 - mu2^2) (in [1, n-1]); the
    automated share has N - 1; Welch-Satterthwaite combines them. Central moments from a per-cell loop."""
    d = _data(34, offsets=offsets, K=K, G=3)
    d['w'] = np.where(np.arange(len(d['y'])) == 0, 30.0, d['w'])   # one heavy cell: df well below n
    fit = P.ppi_glm_fit(d['x'], d['y'], d['yh'], d['xu'], d['yhu'], weights=d['w'], offset=d['o'], offset_unlabeled=d['ou'],
                        family=family, n_classes=K, inv_dispersion=None if phi is None else np.full(3, phi), with_df=True)
    n, N = len(d['y']), len(d['yhu'])
    for g in range(3):
        G_, F_, _, H = _loop_pieces(fit, d, g, family, K)
        v, l = np.linalg.inv(H)[1], fit['lam'][g].item()
        psi = [float(v @ (G_[i] - l * F_[i])) for i in range(n)]
        mean = sum(psi) / n
        mu2 = sum((p - mean)**2 for p in psi) / n; mu4 = sum((p - mean)**4 for p in psi) / n
        df_cur = min(max(2 * n * mu2**2 / (mu4 - mu2**2), 1), n - 1)
        var_all = fit['se'][g].item()**2
        var_cur = min(mu2 / n, var_all); var_aut = var_all - var_cur
        df = var_all**2 / (var_cur**2 / df_cur + var_aut**2 / (N - 1))
        np.testing.assert_allclose(fit['df'][g].item(), df, rtol=1e-7)
        assert fit['df'][g].item() < 0.5 * n


def test_nb_dispersion_of_automated_fit_recovers_truth():
    """The dispersion PPI++ estimates on its own (moments at the naive fit) recovers the true NB2 inverse dispersion.
    Tolerance: the moment estimate of alpha = 1/phi has SE ~ (alpha + 1/m) sqrt(2/N) (delta method, Gaussian fourth
    moment); at N = 40,000 and means m of 1..5 that is <= 2.2% of alpha for phi in {2, 8}: rtol 0.1 is > 4 SE."""
    rng = np.random.default_rng(35)
    N = 40_000; phi = np.array([2., 8.]); rates = np.array([[2., 5.], [4., 1.], [3., 3.]])
    yu = rng.choice(3, N); ou = rng.normal(0, .3, N)
    mean = np.exp(ou)[:, None] * rates[yu]
    xu = rng.negative_binomial(phi, phi / (phi + mean))
    fit = P.naive_glm_fit(xu, yu, ou, 'nb')
    np.testing.assert_allclose(fit['inv_dispersion'].numpy(), phi, rtol=0.1)
    d = dict(x=xu[:300], y=yu[:300], yh=yu[:300], o=ou[:300])
    ppi = P.ppi_glm_fit(d['x'], d['y'], d['yh'], xu[300:], yu[300:], offset=d['o'], offset_unlabeled=ou[300:], family='nb')
    np.testing.assert_allclose(ppi['inv_dispersion'].numpy(), phi, rtol=0.1)
    cls = P.classical_glm_fit(xu, yu, offset=ou, family='nb', weights=rng.uniform(.5, 2, N))   # unweighted moments
    np.testing.assert_allclose(cls['inv_dispersion'].numpy(), phi, rtol=0.1)


def _assert_fits_equal(ours, ref, tol=1e-10):
    for k in ('theta', 'cov', 'lam', 'beta', 'se'):
        a, b = ours[k].numpy(), ref[k].numpy()
        np.testing.assert_array_equal(np.isfinite(a), np.isfinite(b), err_msg=k)
        ok = np.isfinite(b)
        np.testing.assert_allclose(a[ok], b[ok], rtol=tol, atol=tol * max(1, np.abs(b[ok]).max()), err_msg=k)


def test_newton_path_equals_closed_form_and_batches():
    "Poisson: Newton iterations land on the closed-form solution; a replicate axis gives the per-replicate fits (NB too)."
    d = _data(13)
    args = (d['x'], d['y'], d['yh'], d['xu'], d['yhu'])
    kw = dict(offset=d['o'], offset_unlabeled=d['ou'], weights=d['w'])
    _assert_fits_equal(P.ppi_glm_fit(*args, method='newton', **kw), P.ppi_glm_fit(*args, method='closed', **kw), tol=1e-8)
    ds = [_data(s, n=200, N=800) for s in (14, 15)]
    st = lambda k: np.stack([d[k] for d in ds])
    for fam in ('poisson', 'nb'):
        kw = dict(weights=st('w'), offset=st('o'), offset_unlabeled=st('ou'), family=fam)
        batched = P.ppi_glm_fit(st('x'), st('y'), st('yh'), st('xu'), st('yhu'), **kw)
        for r, d in enumerate(ds):
            one = P.ppi_glm_fit(d['x'], d['y'], d['yh'], d['xu'], d['yhu'], weights=d['w'], offset=d['o'], offset_unlabeled=d['ou'], family=fam)
            _assert_fits_equal({k: v[r] for k, v in batched.items() if k in ('theta', 'cov', 'lam', 'beta', 'se')}, one, tol=1e-9)


def _kinds(x, tmp_path):
    "The same counts as every input kind ppi_glm_fit accepts."
    import scipy.sparse as sp, anndata as ad, dask.array as da
    out = {'float32': x.astype(np.float32), 'int64': x.astype(np.int64), 'csr': sp.csr_matrix(x.astype(np.float32)),
           'csc': sp.csc_matrix(x.astype(np.float32)), 'dask': da.from_array(x.astype(np.float32), chunks=(len(x) // 4 + 1, 3))}
    for name, m in (('backed_dense', x.astype(np.float32)), ('backed_csr', sp.csr_matrix(x.astype(np.float32)))):
        ad.AnnData(m).write_h5ad(tmp_path / f'{name}.h5ad')
        out[name] = ad.read_h5ad(tmp_path / f'{name}.h5ad', backed='r').X
    return out


@pytest.mark.parametrize('family', ['poisson', 'nb'])
def test_every_input_kind_gives_the_dense_answer(tmp_path, family):
    d = _data(16)
    args = lambda xu: (d['x'], d['y'], d['yh'], xu, d['yhu'])
    kw = dict(weights=d['w'], offset=d['o'], offset_unlabeled=d['ou'], family=family)
    dense = P.ppi_glm_fit(*args(d['xu'].astype(float)), **kw)
    for name, xu in _kinds(d['xu'], tmp_path).items():
        _assert_fits_equal(P.ppi_glm_fit(*args(xu), **kw), dense, tol=1e-11)
        _assert_fits_equal(P.naive_glm_fit(xu, d['yhu'], d['ou'], family), P.naive_glm_fit(d['xu'], d['yhu'], d['ou'], family), tol=1e-11)


def test_chunk_boundaries_change_nothing(tmp_path):
    "Parts of 1, 7 and 1000 cells (or genes, for CSC) give the same fit to 1e-12."
    d = _data(17)
    kw = dict(weights=d['w'], offset=d['o'], offset_unlabeled=d['ou'])
    ref = P.ppi_glm_fit(d['x'], d['y'], d['yh'], d['xu'], d['yhu'], **kw)
    kinds = _kinds(d['xu'], tmp_path)
    G = d['x'].shape[1]
    for cells in (1, 7, 1000):
        for name in ('float32', 'csr', 'csc', 'backed_dense'):
            fit = P.ppi_glm_fit(d['x'], d['y'], d['yh'], kinds[name], d['yhu'], chunk_bytes=8 * G * cells, **kw)
            _assert_fits_equal(fit, ref, tol=1e-12)
    fit = P.ppi_glm_fit(d['x'], d['y'], d['yh'], d['xu'], d['yhu'], family='nb', chunk_bytes=8 * G * 7, **kw)
    _assert_fits_equal(fit, P.ppi_glm_fit(d['x'], d['y'], d['yh'], d['xu'], d['yhu'], family='nb', **kw), tol=1e-12)


def test_dask_runs_with_its_own_scheduler():
    "The Dask path is a Dask graph: it runs with the synchronous and the threaded scheduler alike."
    import dask, dask.array as da
    d = _data(18)
    xu = da.from_array(d['xu'], chunks=(700, 5))
    ref = P.naive_glm_fit(d['xu'], d['yhu'])
    for scheduler in ('synchronous', 'threads'):
        with dask.config.set(scheduler=scheduler):
            _assert_fits_equal(P.naive_glm_fit(xu, d['yhu']), ref, tol=1e-12)


# ---- ppi_de checks its input: named errors instead of silent answers ----
def _adatas(seed=0, n=300, N=2000, G=6, true_lfc=np.log(4.0), groups=3):
    import anndata as ad
    rng = np.random.default_rng(seed)
    names = np.array(['ref', 'tgt', 'other'])
    def make(m, start):
        y = rng.choice(3, m, p=[.4, .3, .3]) if groups == 3 else rng.choice(2, m, p=[.6, .4])
        sf = np.exp(rng.normal(0, .3, m))
        rate = np.where(y[:, None] == 1, 2.0 * np.exp(true_lfc), 2.0) * np.ones(G)
        x = rng.poisson(sf[:, None] * rate).astype(np.float32)
        yh = np.where(rng.random(m) < .2, rng.choice(groups, m), y)
        a = ad.AnnData(x, obs=pd.DataFrame({'auto': names[yh], 'cur': names[y], 'sf': sf, 'w': rng.uniform(.5, 2, m)},
                                           index=[f'cell{i}' for i in range(start, start + m)]),
                       var=pd.DataFrame(index=[f'g{j}' for j in range(G)]))
        a.layers['counts'] = a.X.copy()
        return a
    return make(N, 0), make(n, N)


def test_ppi_de_refuses_bad_input_with_named_errors():
    unl, cur = _adatas()
    de = lambda u=unl, c=cur, **kw: P.ppi_de(u, c, **{**dict(label_key='auto', curated_key='cur', reference='ref', target='tgt'), **kw})
    cases = {
        'target': (lambda: de(target='tgtt'), "'tgtt' 0 times"),
        'reference': (lambda: de(reference='reff'), "'reff' 0 times"),
        'alpha': (lambda: de(alpha=1.5), 'alpha must lie in (0, 1)'),
        'method': (lambda: de(method='ppi+'), "method must be"),
        'family': (lambda: de(family='gauss'), "family must be"),
        'size factors': (lambda: de(size_factor_key='sf', c=_set_obs(cur, 'sf', 0, 0.0)), "not a positive finite number"),
        'weights': (lambda: de(weights_key='w', c=_set_obs(cur, 'w', 3, -1.0)), "not a positive finite number"),
        'genes': (lambda: de(c=cur[:, :5].copy()), 'different genes'),
        'both': (lambda: de(c=_rename(cur, {cur.obs_names[0]: unl.obs_names[0]})), '1 cells are in both'),
        'few curated': (lambda: de(c=cur[cur.obs['cur'] != 'tgt'].copy()), "'tgt' 0 times"),
        'layer': (lambda: de(layer='raw'), "no layer 'raw'"),
        'key': (lambda: de(curated_key='curated'), "no column 'curated'"),
    }
    for name, (call, message) in cases.items():
        with pytest.raises(P.DEInputError, match=__import__('re').escape(message)): call()
    from stlearn_nb.data import DataFormatError
    logged = unl.copy(); logged.layers['counts'] = np.log1p(logged.layers['counts'])
    with pytest.raises(DataFormatError, match='non-integer values'): de(u=logged)
    negative = cur.copy(); negative.layers['counts'][0, 0] = -1
    with pytest.raises(DataFormatError, match='negative values'): de(c=negative)


def _set_obs(a, key, i, value):
    a = a.copy(); v = a.obs[key].to_numpy().copy(); v[i] = value; a.obs[key] = v; return a


def _rename(a, mapping):
    a = a.copy(); a.obs_names = [mapping.get(c, c) for c in a.obs_names]; return a


@pytest.mark.parametrize('family', ['poisson', 'nb'])
def test_two_groups_equal_statsmodels(family):
    "Only the two compared labels (the most common call): every gene defined, classical and naive = statsmodels GLM."
    unl, cur = _adatas(4, groups=2)
    kw = dict(label_key='auto', curated_key='cur', reference='ref', target='tgt', size_factor_key='sf', family=family)
    for method, a, key in (('classical', cur, 'cur'), ('naive', unl, 'auto')):
        tab = P.ppi_de(unl, cur, method=method, **kw)
        assert (tab['status'] == 'ok').all() and tab['ok'].all()
        X = np.stack([np.ones(a.n_obs), (a.obs[key] == 'tgt').to_numpy(float)], 1)
        for g in range(a.n_vars):
            x = a.layers['counts'][:, g].astype(float)
            fam = sm.families.Poisson()
            if family == 'nb':   # ours estimates the NB2 dispersion by moments; statsmodels is given the same value
                phi = P.estimate_inv_dispersion(torch.as_tensor(a.layers['counts'], dtype=torch.float64), P.glm_design(X[:, 1].astype(int), 2),
                                                P.classical_glm_fit(a.layers['counts'], X[:, 1].astype(int), offset=np.log(a.obs['sf'].to_numpy()),
                                                                    n_classes=2)['theta'], torch.as_tensor(np.log(a.obs['sf'].to_numpy())))[g].item()
                fam = sm.families.NegativeBinomial(alpha=1 / phi)
            # observed-information sandwich on both sides (see test_nb_classical_matches_statsmodels): equal to rounding
            r = sm.GLM(x, X, family=fam, offset=np.log(a.obs['sf'].to_numpy())).fit(method='newton', optim_hessian='oim',
                                                                                    cov_type='HC0', tol=1e-12)
            np.testing.assert_allclose(tab['beta'].iloc[g], r.params[1], rtol=1e-8)
            np.testing.assert_allclose(tab['se'].iloc[g], r.bse[1], rtol=1e-8)
    y = lambda a, key: (a.obs[key] == 'tgt').to_numpy(int)
    ppi = P.ppi_de(unl, cur, **kw)
    ref = P.ppi_glm_fit(cur.layers['counts'], y(cur, 'cur'), y(cur, 'auto'), unl.layers['counts'], y(unl, 'auto'), family=family,
                        offset=np.log(cur.obs['sf'].to_numpy()), offset_unlabeled=np.log(unl.obs['sf'].to_numpy()), n_classes=2)
    assert ppi['ok'].all()
    np.testing.assert_allclose(ppi['beta'], ref['beta'].numpy(), rtol=1e-12)
    np.testing.assert_allclose(ppi['se'], ref['se'].numpy(), rtol=1e-12)
    assert np.abs(ppi['beta'] - np.log(4)).max() < 4 * ppi['se'].max()


def test_all_undefined_is_an_error_and_a_missing_third_class_is_named():
    unl, cur = _adatas(5, groups=2)
    kw = dict(label_key='auto', curated_key='cur', reference='ref', target='tgt')
    zero = cur.copy(); zero.layers['counts'][:] = 0
    with pytest.raises(P.DEUndefinedError, match=r'classical: none of the 6 genes has a defined log fold change \(6 all-zero gene\)'):
        P.ppi_de(unl, zero, method='classical', **kw)
    third = unl.copy(); third.obs['auto'] = np.where(np.arange(third.n_obs) < 50, 'other', third.obs['auto'])
    with pytest.raises(P.DEInputError, match='50 cells have an automated label other than'): P.ppi_de(third, cur, **kw)
    assert P.ppi_de(third, cur, method='naive', **kw)['ok'].all()   # naive: the third class has cells, K=3 is fine


def test_ppi_de_aligns_genes_by_name_and_fits_counts_not_log1p():
    unl, cur = _adatas(1)
    kw = dict(label_key='auto', curated_key='cur', reference='ref', target='tgt', size_factor_key='sf', weights_key='w')
    ref = P.ppi_de(unl, cur, **kw)
    shuffled = cur[:, cur.var_names[::-1]].copy()
    pd.testing.assert_frame_equal(P.ppi_de(unl, shuffled, **kw), ref)
    assert list(ref.index) == list(unl.var_names)
    # the true log fold change is log 4 for every gene: the counts fit finds it
    assert np.abs(ref['beta'] - np.log(4)).max() < 4 * ref['se'].max()


def test_de_command_two_groups_and_all_undefined(tmp_path):
    "The issue's case: two labels only gives every gene; all-zero curated counts (classical) are one error line, exit 2, nothing written."
    unl, cur = _adatas(6, groups=2)
    unl.write_h5ad(tmp_path / 'A.h5ad'); cur.write_h5ad(tmp_path / 'C.h5ad')
    cur.layers['counts'][:] = 0; cur.write_h5ad(tmp_path / 'Z.h5ad')
    cmd = lambda c, out: [sys.executable, '-c', 'import sys; from stlearn_nb.cli import main; sys.exit(main(sys.argv[1:]))', 'de',
                          '--automated', str(tmp_path / 'A.h5ad'), '--curated', str(tmp_path / c), '--label-key', 'auto',
                          '--curated-key', 'cur', '--reference', 'ref', '--target', 'tgt', '--out', str(tmp_path / out)]
    r = subprocess.run(cmd('C.h5ad', 'out'), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and '6 of 6 genes defined' in r.stdout, (r.stdout, r.stderr[-2000:])
    table = pd.read_csv(tmp_path / 'out' / 'de_results.csv', index_col=0)
    assert (table['status'] == 'ok').all()
    r = subprocess.run(cmd('Z.h5ad', 'zero') + ['--method', 'classical'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and 'none of the 6 genes' in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / 'zero').exists()


@pytest.mark.parametrize('kind', ['dense', 'sparse', 'backed'])
def test_de_command_on_anndata_files(tmp_path, kind):
    import scipy.sparse as sp
    unl, cur = _adatas(2)
    if kind != 'dense':
        for a in (unl, cur): a.X = sp.csr_matrix(a.X); a.layers['counts'] = sp.csr_matrix(a.layers['counts'])
    if kind == 'backed': del unl.layers['counts'], cur.layers['counts']   # counts in .X, read backed
    unl.write_h5ad(tmp_path / 'A.h5ad'); cur.write_h5ad(tmp_path / 'C.h5ad')
    cmd = [sys.executable, '-c', 'import sys; from stlearn_nb.cli import main; sys.exit(main(sys.argv[1:]))', 'de',
           '--automated', str(tmp_path / 'A.h5ad'), '--curated', str(tmp_path / 'C.h5ad'), '--label-key', 'auto',
           '--curated-key', 'cur', '--reference', 'ref', '--target', 'tgt', '--weights-key', 'w', '--size-factor-key', 'sf']
    r = subprocess.run(cmd + ['--out', str(tmp_path / 'out')], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['de_results.csv', 'forest.png', 'params.json', 'volcano.png']
    table = pd.read_csv(tmp_path / 'out' / 'de_results.csv', index_col=0)
    expected = P.ppi_de(unl, cur, 'auto', 'cur', 'ref', 'tgt', layer='counts' if kind != 'backed' else None,
                        weights_key='w', size_factor_key='sf')
    np.testing.assert_allclose(table['beta'], expected['beta'], rtol=1e-9)
    np.testing.assert_allclose(table['p_adj'], expected['p_adj'], rtol=1e-9)
    # refused input: one line, exit 2, the previous results untouched
    r = subprocess.run(cmd + ['--out', str(tmp_path / 'out'), '--alpha', '1.5'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and 'alpha' in r.stderr, r.stderr
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / 'out' / 'de_results.csv', index_col=0), table)
    r = subprocess.run(cmd[:7] + [str(tmp_path / 'missing.h5ad')] + cmd[8:] + ['--out', str(tmp_path / 'o2')],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and 'missing.h5ad' in r.stderr and not (tmp_path / 'o2').exists(), r.stderr


def test_t_interval_with_satterthwaite_df_covers_better_with_few_curated_cells():
    "n=100 stratified curated cells: z intervals under-cover; the t interval covers at 95%, for a few percent more width."
    genes = P.simulate_de_genes(0)
    reps = P.ppi_sim_replicates(150, 5000, 100, seed=21, genes=genes, chunk=50, arms=('classical', 'ppi++'))
    truth = genes['lfc'].to_numpy()
    z = P.ppi_sim_summary(reps, genes, 0.05, 'z')[0].set_index('arm')
    t = P.ppi_sim_summary(reps, genes, 0.05, 't')[0].set_index('arm')
    t_q = lambda r: P.student_t.ppf(0.975, r['df'])
    assert not _covers_at_nominal(reps['ppi++'], truth, 0.05)[0]              # the z baseline that under-covers fails
    for arm in ('classical', 'ppi++'):
        hits_t, hits_z = _covers(reps[arm], truth, 0.05, q=t_q(reps[arm])), _covers(reps[arm], truth, 0.05)
        np.testing.assert_allclose(hits_t.mean(), t.loc[arm, 'coverage'], rtol=1e-12)
        per_rep = (hits_t.astype(float) - hits_z).mean(1)                   # paired: the same intervals widened
        gain, se_gain = per_rep.mean(), per_rep.std(ddof=1) / math.sqrt(len(per_rep))
        assert gain > 2 * se_gain, (arm, gain, se_gain)
        assert 1 < t.loc[arm, 'median_width'] / z.loc[arm, 'median_width'] < 1.1
    ok, rate, se = _covers_at_nominal(reps['classical'], truth, 0.05, q=t_q(reps['classical']))
    assert ok, (rate, se)


def test_satterthwaite_df_limits():
    "Near-normal influences, equal weights: df near the number of cells that inform beta (classes 0 and 1, ~2n/3); one heavy cell: df small."
    rng = np.random.default_rng(22)
    y = rng.choice(3, 400); x = rng.poisson(np.array([200., 300., 250.])[y][:, None] * np.ones(5))
    even = P.classical_glm_fit(x, y, with_df=True)['df'].numpy()
    w = np.ones(400); w[np.flatnonzero(y == 1)[0]] = 400.
    heavy_fit = P.classical_glm_fit(x, y, weights=w, with_df=True)
    heavy = heavy_fit['df'].numpy()
    n_informative = int(np.isin(y, [0, 1]).sum())
    assert ((even > 0.75 * n_informative) & (even < 1.25 * n_informative)).all() and np.median(heavy) < even.min() / 20, (even, heavy)
    lo, hi = P.glm_ci(heavy_fit, 0.05, 't')
    lo_z, hi_z = P.glm_ci(heavy_fit, 0.05, 'z')
    np.testing.assert_allclose(((hi - lo) / (hi_z - lo_z)).numpy(), P.student_t.ppf(0.975, heavy) / norm.ppf(0.975), rtol=1e-12)
    with pytest.raises(ValueError, match='alpha'): P.glm_ci(heavy_fit, 1.5)


def test_data_folder_hidden_by_environment(monkeypatch):
    "STLEARN_NB_DATA, when set, is the only place searched: a missing path hides ../shared/data (the notebook's fallback runs)."
    monkeypatch.setenv('STLEARN_NB_DATA', '/nonexistent')
    assert shared_data_dir() is None and shared_data_dir('merfish_hypothalamus_rctd') is None


def _zero_target_data(seed=0):
    "Gene 0 has no count in class 1 among the curated cells, and its automated labels put the heavy class-0 cells in class 1."
    rng = np.random.default_rng(seed)
    n, N, G = 60, 600, 3
    y = rng.integers(0, 3, n); yh = np.where(y == 0, 1, y)
    x = rng.poisson(5, (n, G)).astype(float); xu = rng.poisson(5, (N, G)).astype(float); yhu = rng.integers(0, 3, N)
    x[:, 0] = np.where(y == 1, 0, np.where(y == 0, 50, 5)); xu[:, 0] = np.where(yhu == 1, 0, 5)
    return [torch.tensor(a) for a in (x, y, yh, xu, yhu)]


def test_nb_fit_without_maximum_is_flagged_like_poisson():
    "A class total of 0 has no maximum (theta -> -inf) for NB as for Poisson: NaN and 'zero in target', never a finite beta called 'ok'."
    x, y, yh, xu, yhu = _zero_target_data()
    fits = {fam: P.classical_glm_fit(x, y, family=fam) for fam in ('poisson', 'nb')}
    for fam, f in fits.items():
        assert P.FIT_STATUS[int(f['status'][0])] == 'zero in target', fam
        assert torch.isnan(f['beta'][0]) and (f['status'][1:] == 0).all(), fam
    # the defined genes are statsmodels' NB2 fits (design: intercept + one-hot classes), at the fit's own dispersion
    X = np.column_stack([np.ones(len(y)), y.numpy() == 1, y.numpy() == 2]).astype(float)
    for g in (1, 2):
        alpha = 1 / float(fits['nb']['inv_dispersion'][g])
        r = sm.GLM(x[:, g].numpy(), X, family=sm.families.NegativeBinomial(alpha=alpha)).fit(tol=1e-12)
        np.testing.assert_allclose(float(fits['nb']['beta'][g]), r.params[1], rtol=1e-6)


def test_ppi_nb_singular_lambda_objective_falls_back():
    "Where L_1 has no unique minimum, PPI (lambda = 1) says so per gene and PPI++ falls back to lambda = 0: no exception, no silent value."
    x, y, yh, xu, yhu = _zero_target_data()
    ppi = P.ppi_glm_fit(x, y, yh, xu, yhu, lam=1.0, family='nb')
    assert all(P.FIT_STATUS[int(c)] != 'ok' for c in ppi['status'][[0, 2]]) and torch.isnan(ppi['beta'][[0, 2]]).all()
    best = P.ppi_glm_fit(x, y, yh, xu, yhu, family='nb')
    assert float(best['lam'][2]) == 0 and float(best['lam'][0]) == 0
    classical = P.ppi_glm_fit(x, y, yh, xu, yhu, lam=0.0, family='nb', inv_dispersion=best['inv_dispersion'])
    np.testing.assert_allclose(best['beta'][2].item(), classical['beta'][2].item(), rtol=1e-8)
    assert P.FIT_STATUS[int(best['status'][0])] == 'zero in target'
