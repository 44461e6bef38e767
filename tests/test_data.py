"Readers on the real files in ../shared/data (skipped when absent) and on bad input written here."
import gzip, json
import numpy as np, pandas as pd, pytest, h5py, anndata as ad
from stlearn_nb.data import *

HER2ST_SPOTS = {'B4': 283, 'C2': 187, 'C3': 180, 'C4': 184, 'C5': 181, 'C6': 178}  # PROVENANCE.txt

@pytest.mark.parametrize('section', list(HER2ST_SPOTS))
def test_her2st_sections(shared, section):
    a = read_her2st(shared('her2st'), section)
    assert a.n_obs == HER2ST_SPOTS[section]
    counts = pd.read_csv(shared('her2st')/'counts'/f'{section}.tsv.gz', sep='\t', index_col=0)
    spots = pd.read_csv(shared('her2st')/'spots'/f'{section}_selection.tsv', sep='\t')
    spot = counts.index[5]; x, y = map(int, spot.split('x'))
    row = spots[(spots.x == x) & (spots.y == y)].iloc[0]
    np.testing.assert_allclose(a.obsm['spatial'][a.obs_names.get_loc(spot)], [row.pixel_x, row.pixel_y])
    np.testing.assert_array_equal(a.layers['counts'][a.obs_names.get_loc(spot)].toarray().ravel(), counts.loc[spot].to_numpy())
    props = a.obsm['stereoscope_major']
    np.testing.assert_allclose(props.sum(1), 1, atol=1e-4)
    assert a.uns['spatial'][section]['images']['lowres'].shape[2] == 3

def test_her2st_patches_on_the_real_image(shared):
    a = read_her2st(shared('her2st'), 'C6')
    full = read_full_image(a)
    spot_patches(a, patch_um=112, out_px=224, image=full)
    assert a.obsm['patches'].shape == (a.n_obs, 224, 224, 3) and a.obsm['patches'].dtype == np.uint8
    size = round(112 / HER2ST_UM_PER_PX)
    x0, y0 = a.obsm['patch_coords'][0]
    np.testing.assert_array_equal(resize_patches(full[None, y0:y0+size, x0:x0+size], 224)[0], a.obsm['patches'][0])
    # tissue is darker than glass: the mean patch is clearly not white
    assert a.obsm['patches'].mean() < 230
    with pytest.raises(PatchOutOfBoundsError, match="178 of 178 spots of 'C6' have no image pixel in their 162px patch"):   # C6's spots lie past 2000 px
        spot_patches(a, patch_um=112, image=full[:2000, :2000], copy=True)
    with pytest.raises(PatchOutOfBoundsError, match='reach outside'):
        spot_patches(a, patch_um=112, image=full[:, :int(a.obsm['spatial'][:, 0].max())], copy=True)   # the last column's patches cut

def test_wu2021_reference(shared):
    folder = shared('wu2021_brca_scrna_CID4465')
    r = read_10x_reference(folder)
    # the shape from the files' own line counts (barcodes, features) and the Matrix Market header, read with gzip here
    import gzip
    lines = lambda name: sum(1 for _ in gzip.open(folder/name, 'rt'))
    with gzip.open(folder/'matrix.mtx.gz', 'rt') as f:
        header = next(l for l in f if not l.startswith('%')).split()
    assert r.shape == (lines('barcodes.tsv.gz'), lines('features.tsv.gz')) == (int(header[1]), int(header[0]))
    obs = pd.read_csv(folder/'obs.csv', index_col=0)
    np.testing.assert_array_equal(np.asarray(r.X.sum(1)).ravel(), obs.loc[r.obs_names, 'nCount_RNA'])
    pd.testing.assert_series_equal(r.obs['celltype_major'].astype(str).value_counts().sort_index(),
                                   obs.loc[r.obs_names, 'celltype_major'].astype(str).value_counts().sort_index())

def test_cosmx_transcripts_fall_in_their_cells(shared):
    folder = shared('cosmx_nsclc_lung12_mini')
    a = read_cosmx(folder)
    assert a.n_obs == 120 and not a.var_names.str.startswith('NegPrb').any()
    tx = pd.read_csv(folder/'Lung12_tx_file.csv'); tx = tx[tx.cell_ID > 0]
    inside = []
    for fov, m in a.uns['cosmx']['masks'].items():
        t = tx[tx.fov == int(fov)]
        rc = local_to_pixel(t[['x_local_px', 'y_local_px']].to_numpy(), m['transform'])
        ok = (rc[:, 0] >= 0) & (rc[:, 0] < m['mask'].shape[0]) & (rc[:, 1] >= 0) & (rc[:, 1] < m['mask'].shape[1])
        hit = np.zeros(len(t), bool); hit[ok] = m['mask'][rc[ok, 0], rc[ok, 1]] == t.cell_ID.to_numpy()[ok]
        inside.append(hit)
    frac = np.concatenate(inside).mean()
    assert frac >= 0.95, f"only {frac:.3f} of assigned transcripts fall inside their cell's mask"
    # without the y-flip the same test fails: the transform is what makes it work
    m = a.uns['cosmx']['masks']['2']; t = tx[tx.fov == 2]
    x0, dx, _, ytop, _, dy = m['transform']
    rc = local_to_pixel(t[['x_local_px', 'y_local_px']].to_numpy(), (x0, dx, 0, ytop - 648, 0, 1.0))
    ok = (rc[:, 0] >= 0) & (rc[:, 0] < 648)
    assert (m['mask'][rc[ok, 0], rc[ok, 1]] == t.cell_ID.to_numpy()[ok]).mean() < 0.5

def test_merfish(shared):
    folder = shared('merfish_hypothalamus_rctd')
    raw_ref = pd.read_csv(folder/'reference'/'counts.csv', index_col=0); raw_ref.columns = raw_ref.columns.astype(str)
    zero = raw_ref.columns[raw_ref.sum(0) == 0]; assert len(zero) > 0   # reference cells without counts (4 in the vignette)
    with pytest.raises(ZeroCountsError, match=f'{len(zero)} cells have zero total counts: {zero[0]}'): read_merfish_rctd(folder)
    with pytest.warns(UserWarning, match=f'dropped {len(zero)} cells with zero total counts'): sp_, ref = read_merfish_rctd(folder, drop_zero=True)
    assert set(ref.obs_names) == set(raw_ref.columns) - set(zero)
    # against the CSVs read with pandas here (genes x cells): counts, coordinates and labels by cell name
    for a, part in ((sp_, 'spatial'), (ref, 'reference')):
        raw = pd.read_csv(folder/part/'counts.csv', index_col=0); raw.columns = raw.columns.astype(str)
        assert a.n_vars == raw.shape[0] and (part == 'reference' or a.n_obs == raw.shape[1])
        dense = a.X.toarray() if hasattr(a.X, 'toarray') else np.asarray(a.X)
        np.testing.assert_array_equal(dense, raw.loc[a.var_names, a.obs_names].T.to_numpy())
    coords = pd.read_csv(folder/'spatial'/'coords.csv', index_col=0); coords.index = coords.index.astype(str)
    np.testing.assert_allclose(sp_.obsm['spatial'], coords.loc[sp_.obs_names, ['x', 'y']].to_numpy())
    types = pd.read_csv(folder/'reference'/'cell_types.csv', index_col=0); types.index = types.index.astype(str)
    assert (ref.obs['cell_type'].astype(str).to_numpy() == types.loc[ref.obs_names].iloc[:, 0].astype(str).to_numpy()).all()

# ---- bad input -------------------------------------------------------------------------------------------

def test_hest_bad_inputs(tmp_path):
    write_toy_hest(tmp_path, 'S1', n=5, patch=48)
    a = read_hest(tmp_path, 'S1')
    assert a.obsm['patches'].shape[1:] == (48, 48, 3)     # patch size read from the file
    assert a.uns['spatial']['S1']['scalefactors']['patch_size_px'] == 48
    with h5py.File(tmp_path/'patches'/'S1.h5', 'a') as f:
        img = f['img'][:]; del f['img']; f['img'] = img.astype(np.float32)
    with pytest.raises(DataFormatError, match='uint8'): read_hest(tmp_path, 'S1')
    with h5py.File(tmp_path/'patches'/'S1.h5', 'a') as f: del f['img']
    with pytest.raises(DataFormatError, match="missing datasets \\['img'\\]"): read_hest(tmp_path, 'S1')
    assert read_hest(tmp_path, 'S1', patches=False).n_obs == 5
    with pytest.raises(FileNotFoundError, match='HEST patch file'):
        (tmp_path/'patches'/'S1.h5').unlink(); read_hest(tmp_path, 'S1')

def test_hest_no_barcode_in_common(tmp_path):
    write_toy_hest(tmp_path, 'S2', n=4)
    with h5py.File(tmp_path/'patches'/'S2.h5', 'a') as f:
        del f['barcode']; f['barcode'] = np.array([[f'x{i}'.encode()] for i in range(4)])
    with pytest.raises(BarcodeMismatchError, match='no spot of S2 has a patch'): read_hest(tmp_path, 'S2')

def test_hest_zero_count_spot(tmp_path):
    write_toy_hest(tmp_path, 'S3', n=4)
    a = ad.read_h5ad(tmp_path/'st'/'S3.h5ad'); a.X[2] = 0; a.write_h5ad(tmp_path/'st'/'S3.h5ad')
    with pytest.raises(ZeroCountsError, match='1 spots have zero total counts: spot2'): read_hest(tmp_path, 'S3')
    with pytest.warns(UserWarning, match='dropped 1 spots'): assert read_hest(tmp_path, 'S3', drop_zero=True).n_obs == 3

def _her2st_like(tmp_path, counts, spots):
    for d in ('counts', 'spots', 'images'): (tmp_path/d).mkdir(exist_ok=True)
    counts.to_csv(tmp_path/'counts'/'Z1.tsv.gz', sep='\t')
    spots.to_csv(tmp_path/'spots'/'Z1_selection.tsv', sep='\t', index=False)

def test_her2st_bad_inputs(tmp_path):
    counts = pd.DataFrame({'GENE1': [3, 0, 1], 'GENE2': [1, 0, 2]}, index=['1x1', '2x1', '3x1'])
    spots = pd.DataFrame({'x': [1, 2, 3], 'y': [1, 1, 1], 'pixel_x': [10., 20, 30], 'pixel_y': [5., 5, 5], 'selected': 1})
    _her2st_like(tmp_path, counts, spots)
    with pytest.raises(ZeroCountsError, match='2x1'): read_her2st(tmp_path, 'Z1')
    with pytest.warns(UserWarning): a = read_her2st(tmp_path, 'Z1', drop_zero=True)
    np.testing.assert_allclose(a.obsm['spatial'], [[10, 5], [30, 5]])
    _her2st_like(tmp_path, counts.rename(index={'3x1': '9x9'}), spots)
    with pytest.raises(BarcodeMismatchError, match='9x9'): read_her2st(tmp_path, 'Z1', drop_zero=True)
    _her2st_like(tmp_path, counts.astype(float) + 0.5, spots)
    with pytest.raises(DataFormatError, match='not integers'): read_her2st(tmp_path, 'Z1')
    with pytest.raises(FileNotFoundError, match='her2st counts'): read_her2st(tmp_path, 'NOPE')

def test_10x_shape_mismatch(tmp_path):
    write_toy_10x(tmp_path, n_cells=5)
    pd.Series([f'cell{i}' for i in range(6)]).to_csv(tmp_path/'barcodes.tsv.gz', sep='\t', header=False, index=False)
    with pytest.raises(DataFormatError, match='5 cells but there are 4 features and 6 barcodes'): read_10x_reference(tmp_path)

def test_crop_patches_wrong_image(tmp_path):
    with pytest.raises(DataFormatError, match='uint8'): crop_patches(np.zeros((10, 10, 3)), np.array([[5, 5]]), 2)
    with pytest.raises(DataFormatError, match='\\(H, W, 3\\)'): crop_patches(np.zeros((10, 10), np.uint8), np.array([[5, 5]]), 2)

def test_shared_data_dir_env(tmp_path, monkeypatch):
    (tmp_path/'her2st').mkdir()
    monkeypatch.setenv('STLEARN_NB_DATA', str(tmp_path))
    assert shared_data_dir() == tmp_path and shared_data_dir('her2st') == tmp_path/'her2st'
    assert shared_data_dir('absent') is None

def test_plot_spatial_draws_one_true_size_circle_per_spot(shared):
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    a = read_her2st(shared('her2st'), 'C6')
    sf = a.uns['spatial']['C6']['scalefactors']
    ax = plot_spatial(a, 'ERBB2')
    col = ax.collections[0]
    assert len(col.get_offsets()) == a.n_obs
    np.testing.assert_allclose(col.get_offsets(), a.obsm['spatial'] * sf['tissue_lowres_scalef'])
    np.testing.assert_allclose(col._widths * 2, sf['spot_diameter_fullres'] * sf['tissue_lowres_scalef'])  # half-widths stored
    counts = np.log1p(a[:, 'ERBB2'].layers['counts'].toarray().ravel())
    np.testing.assert_allclose(col.get_array(), counts)
    plt.close('all')

def test_error_message_helpers(tmp_path):
    assert format_examples(range(7), 3) == '0, 1, 2 (+4 more)' and format_examples(['a']) == 'a'
    with pytest.raises(FileNotFoundError, match='spot file not found'): require_file(tmp_path/'x.tsv', 'spot file')
    (tmp_path/'x.tsv').write_text('')
    assert require_file(tmp_path/'x.tsv', 'spot file') == tmp_path/'x.tsv'

def test_shared_data_dir_env_missing_folder_means_no_data(tmp_path, monkeypatch):
    monkeypatch.setenv('STLEARN_NB_DATA', str(tmp_path/'hidden'))
    assert shared_data_dir() is None and shared_data_dir('her2st') is None

# ---------------------------------------------------------------- slides read region by region
def _pattern(y, x, h, w):
    r, c = np.arange(y, y + h)[:, None], np.arange(x, x + w)[None]
    return np.dstack(np.broadcast_arrays(*[((r * a + c * b) % 251).astype(np.uint8) for a, b in ((1, 3), (7, 1), (2, 5))]))

def test_pyramidal_bigtiff_regions_equal_slices_at_bounded_memory(tmp_path):
    "A 6000 x 7000 px (126 MB RGB) pyramidal BigTIFF, written tile by tile: random regions equal the closed-form pattern, and reading them allocates < 8 MB."
    import tracemalloc
    H, W = 6000, 7000
    p = write_pyramid_tiff(tmp_path/'big.tif', (H, W), _pattern, tile=256)
    rng = np.random.default_rng(0); regions = [(0, 0, 300, 300), (H - 200, W - 250, 200, 250), (255, 255, 2, 2)]
    regions += [(int(rng.integers(0, H - 600)), int(rng.integers(0, W - 600)), int(rng.integers(1, 600)), int(rng.integers(1, 600))) for _ in range(20)]
    with SlideReader(p) as s:
        assert s.shape == (H, W) and s.kind == 'tiff'
        tracemalloc.start()
        for y, x, h, w in regions: np.testing.assert_array_equal(s.read(y, x, h, w), _pattern(y, x, h, w))
        peak = tracemalloc.get_traced_memory()[1]; tracemalloc.stop()
    assert peak < 8e6, f"peak {peak / 1e6:.1f} MB while the slide holds {H * W * 3 / 1e6:.0f} MB"

def test_slide_reader_faults(tmp_path):
    from PIL import Image
    Image.fromarray(_pattern(0, 0, 40, 50)).save(tmp_path/'s.jpg', quality=95)
    with SlideReader(tmp_path/'s.jpg') as s: assert s.shape == (40, 50) and s.read(0, 0, 40, 50).shape == (40, 50, 3)
    with pytest.raises(SlideTooLargeError, match=r's.jpg: 40 x 50 = .*exceeds the 0.001 Mpx limit'): SlideReader(tmp_path/'s.jpg', max_pixels=1000)
    p = write_pyramid_tiff(tmp_path/'t.tif', (300, 300), _pattern, tile=256, levels=1)
    b = p.read_bytes(); (tmp_path/'cut.tif').write_bytes(b[:len(b) // 2])
    with pytest.raises(UnreadableFileError, match='cut.tif'): SlideReader(tmp_path/'cut.tif')
    (tmp_path/'e.tif').write_bytes(b'')
    with pytest.raises(UnreadableFileError, match='empty file'): SlideReader(tmp_path/'e.tif')
    with pytest.raises(FileNotFoundError, match='slide image not found'): SlideReader(tmp_path/'absent.tif')
    with SlideReader(p) as s, pytest.raises(PatchOutOfBoundsError, match='reaches outside the 300 x 300 slide'): s.read(290, 0, 20, 5)

def test_large_jpeg_reads_without_pillow_bomb_warning(shared):
    import warnings
    from PIL import Image
    with warnings.catch_warnings():   # the expected size from the JPEG header, read by PIL here (its bomb check muted)
        warnings.simplefilter('ignore', Image.DecompressionBombWarning)
        width, height = Image.open(shared('her2st')/'images'/'C6.jpg').size
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        with SlideReader(shared('her2st')/'images'/'C6.jpg') as s: assert s.shape == (height, width) and s.read(0, 0, 8, 8).dtype == np.uint8
