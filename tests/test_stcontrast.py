"Tests of stlearn_nb.stcontrast that would swamp the notebook: the synthetic batch design over seeds and batch strengths."
import warnings
import numpy as np, pandas as pd, pytest
from stlearn_nb.stcontrast import simulate_batch_counts, fit_latents, latent_mixing_scores


STRONGER_BATCH = pytest.param(2, 1.0, marks=pytest.mark.xfail(strict=True, reason=
    'known weakness, thresholds not tuned: at batch_sd=1.0 (seed 2, 150 epochs) a linear probe still reads the patient '
    'from the batch-aware latent (accuracy 0.59 vs chance 0.33) although its patient silhouette is ~0'))

@pytest.mark.parametrize('seed,batch_sd', [(1, 0.7), STRONGER_BATCH])
def test_batch_aware_latent_drops_the_patient(seed, batch_sd):
    "Thresholds as in the notebook: chance c = 1/P; near chance < c + 0.15, carries the patient > c + 0.3."
    warnings.filterwarnings('ignore')
    sim = simulate_batch_counts(3, 300, batch_sd=batch_sd, seed=seed)
    latents = fit_latents(sim.layers['counts'], sim.obs.patient, epochs=150, seed=seed, progress=False)
    s = {k: latent_mixing_scores(z, sim.obs.tissue_class, sim.obs.patient, seed=seed) for k, z in latents.items()}
    chance = s['PCA']['patient_chance']
    assert s['batch-aware VAE']['probe_patient'] < chance + 0.15, s
    assert s['plain VAE']['probe_patient'] > chance + 0.3 and s['PCA']['probe_patient'] > chance + 0.3, s
    assert s['batch-aware VAE']['silhouette_class'] > 0.3 and s['batch-aware VAE']['silhouette_patient'] < 0.1, s
    assert s['batch-aware VAE']['probe_class'] > 0.9, s
    for k in ('plain VAE', 'PCA'): assert s[k]['silhouette_patient'] > s['batch-aware VAE']['silhouette_patient'] + 0.2, s


def test_contrastive_learner_one_section_batches_trains():
    "batch_mode='section': the training loader yields only one-section batches, and training lowers the validation loss."
    from stlearn_nb.stcontrast import contrastive_learner, fit_small, SectionBatchDL
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 20)).astype(np.float32); Z = X[:, :5] + 0.2 * rng.normal(size=(400, 5))
    section = np.repeat(['s1', 's2', 's3', 's4'], 100)
    learn = contrastive_learner(X, Z, section, 'section', bs=32, seed=0)
    assert isinstance(learn.dls.train, SectionBatchDL)
    fit_rows = np.setdiff1d(np.arange(400), np.random.default_rng(0).permutation(400)[:40])
    assert len(learn.dls.train) == sum(np.sum(section[fit_rows] == s) // 32 for s in ('s1', 's2', 's3', 's4'))
    with learn.no_bar(): before = learn.validate()[0]
    fit_small(learn, 5, 3e-3, progress=False)
    with learn.no_bar(): assert learn.validate()[0] < before


def test_stcontrast_figures_draw_the_tables():
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    from pathlib import Path
    from stlearn_nb.stcontrast import plot_stcontrast_bars, plot_embedding_umaps, plot_confusions
    full = Path(__file__).parents[1]/'nbs'/'full_runs'/'stcontrast_her2st'
    table, umap, conf = (pd.read_csv(full/f'{n}.csv') for n in ('results', 'umap', 'confusion'))
    axes = plot_stcontrast_bars(table)
    c6 = table[table.test == 'C6'].set_index('arm').loc[list(dict.fromkeys(table.arm))]
    np.testing.assert_allclose([p.get_height() for p in axes[0].patches[:len(c6)]], c6.balanced_accuracy_mean)
    assert axes[0].get_ylim() == axes[1].get_ylim() == (0, 1) and axes[0].get_legend() is None and axes[-1].get_legend() is not None
    axes = plot_embedding_umaps(umap)
    assert all(ax.get_xlabel() == 'UMAP 1' and ax.get_ylabel() == 'UMAP 2' and ax.get_title().startswith('UMAP of') for ax in np.ravel(axes))
    axes = plot_confusions(conf, 'B4')
    share = axes[0].images[0].get_array()
    np.testing.assert_allclose(np.asarray(share).sum(1), 1)   # rows: share of each true class
    assert {ax.images[0].get_clim() for ax in axes} == {(0, 1)}   # one colour range for every arm
    plt.close('all')
