"Tests for stlearn_nb.hestseg_real: tiling and stitching, label-noise functions, model files, the segment tool, real data."
import numpy as np, pandas as pd, pytest, torch
from scipy import ndimage as ndi
from stlearn_nb.data import shared_data_dir, resample_tile, resize_labels
from stlearn_nb.hestseg import hv_targets, pq_stats, simulate_tile, _relabel, aji_score
from stlearn_nb.hestseg_real import *

torch.set_num_threads(1)

class AnswerInImage(torch.nn.Module):
    "A purely local stand-in network: NP from channel 0, HV maps from channels 1-2."
    mpp, config = 0.5, dict(post=dict(ksize=5, min_size=5, open_radius=1))
    def forward(self, x): return torch.cat([-(x[:, :1] - 0.5) * 50, (x[:, :1] - 0.5) * 50, x[:, 1:3] * 2 - 1], 1)

def _coded(size=240, seed=0):
    inst = _relabel(simulate_tile('colon', size, seed=seed)['inst'])[0].reshape(size, size).astype(np.int32)
    code = np.dstack([(inst > 0) * 255, *((hv_targets(inst) + 1) / 2 * 255)]).round().astype(np.uint8)
    return inst, code

# ---------------------------------------------------------------- tiling and stitching
@pytest.mark.parametrize('tile,overlap', [(64, 16), (96, 32), (48, 8)])
def test_stitched_maps_equal_untiled_for_a_local_model(tile, overlap):
    inst, code = _coded(200, seed=1)
    np.testing.assert_array_equal(predict_maps(AnswerInImage(), code, tile, overlap), predict_maps(AnswerInImage(), code, 1024, 16))

def test_no_nucleus_cut_at_tile_borders():
    inst, code = _coded(240, seed=2)
    tiled = segment_nuclei(code, AnswerInImage(), 0.5, tile=64, overlap=16)
    np.testing.assert_array_equal(tiled, segment_nuclei(code, AnswerInImage(), 0.5, tile=1024))
    borders = np.arange(48, 240, 48)
    across = set(inst[borders][inst[borders] == inst[borders - 1]]) | set(inst[:, borders][inst[:, borders] == inst[:, borders - 1]])
    across.discard(0); assert len(across) >= 15
    s = pq_stats(inst, tiled); matched = set(np.unique(inst)[1:][s['true_idx']])
    assert len(across & matched) >= 0.9 * len(across)   # and matched one-to-one at IoU > 0.5

def test_per_tile_postprocessing_would_fail_this_test():
    "The border check above can fail: labelling tiles separately splits border nuclei."
    inst, code = _coded(240, seed=2)
    whole = segment_nuclei(code, AnswerInImage(), 0.5, tile=1024)
    split = whole.copy(); split[:, 120:] += (split[:, 120:] > 0) * 10_000   # ids of the right half renamed, as separate tiles would
    crossing = np.unique(whole[:, 119][whole[:, 119] == whole[:, 120]]); crossing = crossing[crossing > 0]
    assert len(crossing) > 0
    # a relabelling-invariant check (same partition of the pixels) passes for the tiled run and fails for the split
    # one exactly at the nuclei that cross the cut
    tiled = segment_nuclei(code, AnswerInImage(), 0.5, tile=64, overlap=16)
    assert _split_labels(whole, tiled + (tiled > 0) * 50_000) == set()      # renaming alone is not a split
    assert _split_labels(whole, tiled) == set() and _split_labels(tiled, whole) == set()
    assert _split_labels(whole, split) == set(crossing.tolist())


def _split_labels(ref, other):
    "Labels of `ref` whose pixels carry more than one label in `other` (a per-pixel pairing count, no relabelling)."
    pairs = np.unique(np.stack([ref.ravel(), other.ravel()]), axis=1)
    ids, n = np.unique(pairs[0][pairs[0] > 0], return_counts=True)
    return set(ids[n > 1].tolist())

def test_segment_nuclei_resamples_to_model_resolution():
    inst, code = _coded(120, seed=3)
    big = np.repeat(np.repeat(code, 2, 0), 2, 1)            # the same tissue at 0.25 um/px
    out = segment_nuclei(big, AnswerInImage(), 0.25, tile=1024)
    assert out.shape == big.shape[:2] and out.dtype == np.int32
    assert pq_stats(np.repeat(np.repeat(inst, 2, 0), 2, 1), out)['pq'] > 0.85

def test_segment_nuclei_refuses_bad_input():
    with pytest.raises(ValueError, match='mpp: the pixel size must be > 0 um/px'): segment_nuclei(np.zeros((32, 32, 3), np.uint8), AnswerInImage(), 0)
    with pytest.raises(ValueError, match=r'\(H, W, 3\) uint8'): segment_nuclei(np.zeros((32, 32), np.uint8), AnswerInImage(), 0.5)
    with pytest.raises(ValueError, match='multiple of 16'): predict_maps(AnswerInImage(), np.zeros((32, 32, 3), np.uint8), tile=50)

def test_nearest_matches_scipy_zoom_order0():
    lab = np.random.default_rng(0).integers(0, 9, (10, 14))
    np.testing.assert_array_equal(resize_labels(lab, (20, 28)), np.kron(lab, np.ones((2, 2), int)))

def test_resample_tile_image_alone_is_the_same_image():
    rng = np.random.default_rng(1)
    img, lab = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8), rng.integers(0, 5, (40, 60))
    both, alone = resample_tile(img, lab, 0.25, 0.5), resample_tile(img, None, 0.25, 0.5)
    np.testing.assert_array_equal(alone[0], both[0]); assert alone[1] is None
    np.testing.assert_array_equal(both[1], resize_labels(lab, (20, 30)))

# ---------------------------------------------------------------- label noise: each function's stated effect
def _squares():
    m = np.zeros((60, 60), np.int32); m[5:10, 5:10] = 1; m[5:10, 10:15] = 2; m[30:40, 30:40] = 3; m[50:55, 2:7] = 4
    return m

@pytest.mark.parametrize('dy,dx', [(3, -2), (-4, 0), (0, 7)])
def test_shift_moves_centroid_exactly(dy, dx):
    m = _squares(); out = shift_instances(m, [[0, 0], [0, 0], [dy, dx], [0, 0]])
    np.testing.assert_array_equal(np.argwhere(out == 3).mean(0) - np.argwhere(m == 3).mean(0), [dy, dx])
    assert (out == 3).sum() == 100

def test_shift_drops_pixels_leaving_the_image():
    m = _squares(); out = shift_instances(m, [[0, 0], [0, 0], [0, 0], [8, 0]])   # nucleus 4 (rows 50-54) pushed down by 8
    assert (out == 4).sum() == 5 * (60 - 58)

def test_tile_offset_shifts_all_centroids_alike():
    m = _relabel(simulate_tile('breast', 128, seed=5)['inst'])[0].reshape(128, 128).astype(np.int32)
    inner = [k for k in range(1, m.max() + 1) if (np.argwhere(m == k).min(0) > 8).all() and (np.argwhere(m == k).max(0) < 119).all()][:10]
    out = xenium_like_labels(m, 0.5, offset_um=3.0, jitter_um=0, grow_px=0, miss_frac=0, merge_frac=0, seed=1)
    d = np.array([np.argwhere(out == k).mean(0) - np.argwhere(m == k).mean(0) for k in inner])
    assert np.allclose(d, d[0]) and abs(np.hypot(*d[0]) - 6) <= 0.71   # 3 um at 0.5 um/px, rounded to whole pixels

def test_jitter_spreads_per_nucleus_shifts():
    m = _relabel(simulate_tile('breast', 128, seed=5)['inst'])[0].reshape(128, 128).astype(np.int32)
    out = xenium_like_labels(m, 0.5, offset_um=0, jitter_um=1.0, grow_px=0, miss_frac=0, merge_frac=0, seed=2)
    assert aji_score(m, out) < 0.95 and len(np.unique(out)) > 0.9 * len(np.unique(m))

@pytest.mark.parametrize('px', [1, 2])
def test_erosion_reduces_and_dilation_grows_area(px):
    m = _squares(); area = np.bincount(m.ravel())[1:]
    er, di = np.bincount(grow_instances(m, -px).ravel(), minlength=5)[1:], np.bincount(grow_instances(m, px).ravel(), minlength=5)[1:]
    assert (er < area).all() and (di > area).all()
    # an isolated square: erosion by px with a disk equals scipy's binary erosion of that square
    iso = (m == 3); ref = ndi.binary_erosion(iso, structure=__import__('skimage.morphology', fromlist=['disk']).disk(px))
    np.testing.assert_array_equal(grow_instances(m, -px) == 3, ref)

def test_dilation_never_merges_or_overwrites():
    m = _squares(); d = grow_instances(m, 2)
    assert (d[m > 0] == m[m > 0]).all() and set(np.unique(d)) == set(np.unique(m))

@pytest.mark.parametrize('frac', [0.1, 0.25, 0.5])
def test_drop_removes_that_fraction(frac):
    m = _relabel(simulate_tile('lung', 160, seed=7)['inst'])[0].reshape(160, 160).astype(np.int32)
    n = len(np.unique(m)) - 1; out = drop_instances(m, frac, np.random.default_rng(0))
    assert len(np.unique(out)) - 1 == n - round(frac * n)
    kept = np.unique(out)[1:]; assert all(((out == k) == (m == k)).all() for k in kept[:5])   # survivors unchanged

def test_merge_joins_touching_only():
    m = _squares()
    test = merge_touching(m, 1.0, np.random.default_rng(0))
    assert test[7, 7] == test[7, 12] and set(np.unique(test)) == {0, 1, 3, 4}
    np.testing.assert_array_equal(merge_touching(m, 0.0, np.random.default_rng(0)), m)
    chain = np.zeros((10, 30), np.int32); chain[2:6, 2:6] = 1; chain[2:6, 6:10] = 2; chain[2:6, 10:14] = 3
    assert len(np.unique(merge_touching(chain, 1.0, np.random.default_rng(0)))) == 2   # a chain of touching nuclei becomes one

def test_touching_pairs_with_gap():
    m = np.zeros((10, 20), np.int32); m[2:5, 2:5] = 1; m[2:5, 6:9] = 2     # one background column between them
    assert touching_pairs(m, gap=0).shape == (0, 2) and touching_pairs(m, gap=1).tolist() == [[1, 2]]

def test_noise_levels_order_label_quality():
    m = _relabel(simulate_tile('colon', 160, seed=3)['inst'])[0].reshape(160, 160).astype(np.int32)
    pq = [pq_stats(m, xenium_like_labels(m, 0.5, **NOISE_LEVELS.loc[s].drop('label').to_dict(), seed=0))['pq'] for s in (1, 2, 3)]
    assert pq[0] > pq[1] > pq[2]

# ---------------------------------------------------------------- augmentation
def test_hed_jitter_identity_and_effect():
    rng = np.random.default_rng(0); img = rng.integers(0, 256, (20, 20, 3)).astype(np.uint8)
    np.testing.assert_array_equal(hed_jitter(img, rng, 0, 0), img)
    from skimage.color import rgb2hed
    he = np.full((8, 8, 3), (120, 60, 150), np.uint8)
    up = hed_jitter(he, rng, sigma=0, bias=0.1)   # a positive or negative shift of all three densities changes the pixel
    assert not np.array_equal(up, he)

def test_augment_crop_keeps_image_and_mask_aligned():
    inst = _squares(); paint = np.where(inst[..., None] > 0, 255, 0).astype(np.uint8).repeat(3, 2)
    for k in range(16):   # at scale 1 exactly; with a scale change bilinear (image) and nearest (mask) differ at edges only
        img, lab = augment_crop(paint, inst, np.random.default_rng(k), crop=40, scale=(1, 1), stain=False)
        np.testing.assert_array_equal(img[..., 0] > 127, lab > 0)
        img, lab = augment_crop(paint, inst, np.random.default_rng(k), crop=40, stain=False)
        assert ((img[..., 0] > 127) != (lab > 0)).mean() < 0.01

# ---------------------------------------------------------------- model, loss, files
def test_encoder_is_pretrained_and_trainable():
    from stlearn_nb.features import shared_weights
    if shared_weights() is None: pytest.skip("../shared/models/mobilenetv2_imagenet not present on this machine")
    state = torch.load(shared_weights(), map_location='cpu', weights_only=True)
    m = mobile_hovernet()
    for (k, v), stage in [(kv, 0) for kv in m.encoder[0].state_dict().items()]:
        block, rest = k.split('.', 1); torch.testing.assert_close(v, state[f'features.{block}.{rest}'])
    assert all(p.requires_grad for p in m.encoder.parameters())

def test_np_hv_loss_equals_hoverloss_without_types():
    "NpHvLoss on 4 channels = HoVerLoss's NP and HV terms on the same maps with type channels added; two terms by hand."
    from stlearn_nb.hestseg import HoVerLoss
    gen = torch.Generator().manual_seed(0)
    out = torch.randn(2, 4, 16, 16, generator=gen)
    np_true, hv_true = (torch.rand(2, 1, 16, 16, generator=gen) > 0.5).float(), torch.rand(2, 2, 16, 16, generator=gen) * 2 - 1
    loss = NpHvLoss(); v = loss(out, torch.cat([np_true, hv_true, torch.zeros(2, 1, 16, 16)], 1))
    full = HoVerLoss()
    full(torch.cat([out, torch.randn(2, 3, 16, 16, generator=gen)], 1),
         torch.cat([np_true, hv_true, torch.randint(0, 3, (2, 1, 16, 16), generator=gen).float()], 1))
    assert full.last['tp_ce'] > 0   # the full loss has type terms; the NP and HV terms do not depend on them
    np.testing.assert_allclose(v.item(), sum(full.last[k] for k in ('np_ce', 'np_dice', 'hv_mse', 'hv_msge')), rtol=1e-6)
    np.testing.assert_allclose(loss.last['np_ce'], torch.nn.functional.cross_entropy(out[:, :2], np_true[:, 0].long()).item(), rtol=1e-6)
    np.testing.assert_allclose(loss.last['hv_mse'], ((out[:, 2:4] - hv_true) ** 2).mean().item(), rtol=1e-6)
    assert loss.last['tp_ce'] == 0 and loss.last['tp_dice'] == 0

def test_model_file_roundtrip_and_errors(tmp_path):
    m = MobileHoVerNet(); m.config.update(post=dict(ksize=7), epochs=3)
    save_segmenter(m, tmp_path/'m.pt'); back = load_segmenter(tmp_path/'m.pt')
    assert back.config == m.config and back.mpp == 0.5
    x = torch.rand(1, 3, 32, 32); torch.testing.assert_close(back(x), m.eval()(x))
    (tmp_path/'junk.pt').write_bytes(b'not a torch file')
    with pytest.raises(SegmenterFileError, match='junk.pt: expected a segmentation model file .*, found text'): load_segmenter(tmp_path/'junk.pt')
    (tmp_path/'x.png').write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(16))     # what torch would answer with its weights_only advice
    with pytest.raises(SegmenterFileError, match='x.png: expected a segmentation model file .*, found a PNG image$'): load_segmenter(tmp_path/'x.png')
    b = (tmp_path/'m.pt').read_bytes(); (tmp_path/'cut.pt').write_bytes(b[:len(b) // 2])
    with pytest.raises(SegmenterFileError, match='found a damaged zip archive'): load_segmenter(tmp_path/'cut.pt')
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'config': {'mpp': 0.5, 'n_classes': 0}}, tmp_path/'wrong.pt')
    with pytest.raises(SegmenterFileError, match='do not fit'): load_segmenter(tmp_path/'wrong.pt')
    with pytest.raises(FileNotFoundError): load_segmenter(tmp_path/'absent.pt')

def test_type_branch_returns_classes(tmp_path):
    m = MobileHoVerNet(n_classes=3).eval()
    inst, cls = segment_nuclei(np.full((40, 40, 3), 128, np.uint8), m, 0.5, tile=64, overlap=16)
    assert inst.shape == cls.shape == (40, 40) and inst.dtype == np.int32 and (cls[inst == 0] == 0).all()
    for k in np.unique(inst)[1:]: assert len(np.unique(cls[inst == k])) == 1   # one class per nucleus

# ---------------------------------------------------------------- baseline and scoring
def test_classical_segment_separates_touching_nuclei():
    yy, xx = np.indices((60, 90)); truth = np.zeros((60, 90), np.int32)
    for k, cx in enumerate((25, 42, 70)): truth[((yy - 30) ** 2 + (xx - cx) ** 2 < 90) & (truth == 0)] = k + 1
    he = np.where(truth[..., None] > 0, np.array([70, 45, 140]), np.array([235, 190, 215])).astype(np.uint8)
    out = classical_segment(he, 0.5); s = pq_stats(truth, out)
    assert len(np.unique(out)) - 1 == 3 and s['pq'] > 0.8

def test_organ_table_means():
    a = np.zeros((20, 20), np.int32); a[2:8, 2:8] = 1; half = a.copy(); half[2:8, 5:8] = 0
    tiles = [dict(name='x', organ='brain', inst=a), dict(name='y', organ='lung', inst=a), dict(name='z', organ='lung', inst=a)]
    pt = score_methods(tiles, {'m': [a, half, a]})
    t = organ_table(pt).set_index('group')
    assert t.loc['unseen organs (mean)', 'PQ'] == 1.0 and t.loc['lung', 'n_tiles'] == 2
    assert abs(t.loc['all 3 tiles (mean)', 'Dice'] - np.mean([1, 2 * 18 / 54, 1])) < 1e-12

# ---------------------------------------------------------------- the tool
def test_segment_files_writes_one_mask_and_overlay_per_image(tmp_path):
    from PIL import Image
    m = MobileHoVerNet(); save_segmenter(m, tmp_path/'m.pt')
    for name in ('a', 'b'): Image.fromarray(simulate_tile('breast', 64, seed=len(name))['image']).save(tmp_path/f'{name}.png')
    table = segment_files([tmp_path/'a.png', tmp_path/'b.png'], tmp_path/'m.pt', 0.5, tmp_path/'out')
    assert sorted(p.name for p in (tmp_path/'out').iterdir()) == ['a_mask.npy', 'a_overlay.png', 'b_mask.npy', 'b_overlay.png', 'segment.csv']
    assert np.load(tmp_path/'out'/'a_mask.npy').dtype == np.int32 and len(table) == 2
    with pytest.raises(ValueError, match='share file names'): check_segment_inputs([tmp_path/'a.png', tmp_path/'a.png'], tmp_path/'m.pt', 0.5)

# ---------------------------------------------------------------- real data
def _real():
    mon, cpm = shared_data_dir('monuseg'), shared_data_dir('cpm15')
    if mon is None or cpm is None: pytest.skip("../shared/data/monuseg or cpm15 not present on this machine")
    return mon, cpm

def test_real_tiles_resampled_to_working_resolution():
    mon, cpm = _real()
    tiles = read_nuclei_tiles(mon, cpm)
    assert len(tiles) == 40 and all(t['inst'].shape == t['image'].shape[:2] for t in tiles)
    from PIL import Image
    for t in tiles:   # the tile's physical height is kept: file height (MoNuSeg tiles are 1000 px; CPM-15 read by PIL) x file mpp
        height = 1000 if t['source'] == 'MoNuSeg' else Image.open(cpm/f"{t['name'].split()[-1]}.png").size[1]
        assert abs(t['inst'].shape[0] * WORKING_MPP - height * t['mpp']) <= WORKING_MPP, (t['name'], t['inst'].shape, height, t['mpp'])
    assert {t['source'] for t in tiles} == {'MoNuSeg', 'CPM-15'}
    organs = pd.DataFrame(tiles).groupby('split').organ.agg(set)
    assert organs['test'] - organs['train'] - organs['valid'] == set(UNSEEN_ORGANS)
    assert sum(t['split'] == 'valid' for t in tiles) == len(VALID_TILES)

def test_real_classical_baseline_separates_nuclei_and_follows_the_image():
    """On real tiles the watershed separates touching nuclei (PQ above the connected components of its own foreground), and the
    masks follow the image (PQ against the mirrored truth, the negative control, is under a tenth of it)."""
    mon, _ = _real()
    tiles = [t for t in read_nuclei_tiles(mon, None) if t['split'] == 'test'][:3]
    for t in tiles:
        out = classical_segment(t['image'], WORKING_MPP)
        pq, pq_components = pq_stats(t['inst'], out)['pq'], pq_stats(t['inst'], ndi.label(out > 0)[0])['pq']
        pq_mirrored = pq_stats(t['inst'][::-1, ::-1], out)['pq']
        assert pq > pq_components and pq_mirrored < 0.1 * pq, (t['name'], pq, pq_components, pq_mirrored)

def test_plot_pq_vs_severity_draws_curve_and_reference_lines():
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    noise = pd.DataFrame(dict(severity=[0, 1, 2], offset_um=[0, 1, 2], PQ_unseen=[0.5, 0.4, 0.2]))
    ax = plot_pq_vs_severity(noise, {'clean': 0.5, 'classical': 0.45})
    assert len(ax.lines) == 3 and list(ax.lines[0].get_ydata()) == [0.5, 0.4, 0.2] and ax.lines[2].get_ydata()[0] == 0.45
    assert [t.get_text().split(':')[0] for t in ax.get_legend().get_texts()][1:] == ['clean', 'classical']   # 'name: value'
    plt.close('all')

def test_pq_vs_severity_styles_follow_names_and_references_have_one_order():
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    from stlearn_nb.hestseg_real import severity_references
    noise = pd.DataFrame(dict(severity=[0, 2], offset_um=[0, 2], PQ_unseen=[0.5, 0.2]))
    per_tile = pd.DataFrame(dict(method=['classical (haematoxylin)', 'MobileHoVerNet, manual labels, breast only', 'classical (haematoxylin)', 'x'],
                                 unseen=[True, True, False, True], PQ=[0.4, 0.3, 0.9, 0.1]))
    refs = severity_references(noise, per_tile)
    assert refs == {'manual labels (clean)': 0.5, 'classical': 0.4, 'MobileHoVerNet, manual labels, breast only': 0.3}   # unseen tiles only
    styles = lambda ax: {l.get_label(): (l.get_linestyle(), l.get_color()) for l in ax.lines[1:]}
    a, b = plot_pq_vs_severity(noise, refs), plot_pq_vs_severity(noise, dict(reversed(list(refs.items()))))
    assert styles(a) == styles(b) and len(set(styles(a).values())) == 3   # same name, same style, whatever the order
    plt.close('all')

def test_read_he_image_tiff_png_and_grey(tmp_path):
    import tifffile
    from PIL import Image
    img = np.random.default_rng(0).integers(0, 255, (9, 7, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path/'a.tif', img); Image.fromarray(img).save(tmp_path/'a.png'); Image.fromarray(img[..., 0]).save(tmp_path/'g.png')
    assert read_he_image(tmp_path/'a.tif')[1] == read_he_image(tmp_path/'a.png')[1] == ''   # RGB: no conversion to report
    np.testing.assert_array_equal(read_he_image(tmp_path/'a.tif')[0], img); np.testing.assert_array_equal(read_he_image(tmp_path/'a.png')[0], img)
    np.testing.assert_array_equal(read_he_image(tmp_path/'g.png')[0], np.repeat(img[..., :1], 3, 2))
    tifffile.imwrite(tmp_path/'f.tif', img.astype(np.float32))
    with pytest.raises(Exception, match='expected 8-bit'): read_he_image(tmp_path/'f.tif')


def _write_mode(path, fmt, mode, rgb):
    "Save `rgb` as `fmt` in colour `mode`; return what a correct reader gives back as RGB (decoded independently)."
    import tifffile
    from PIL import Image
    grey = rgb[..., 0]
    if fmt == 'tiff':
        if mode == 'L': tifffile.imwrite(path, grey, photometric='minisblack'); return np.repeat(grey[..., None], 3, 2)
        if mode == 'miniswhite': tifffile.imwrite(path, 255 - grey, photometric='miniswhite'); return np.repeat(grey[..., None], 3, 2)
        if mode == 'RGBA':
            tifffile.imwrite(path, np.dstack([rgb, np.full(grey.shape, 200, np.uint8)]), photometric='rgb', extrasamples=['unassalpha'])
            return rgb
        if mode == 'P':
            cmap = np.zeros((3, 256), np.uint16); cmap[:, :4] = (np.array([[0, 0, 0], [255, 0, 0], [0, 128, 255], [90, 60, 200]]).T * 257)
            idx = grey % 4; tifffile.imwrite(path, idx, photometric='palette', colormap=cmap); return (cmap[:, idx] >> 8).transpose(1, 2, 0).astype(np.uint8)
    im = Image.fromarray(rgb).convert(mode)
    im.save(path)
    with Image.open(path) as back: return np.asarray(back.convert('RGB'))   # Pillow's own decoding of the saved file


@pytest.mark.parametrize('fmt,mode', [('png', 'L'), ('png', 'LA'), ('png', 'RGBA'), ('png', 'P'), ('jpeg', 'L'),
                                      ('tiff', 'L'), ('tiff', 'miniswhite'), ('tiff', 'RGBA'), ('tiff', 'P')])
def test_non_rgb_images_are_converted_and_said(tmp_path, fmt, mode, capsys):
    "Greyscale, grey + alpha, RGBA and palette files: the same RGB as an independent decoder, a note, a log line, a CSV column."
    rgb = simulate_tile('breast', 64, seed=1)['image']
    path = tmp_path/f'x.{ {"png": "png", "jpeg": "jpg", "tiff": "tif"}[fmt] }'
    expected = _write_mode(path, fmt, mode, rgb)
    img, note = read_he_image(path)
    np.testing.assert_array_equal(img, expected)
    kind = {'L': 'greyscale', 'miniswhite': 'greyscale', 'LA': 'greyscale + alpha', 'RGBA': 'RGBA', 'P': 'palette'}[mode]
    assert str(path) in note and f'{kind} image converted to RGB' in note, note
    m = MobileHoVerNet(); save_segmenter(m, tmp_path/'m.pt')
    table = segment_files([path], tmp_path/'m.pt', 0.5, tmp_path/'out')
    assert f'segment: {note}' in capsys.readouterr().out
    assert pd.read_csv(tmp_path/'out'/'segment.csv')['converted'].iloc[0] == note == table['converted'].iloc[0]
    segment_files([path], tmp_path/'m.pt', 0.5, tmp_path/'out2', progress=False)   # --quiet: no line, the column stays
    assert 'converted' not in capsys.readouterr().out


def test_segment_nuclei_refuses_non_rgb_arrays_naming_to_rgb():
    with pytest.raises(ValueError, match='to_rgb'): segment_nuclei(np.zeros((32, 32), np.uint8), AnswerInImage(), 0.5)
    with pytest.raises(ValueError, match='to_rgb'): segment_nuclei(np.zeros((32, 32, 4), np.uint8), AnswerInImage(), 0.5)
    grey = _coded(64)[1][..., 0]
    np.testing.assert_array_equal(segment_nuclei(to_rgb(grey)[0], AnswerInImage(), 0.5, tile=1024),
                                  segment_nuclei(np.repeat(grey[..., None], 3, 2), AnswerInImage(), 0.5, tile=1024))


def test_run_hestseg_monuseg_quick_on_real_data(tmp_path):
    _real()
    exp = run_hestseg_monuseg(quick=True, synth=False, severities=(1,), threads=1, progress=False)
    methods = set(exp.tables['per_tile'].method)
    mon, cpm = _real()   # the one-organ arm names the organ it trains on: breast, or the quick subset's first training organ
    quick_train = [t for t in read_nuclei_tiles(mon, cpm) if t['split'] == 'train'][::6]
    organ = 'breast' if any(t['organ'] == 'breast' for t in quick_train) else quick_train[0]['organ']
    assert methods == {'classical (haematoxylin, Otsu, watershed)', 'MobileHoVerNet, manual labels',
                       'MobileHoVerNet, Xenium-like labels, severity 1', f'MobileHoVerNet, manual labels, {organ} only'}
    per_tile = exp.tables['per_tile']
    assert set(per_tile.organ) == set(UNSEEN_ORGANS) and per_tile.PQ.between(0, 1).all()
    np.testing.assert_allclose(per_tile.PQ, per_tile.DQ * per_tile.SQ, rtol=1e-9)   # PQ = DQ x SQ by definition
    # the classical rows are the scores of the baseline recomputed here on the same tiles (the quick run's test set)
    mon, _ = _real()
    test = [t for t in read_nuclei_tiles(mon, None) if t['split'] == 'test' and t['organ'] in UNSEEN_ORGANS][:2]
    classical = per_tile[per_tile.method.str.startswith('classical')].set_index('tile')
    for t in test:
        s = pq_stats(t['inst'], classical_segment(t['image'], WORKING_MPP))
        np.testing.assert_allclose(classical.loc[t['name'], ['PQ', 'DQ', 'SQ']].to_numpy(float), [s['pq'], s['dq'], s['sq']], rtol=1e-12)
    assert set(exp.figures) == {'overlays', 'pq_vs_severity'}
    (tmp_path/'model.pt').write_bytes(exp.files['model.pt']); m = load_segmenter(tmp_path/'model.pt')
    assert m.config['mpp'] == WORKING_MPP and m.config['epochs'] == 1 and 'post' in m.config and m.config['crop'] == 128


def test_one_organ_unknown_is_refused_not_replaced():
    "An organ with no training tile is a named error listing the training organs (it silently became the first tile before)."
    mon, cpm = shared_data_dir('monuseg'), shared_data_dir('cpm15')
    if mon is None or cpm is None: pytest.skip("../shared/data/monuseg or cpm15 not present on this machine")
    with pytest.raises(ValueError, match=r"one_organ='pancreas': no training tile of that organ; the training organs are .*kidney"):
        run_hestseg_monuseg(quick=True, synth=False, severities=(1,), one_organ='pancreas', threads=1, progress=False)
