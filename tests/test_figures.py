"""Every library `plot_*` function draws a figure that reads at a glance: a title, labelled axes, fonts of at least
8 pt and no text box over another (`get_window_extent`), on small synthetic input (or the committed full-run CSVs,
a few kB in the repository). A broken figure is shown failing at the end."""
import inspect
from pathlib import Path
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np, pandas as pd, pytest, torch, anndata as ad
import stlearn_nb.cpnn, stlearn_nb.data, stlearn_nb.hestseg, stlearn_nb.hestseg_real, stlearn_nb.ppi_de
import stlearn_nb.stcontrast, stlearn_nb.strank, stlearn_nb.where_what
from stlearn_nb.core import figure_style

FULL = Path(__file__).parent.parent/'nbs'/'full_runs'
MODULES = (stlearn_nb.cpnn, stlearn_nb.data, stlearn_nb.hestseg, stlearn_nb.hestseg_real, stlearn_nb.ppi_de,
           stlearn_nb.stcontrast, stlearn_nb.strank, stlearn_nb.where_what)
RNG = lambda: np.random.default_rng(0)


def _section(n=60, genes=('g0', 'g1', 'g2')):
    "A small AnnData section: counts, spot coordinates in full-resolution px, no image."
    rng = RNG(); xy = np.stack(np.meshgrid(np.arange(10), np.arange(n // 10)), -1).reshape(-1, 2) * 200. + 100
    a = ad.AnnData(rng.poisson(5, (n, len(genes))).astype(np.float32), var=pd.DataFrame(index=list(genes)),
                   obs=pd.DataFrame(index=[f's{i}' for i in range(n)]))
    a.layers['counts'] = a.X.copy(); a.obsm['spatial'] = xy
    a.uns['spatial'] = {'S1': {'images': {}, 'scalefactors': {}}}
    return a


def _toy_runs():
    from stlearn_nb.strank import simulate_toy, TOY_FUNCTIONS, TOY_LOSSES
    data = simulate_toy(TOY_FUNCTIONS[0], 'Imbalanced', n=200, n_eval=100, seed=0)
    runs = pd.DataFrame(dict(dataset=0, config='c', setting='Imbalanced', loss=list(TOY_LOSSES),
                             test_spearman=np.linspace(0.3, 0.9, len(TOY_LOSSES))))
    preds = torch.as_tensor(np.stack([data['mu_test'] * (1 + 0.1 * k) for k in range(len(TOY_LOSSES))]))
    return runs, preds, [data]


def _volcano_table():
    rng = RNG(); p = np.concatenate([10.0 ** -rng.uniform(0, 5, 40), [1e-80, 1e-33]])
    return pd.DataFrame(dict(beta=rng.normal(0, 1, 42), p_value=p, p_adj=np.minimum(p * 42, 1), ok=True),
                        index=[f'gene{i}' for i in range(42)])


def _sim_per_gene():
    return pd.DataFrame([dict(arm=a, gene=f'g{g}', median_width=0.3 + 0.01 * g + 0.05 * k)
                         for k, a in enumerate(('classical', 'ppi', 'ppi++')) for g in range(6)])


# each plot_* function of the package, drawn on small input; `axes` returned as the library returns them
CASES = {
    'plot_prototype_recovery': lambda: stlearn_nb.cpnn.plot_prototype_recovery(
        {'mean': RNG().random((3, 20)), 'regression': RNG().random((3, 20))}, RNG().random((3, 20))),
    'plot_weight_recovery': lambda: stlearn_nb.cpnn.plot_weight_recovery(RNG().dirichlet(np.ones(3), 50), RNG().dirichlet(np.ones(3), 50)),
    'plot_composition_map': lambda: stlearn_nb.cpnn.plot_composition_map(_section(), RNG().dirichlet(np.ones(3), 60), ['A', 'B', 'C'], 'B'),
    'plot_composition_comparison': lambda: stlearn_nb.cpnn.plot_composition_comparison(
        _section(), RNG().dirichlet(np.ones(3), 60), RNG().dirichlet(np.ones(3), 60), ['A', 'B', 'C'], ['A', 'C']),
    'plot_spatial': lambda: stlearn_nb.data.plot_spatial(_section(), color='g1', title='g1 counts'),
    'plot_overlay': lambda: (lambda t: stlearn_nb.hestseg.plot_overlay(t['image'], t['inst'], t['types'], title='synthetic tile'))(
        stlearn_nb.hestseg.simulate_tile('colon', 64, seed=0)),
    'plot_outlines': lambda: (lambda t: stlearn_nb.hestseg_real.plot_outlines(t['image'], t['inst'], np.roll(t['inst'], 2, 0), title='tile'))(
        stlearn_nb.hestseg.simulate_tile('colon', 64, seed=0)),
    'plot_pq_vs_severity': lambda: stlearn_nb.hestseg_real.plot_pq_vs_severity(
        pd.read_csv(FULL/'hestseg_monuseg'/'noise.csv'), {'manual labels (clean)': 0.54, 'classical': 0.544, 'one organ, breast only': 0.52}),
    'plot_sim_coverage': lambda: stlearn_nb.ppi_de.plot_sim_coverage(
        pd.DataFrame(dict(arm=['naive', 'classical', 'ppi++'], coverage=[0.2, 0.95, 0.94], type1_error=[1., 0.05, 0.06])), 100),
    'plot_sim_width': lambda: stlearn_nb.ppi_de.plot_sim_width(_sim_per_gene()),
    'plot_volcano': lambda: stlearn_nb.ppi_de.plot_volcano(_volcano_table(), method='ppi++'),
    'plot_forest': lambda: stlearn_nb.ppi_de.plot_forest(
        {'a': _volcano_table().assign(ci_low=lambda d: d.beta - 0.3, ci_high=lambda d: d.beta + 0.3)}, [f'gene{i}' for i in range(5)]),
    'plot_latents': lambda: stlearn_nb.stcontrast.plot_latents(
        {'PCA': RNG().normal(size=(60, 3)), 'VAE': RNG().normal(size=(60, 3))}, np.repeat(['x', 'y', 'z'], 20), np.tile(['P0', 'P1'], 30)),
    'plot_stcontrast_bars': lambda: stlearn_nb.stcontrast.plot_stcontrast_bars(pd.read_csv(FULL/'stcontrast_her2st'/'results.csv')),
    'plot_embedding_umaps': lambda: stlearn_nb.stcontrast.plot_embedding_umaps(pd.read_csv(FULL/'stcontrast_her2st'/'umap.csv')),
    'plot_confusions': lambda: stlearn_nb.stcontrast.plot_confusions(pd.read_csv(FULL/'stcontrast_her2st'/'confusion.csv')),
    'plot_toy_data': lambda: stlearn_nb.strank.plot_toy_data(
        stlearn_nb.strank.simulate_toy(stlearn_nb.strank.TOY_FUNCTIONS[0], 'Imbalanced', n=300, n_eval=100), stlearn_nb.strank.TOY_FUNCTIONS[0]),
    'plot_toy_curves': lambda: stlearn_nb.strank.plot_toy_curves(*_toy_runs()),
    'plot_toy_bars': lambda: stlearn_nb.strank.plot_toy_bars(pd.read_csv(FULL/'strank_toy'/'results.csv'), 'reference 1-16-1'),
    'plot_her2st_bars': lambda: stlearn_nb.strank.plot_her2st_bars(pd.read_csv(FULL/'strank_her2st'/'results.csv')),
    'plot_gene_maps': lambda: stlearn_nb.strank.plot_gene_maps(_section().obsm['spatial'], RNG().random((60, 3)), RNG().random((60, 3)),
                                                               ['g0', 'g1', 'g2'], ['g0', 'g2']),
    'plot_field_curves': lambda: stlearn_nb.where_what.plot_field_curves(pd.read_csv(FULL/'where_what_her2st'/'results.csv')),
    'plot_sampling_curves': lambda: stlearn_nb.where_what.plot_sampling_curves(pd.read_csv(FULL/'where_what_her2st'/'sampling.csv'), 'B4'),
    'plot_sampling_path': lambda: stlearn_nb.where_what.plot_sampling_path(pd.read_csv(FULL/'where_what_her2st'/'paths.csv'), 'B4'),
}


def _figure(result):
    "The figure behind what a plot_* function returns (an Axes, an array or list of Axes, nested)."
    while isinstance(result, (list, tuple, np.ndarray)): result = result[0]
    return result.figure


def _texts(fig):
    "(text, kind, axes) of every visible, non-empty text that is drawn: titles, labels, drawn tick labels, legends, annotations."
    fig.canvas.draw()
    out = [(t, 'suptitle', None) for t in (fig._suptitle,) if t is not None and t.get_text()]
    for sub in fig.subfigs: out += [(sub._suptitle, 'suptitle', None)] if sub._suptitle is not None and sub._suptitle.get_text() else []
    for ax in fig.axes:
        if not ax.get_visible(): continue
        for t in (ax.title, ax._left_title, ax._right_title): out.append((t, 'title', ax))
        if ax.axison:
            out += [(ax.xaxis.label, 'xlabel', ax), (ax.yaxis.label, 'ylabel', ax)]
            for name, axis in (('xtick', ax.xaxis), ('ytick', ax.yaxis)):
                for tick in axis._update_ticks():   # the ticks actually drawn (inside the view)
                    out += [(lab, name, ax) for lab in (tick.label1, tick.label2) if lab.get_visible()]
        leg = ax.get_legend()
        if leg is not None: out += [(t, 'legend', ax) for t in leg.get_texts()] + [(leg.get_title(), 'legend', ax)]
        out += [(t, 'text', ax) for t in ax.texts]
    for leg in fig.legends: out += [(t, 'legend', None) for t in leg.get_texts()] + [(leg.get_title(), 'legend', None)]
    return [(t, k, a) for t, k, a in out if t.get_visible() and t.get_text().strip()]


def figure_problems(fig) -> list:
    "What keeps a figure from reading at a glance: no title, an unlabelled axis, a font under 8 pt, one text over another."
    problems, texts = [], _texts(fig)
    if not any(k in ('title', 'suptitle') for _, k, _ in texts): problems.append('no title')
    data_axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison and not hasattr(ax, '_colorbar')
                 and ax.get_label() != '<colorbar>']
    for ax in data_axes:
        row = [b for b in data_axes if abs(b.get_position().y0 - ax.get_position().y0) < 1e-3]
        if ax.get_xticklabels() and any(l.get_text() for l in ax.get_xticklabels()) and not ax.get_xlabel():
            problems.append(f'x axis without a label ({ax.get_title()!r})')
        if any(l.get_visible() and l.get_text() for l in ax.get_yticklabels()) and not any(b.get_ylabel() for b in row):
            problems.append(f'y axis without a label ({ax.get_title()!r})')
    for t, k, _ in texts:
        if t.get_fontsize() < 8: problems.append(f'{k} {t.get_text()[:20]!r} at {t.get_fontsize():.1f} pt')
    boxes = [(t.get_window_extent(), t, k, a) for t, k, a in texts]
    for i, (b1, t1, k1, a1) in enumerate(boxes):
        for b2, t2, k2, a2 in boxes[i + 1:]:
            rotated = (t1.get_rotation() % 90 or t2.get_rotation() % 90)
            if k1 == k2 and a1 is a2 and k1 in ('xtick', 'ytick') and rotated: continue   # slanted tick labels: boxes overlap, glyphs do not
            if b1.overlaps(b2) and b1.width > 0 and b2.width > 0:
                inter = (min(b1.x1, b2.x1) - max(b1.x0, b2.x0)) * (min(b1.y1, b2.y1) - max(b1.y0, b2.y0))
                if inter > 1: problems.append(f'{k1} {t1.get_text()[:25]!r} overlaps {k2} {t2.get_text()[:25]!r}')
    return problems


def test_every_plot_function_has_a_case():
    "A new plot_* function fails here until it gets a case above."
    names = {n for m in MODULES for n, f in vars(m).items() if n.startswith('plot_') and inspect.isfunction(f) and f.__module__ == m.__name__}
    assert names == set(CASES), (sorted(names - set(CASES)), sorted(set(CASES) - names))


@pytest.mark.parametrize('name', sorted(CASES))
def test_plot_function_reads_at_a_glance(name):
    fig = _figure(CASES[name]())
    try: assert figure_problems(fig) == []
    finally: plt.close(fig)


def test_plot_functions_use_the_core_style():
    "Figures made by a plot_* function get FIGURE_STYLE's constrained layout even when the session has no style set."
    with matplotlib.rc_context({'figure.constrained_layout.use': False}):
        fig = _figure(CASES['plot_volcano']())
    assert type(fig.get_layout_engine()).__name__ == 'ConstrainedLayoutEngine'
    plt.close(fig)


def test_a_broken_figure_is_caught():
    "The check is shown failing: no title, unlabelled y axis, a 6 pt label, a legend over a long title, two labels on one spot."
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1], label='line'); ax.set_xlabel('x', fontsize=6)
    ax.annotate('first label', (0.5, 0.5)); ax.annotate('second label', (0.5, 0.5))
    problems = figure_problems(fig)
    assert 'no title' in problems and any('y axis without a label' in p for p in problems)
    assert any('6.0 pt' in p for p in problems) and any("'first label' overlaps" in p for p in problems)
    plt.close(fig)
    with figure_style():
        fig, ax = plt.subplots(figsize=(3, 2)); ax.plot([0, 1], [0, 1], label='a line with a long name')
        ax.set(title='T', xlabel='x', ylabel='y'); ax.legend(loc='center')
        ax.text(0.5, 0.5, 'a note under the legend', transform=ax.transAxes, ha='center', va='center')
    assert any('overlaps' in p for p in figure_problems(fig))
    plt.close(fig)
