"Tests of stlearn_nb.cpnn that would swamp the notebook: recovery sweeps, synthetic training, real data, the CLI."
import numpy as np, pandas as pd, pytest, torch
from scipy.stats import nbinom
from stlearn_nb.cpnn import (simulate_prototypes, simulate_reference, mean_prototypes, regression_prototypes,
                             fit_prototype_regression, prototype_recovery, nnls_proportions, simulate_cpnn,
                             train_slide_models, evaluate_slides, CPNN, cpnn_loss, bag_collate, composition_recovery,
                             her2st_reference_prototypes, HER2ST_TYPE_MAP)
from stlearn_nb.data import shared_data_dir, DataFormatError


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_regression_recovers_prototypes_where_means_are_biased(seed):
    T = simulate_prototypes(seed=seed)
    ref = simulate_reference(T, batch_sd=0.7, seed=seed)
    reg = prototype_recovery(regression_prototypes(ref, 'cell_type', batch_key='batch').values, T)
    avg = prototype_recovery(mean_prototypes(ref, 'cell_type').values, T)
    assert reg['pearson'] > 0.99, reg
    assert avg['pearson'] < 0.98 and avg['log_rmse'] > 2 * reg['log_rmse'], (avg, reg)


def test_regression_recovers_batch_factors():
    T = simulate_prototypes(seed=3); ref = simulate_reference(T, n_cells=3000, seed=3)
    labels = torch.tensor(pd.Categorical(ref.obs['cell_type']).codes.astype(np.int64))
    batches = torch.tensor(pd.Categorical(ref.obs['batch']).codes.astype(np.int64))
    fit = fit_prototype_regression(torch.tensor(ref.layers['counts']), labels, batches)
    truth = ref.uns['batch_log_factors']
    assert np.corrcoef(fit['batch_log_factors'].numpy().ravel(), truth.ravel())[0, 1] > 0.95
    test_sum = fit['batch_log_factors'].sum(0).abs().max()
    assert test_sum < 1e-5  # centred over batches


def test_nb_regression_improves_nb_likelihood_over_poisson_start():
    rng = np.random.default_rng(0)
    lab = torch.tensor(rng.integers(0, 2, 400)); mean = np.array([[3., 10.], [8., 1.]])[lab.numpy()]
    y = torch.tensor(rng.negative_binomial(2, 2 / (2 + mean)), dtype=torch.float32)
    nb = fit_prototype_regression(y, lab, likelihood='nb', n_steps=300)
    # exact MLE of a saturated one-factor NB2 model: each mean is its type's average (the mean's score
    # sum (x - mu) / (mu (1 + mu / theta)) vanishes there for any theta); theta maximises the profile likelihood
    # at those means (scipy, bounded 1-D search on log theta). Adam in float32 lands within ~1e-6 of both
    # (measured at 300, 1000 and 2000 steps): rtol 1e-4 leaves float32 rounding room, not optimiser slack.
    Y, L = y.numpy().astype(float), lab.numpy()
    mu = np.array([[Y[L == k, g].mean() for g in range(2)] for k in range(2)])
    np.testing.assert_allclose(nb['prototypes'].numpy(), mu, rtol=1e-4)
    from scipy.optimize import minimize_scalar
    for g in range(2):
        m = mu[L, g]
        nll = lambda lt: -nbinom.logpmf(Y[:, g], np.exp(lt), np.exp(lt) / (np.exp(lt) + m)).sum()
        theta = np.exp(minimize_scalar(nll, bounds=(-5, 5), method='bounded', options={'xatol': 1e-10}).x)
        np.testing.assert_allclose(float(nb['inv_dispersion'][g]), theta, rtol=1e-4)


def test_nnls_recovers_noisy_mixtures_better_than_chance():
    rng = np.random.default_rng(0); T = simulate_prototypes(seed=0)
    pi = rng.dirichlet(np.ones(5), 200)
    est = nnls_proportions(rng.poisson(pi @ T * 20), T)
    np.testing.assert_allclose(est.sum(1), 1, atol=1e-9)
    assert composition_recovery(est, pi) > 0.97
    assert composition_recovery(nnls_proportions(rng.poisson(pi @ T * 20), T[::-1]), pi) < 0.5  # wrong prototypes fail
    with pytest.raises(DataFormatError): nnls_proportions(np.zeros((1, T.shape[1])), T)


def test_cpnn_loss_matches_scipy_and_padding_is_ignored():
    torch.manual_seed(0)
    model = CPNN(4, np.random.default_rng(1).gamma(1, 1, (3, 6)), hidden=(8,))
    a = (torch.randn(2, 4), torch.ones(6), torch.ones(3) / 3)
    b = (torch.randn(5, 4), torch.arange(6.), torch.tensor([.2, .3, .5]))
    x, mask, counts, props = bag_collate([a, b])
    with torch.no_grad():
        scale, mw, theta, reg = model(x, mask)
        alone = model(a[0][None], torch.ones(1, 2, dtype=torch.bool))[0][0]
    torch.testing.assert_close(scale[0], alone)                                   # padded rows do not leak in
    mean = (scale * counts.sum(-1, keepdim=True)).numpy(); t = theta.numpy()
    nll = -nbinom.logpmf(counts.numpy(), t, t / (t + mean)).sum(1).mean()
    expected = nll + 10 * (((mw - props) ** 2).mean() + reg)
    torch.testing.assert_close(cpnn_loss((scale, mw, theta, reg), counts, props, lam=10.), expected.float(), rtol=1e-4, atol=1e-4)


def test_synthetic_cpnn_beats_directmil_and_recovers_patch_weights():
    sim = simulate_cpnn(n_slides=80, seed=0)
    res = train_slide_models(sim, epochs=40, seed=0)
    scores, comp = evaluate_slides(res, sim)
    assert comp['patch'] >= 0.8, comp['patch']
    margin = scores.spearman_mean[0] - scores.spearman_mean[1]
    print(f"CPNN - DirectMIL mean Spearman: {margin:.3f}; patch weight r {comp['patch']:.3f}")
    assert margin > 0, scores


def test_her2st_reference_prototypes():
    root = shared_data_dir('wu2021_brca_scrna_CID4465')
    if root is None: pytest.skip('wu2021_brca_scrna_CID4465 not found under ../shared/data')
    from stlearn_nb.data import read_10x_reference
    ref = read_10x_reference(root, drop_zero=True)
    genes = ['EPCAM', 'COL1A1', 'CD3E', 'PECAM1', 'CD68', 'JCHAIN', 'MS4A1', 'RGS5', 'KRT19', 'ACTB']
    proto = her2st_reference_prototypes(ref, genes)
    assert sorted(proto.index) == ['B-cells', 'CAFs', 'Endothelial', 'Epithelial', 'Myeloid', 'PVL', 'Plasma Cells', 'T-cells']
    # each marker peaks in its type (the PROVENANCE check, now on the regression prototypes)
    for gene, t in [('EPCAM', 'Epithelial'), ('COL1A1', 'CAFs'), ('CD3E', 'T-cells'), ('PECAM1', 'Endothelial'),
                    ('CD68', 'Myeloid'), ('RGS5', 'PVL'), ('MS4A1', 'B-cells')]:
        assert proto[gene].idxmax() == t, (gene, proto[gene])
    # with one batch the regression prototype is the per-type mean count
    mapped = ref.obs['celltype_major'].astype(str).replace(HER2ST_TYPE_MAP)
    epi = np.asarray(ref[mapped.values == 'Epithelial', 'EPCAM'].layers['counts'].mean())
    np.testing.assert_allclose(proto.loc['Epithelial', 'EPCAM'], epi, rtol=1e-4)


def test_cli_cpnn_synth_quick(tmp_path):
    "The quick CLI run writes the in-process result of the same call; its NNLS slide composition matches the simulation's truth."
    from stlearn_nb.cli import main
    from stlearn_nb.cpnn import run_cpnn_synth
    assert main(['cpnn-synth', '--quick', '--out', str(tmp_path), '--set', 'epochs=10']) == 0
    table = pd.read_csv(tmp_path/'results.csv')
    assert set(table.model) == {'CPNN', 'DirectMIL'} and table.spearman_mean.notna().all()
    assert (tmp_path/'patch_weights.png').exists()
    pd.testing.assert_frame_equal(table, run_cpnn_synth(quick=True, epochs=10).table, check_exact=False, rtol=1e-6, atol=1e-9)
    # truth: the simulation's slide counts are NB (inv. dispersion 20: >= 1/sqrt(20) = 22% relative noise per gene
    # whatever the depth) around (true weights @ prototypes) x platform factors; NNLS with these oracle profiles
    # recovers the true compositions to r > 0.95, and the run's NNLS on regression prototypes from the reference
    # (platform unknown) does not beat that oracle
    sim = simulate_cpnn(n_slides=80, seed=0)
    oracle = composition_recovery(nnls_proportions(sim['slide_counts'], sim['prototypes'] * sim['platform']), sim['slide_weights'])
    assert oracle > 0.95, oracle
    assert 0.5 < table.nnls_slide_r.iloc[0] <= oracle + 1e-9, (table.nnls_slide_r.iloc[0], oracle)


def test_her2st_section_features_and_map():
    root = shared_data_dir()
    if root is None or not (root/'her2st').is_dir() or not (root/'wu2021_brca_scrna_CID4465').is_dir():
        pytest.skip('her2st or wu2021_brca_scrna_CID4465 not found under ../shared/data')
    import matplotlib; matplotlib.use('Agg')
    from stlearn_nb.cpnn import _load_her2st, plot_composition_map, plot_composition_comparison
    from stlearn_nb.data import read_her2st, spot_patches
    from stlearn_nb.features import load_encoder, stain_features
    genes = ['EPCAM', 'COL1A1', 'CD3E', 'ERBB2', 'ACTB']
    a = _load_her2st(root/'her2st', ['C6'], genes, load_encoder('stain'), patch_px=16, cache_dir=False)['C6']
    assert a.n_vars == 5 and np.isfinite(a.obsm['features']).all()
    ref = read_her2st(root/'her2st', 'C6', drop_zero=True); spot_patches(ref, patch_um=112., out_px=16, pad=True)
    ref = ref[a.obs_names]
    np.testing.assert_allclose(a.obsm['features'], stain_features(ref.obsm['patches']), atol=1e-5)   # rows follow the spots
    st = a.obsm['stereoscope_major']; names = list(st.columns)
    ax = plot_composition_map(a, st.values, names, 'Epithelial')
    assert len(ax.collections[0].get_offsets()) == a.n_obs
    axes = plot_composition_comparison(a, st.values * 0.5, st.values, names, ['Epithelial', 'CAFs'])
    for row in axes:   # one colour scale per type, shared by the two panels
        assert row[0].collections[0].get_clim() == row[1].collections[0].get_clim()
    assert 'Pearson r with stereoscope over spots = 1.00' in axes[0][0].get_title()


def test_plot_weight_recovery_bins_every_entry_and_names_the_pooled_r():
    import matplotlib; matplotlib.use('Agg')
    from stlearn_nb.cpnn import plot_weight_recovery, composition_recovery
    rng = np.random.default_rng(0); true = rng.dirichlet(np.ones(4), 500); pred = np.clip(true + rng.normal(0, 0.1, true.shape), 0, 1)
    ax = plot_weight_recovery(pred, true)
    hb = ax.collections[0]
    assert hb.get_array().sum() == true.size and isinstance(hb.norm, matplotlib.colors.LogNorm)   # every entry counted once, log colour
    assert f'{composition_recovery(pred, true):.2f}' in ax.get_title() and 'Pearson r of predicted vs true' in ax.get_title()
