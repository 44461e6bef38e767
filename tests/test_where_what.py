"Where and What: the pieces against independent answers, the synthetic experiment, the CLI, real her2st crops."
import os, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, pytest
from PIL import Image
from stlearn_nb.data import shared_data_dir
from stlearn_nb.where_what import (tissue_coordinates, section_coordinates, neighbour_mean, context_crops, belief_map, section_estimate,
                                   random_sampler, grid_sampler, sequential_sampler, sampling_errors, run_where_what_her2st,
                                   WHERE_ARMS, WHERE_REFERENCES, SAMPLERS)

def _cli(*args):
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).parents[1])}
    code = "import sys; from stlearn_nb.cli import main; sys.exit(main(sys.argv[1:]))"
    r = subprocess.run([sys.executable, '-c', code, *args], capture_output=True, text=True, env=env, timeout=600)
    return r.returncode, r.stdout, r.stderr

@pytest.mark.parametrize('seed', range(3))
def test_coordinates_invariant_to_shift_and_scale_not_rotation(seed):
    rng = np.random.default_rng(seed); xy = rng.uniform(0, 1e4, (80, 2))
    shifted = rng.uniform(0.1, 10) * xy + rng.normal(0, 1e4, 2)
    np.testing.assert_allclose(tissue_coordinates(shifted), tissue_coordinates(xy), atol=1e-9)
    u = tissue_coordinates(xy); np.testing.assert_allclose(np.sqrt((u ** 2).sum(1).mean()), 1., atol=1e-12)
    rot = xy @ np.array([[0., -1.], [1., 0.]])   # rotation is not removed: coordinates turn with the section
    assert np.abs(tissue_coordinates(rot) - tissue_coordinates(xy)).max() > 0.1

@pytest.mark.parametrize('radius', [0.5, 1.0, 1.5, 3.0])
def test_neighbour_mean_equals_loop(radius):
    rng = np.random.default_rng(int(radius * 10))
    xy = rng.integers(0, 8, (60, 2)).astype(float) + rng.normal(0, 0.01, (60, 2)); sec = rng.choice(['a', 'b', 'c'], 60)
    f = rng.normal(size=(60, 3)); got = neighbour_mean(f, xy, radius, sec)
    for i in range(60):
        nb = [j for j in range(60) if j != i and sec[j] == sec[i] and np.linalg.norm(xy[j] - xy[i]) <= radius]
        np.testing.assert_allclose(got[i], f[nb].mean(0) if nb else f[i], atol=1e-12)

def test_belief_map_is_sklearn_gp_with_prior():
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import Matern
    rng = np.random.default_rng(1); u = rng.normal(size=(70, 2)); y = rng.normal(size=70); prior = rng.normal(size=70)
    seen = rng.choice(70, 15, replace=False)
    mean, var = belief_map(u, seen, y[seen], prior, length_scale=0.5)
    gp = GaussianProcessRegressor(Matern(0.5, nu=0.5), alpha=1e-6, optimizer=None).fit(u[seen], y[seen] - prior[seen])
    m, sd = gp.predict(u, return_std=True)
    np.testing.assert_allclose(mean, m + prior, atol=1e-6); np.testing.assert_allclose(var, sd ** 2, atol=1e-6)
    np.testing.assert_allclose(mean[seen], y[seen], atol=1e-4)

@pytest.mark.parametrize('n,seed', [(5, 0), (23, 1), (40, 2)])
def test_samplers_never_repeat_and_are_exact_at_all_spots(n, seed):
    rng = np.random.default_rng(seed); u = tissue_coordinates(rng.normal(size=(n, 2))); y = rng.normal(size=n)
    for k in range(1, n + 1, max(1, n // 6)):
        for order in (random_sampler(n, k, seed), grid_sampler(u, k, seed), sequential_sampler(u, y, k, seed=seed)):
            assert len(order) == k and len(set(order.tolist())) == k and order.min() >= 0 and order.max() < n
    for order in (random_sampler(n, n, seed), grid_sampler(u, n, seed), sequential_sampler(u, y, n, rng.normal(size=n), seed=seed)):
        assert section_estimate(belief_map(u, order, y[order])[0], order, y[order]) == y.mean()
    errs = sampling_errors(u, y, [1, n], prior=np.zeros(n), n_seeds=2, seed=seed)
    assert errs[errs.k == n].abs_error.max() == 0

def test_grid_sampler_spreads_better_than_random():
    g = np.stack(np.meshgrid(np.arange(20), np.arange(20)), -1).reshape(-1, 2).astype(float); u = tissue_coordinates(g)
    gap = lambda order: np.min(np.linalg.norm(u[:, None] - u[order][None], axis=2), 1).max()   # farthest spot from the sample
    grid = np.mean([gap(grid_sampler(u, 16, s)) for s in range(10)]); rand = np.mean([gap(random_sampler(400, 16, s)) for s in range(10)])
    assert grid < 0.8 * rand, (grid, rand)

SYNTHETIC_CALL = dict(synthetic=True, fields_um=(28., 224.), epochs=8, n_sampling_seeds=1)   # one quick synthetic run, in process and by the CLI

@pytest.fixture(scope='module')
def synthetic_run():
    return run_where_what_her2st(quick=True, **SYNTHETIC_CALL)

def test_synthetic_experiment_where_helps_at_narrow_view(synthetic_run):
    exp = synthetic_run
    t = exp.table
    assert set(t.arm) == set(WHERE_ARMS + WHERE_REFERENCES) and set(t.test) == {'C6', 'B4'}
    ba = t.set_index(['arm', 'field_um', 'test']).balanced_accuracy_mean
    for s in ('C6', 'B4'): assert ba[('patch + position', 28., s)] > ba[('patch', 28., s)] + 0.1
    s = exp.tables['sampling']
    assert set(s.sampler) == set(SAMPLERS) | {'image model alone'} and np.isfinite(s.mean_abs_error).all()
    assert s.k_frac.max() <= 0.51 and {'sampling_path_C6', 'error_vs_budget_B4', 'accuracy_vs_field'} <= set(exp.figures)

def test_cli_missing_data_one_line_exit_2(tmp_path):
    (tmp_path/'data').mkdir()
    code, out, err = _cli('where-what-her2st', '--quick', '--data-dir', str(tmp_path/'data'), '--out', str(tmp_path/'o'))
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith('stlearn-nb where-what-her2st: error:') and 'her2st data not found' in last and 'Traceback' not in err, err
    assert not (tmp_path/'o').exists()

def test_cli_bad_option_rejected_before_work(tmp_path):
    code, out, err = _cli('where-what-her2st', '--out', str(tmp_path/'o'), '--set', 'epochs=0')
    assert code == 2 and 'must be >= 1' in err and not (tmp_path/'o').exists()

def test_cli_synthetic_equals_in_process_run(tmp_path, synthetic_run):
    "The CLI's quick synthetic run writes the in-process result of the same call (tables, figures), which meets the design's truth."
    from stlearn_nb.cli import main
    opts = [a for k, v in SYNTHETIC_CALL.items() for a in ('--set', f"{k}={v}".replace(' ', ''))]
    assert main(['where-what-her2st', '--quick', '--quiet', '--out', str(tmp_path/'o'), *opts]) == 0
    files = {p.name for p in (tmp_path/'o').iterdir()}
    assert {'results.csv', 'sampling.csv', 'paths.csv', 'run_info.csv', 'accuracy_vs_field.png', 'error_vs_budget_C6.png',
            'sampling_path_C6.png', 'sampling_path_B4.png'} <= files
    for name, expected in (('results', synthetic_run.table), ('sampling', synthetic_run.tables['sampling'])):
        written = pd.read_csv(tmp_path/'o'/f'{name}.csv')
        pd.testing.assert_frame_equal(written, expected.reset_index(drop=True), check_exact=False, rtol=1e-6, atol=1e-9, check_dtype=False)
    # the design's truth (test above): position is worth > 0.1 balanced accuracy at 28 um on both synthetic sections
    ba = pd.read_csv(tmp_path/'o'/'results.csv').set_index(['arm', 'field_um', 'test']).balanced_accuracy_mean
    for s in ('C6', 'B4'): assert ba[('patch + position', 28., s)] > ba[('patch', 28., s)] + 0.1

def test_context_crops_on_real_her2st_equal_pil_downsample():
    root = shared_data_dir('her2st')
    if root is None: pytest.skip('../shared/data/her2st not present')
    from stlearn_nb.data import read_her2st, read_full_image
    a = read_her2st(root, 'C6', drop_zero=True, lowres=0); image = read_full_image(a)
    factor, out = 12, 32
    centres = a.obsm['spatial'][:3]
    views = context_crops(image, centres, factor, out)
    for v, c in zip(views, centres):
        tl = (np.floor(c / factor - out / 2).astype(int)) * factor
        region = image[tl[1]:tl[1] + out * factor, tl[0]:tl[0] + out * factor]
        assert region.shape[:2] == (out * factor, out * factor)   # these spots lie inside the image
        np.testing.assert_array_equal(v, np.asarray(Image.fromarray(region).reduce(factor)))
