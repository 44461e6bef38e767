"Tests for stlearn_nb.hestseg_wsi: block-wise == one pass, border ownership, outputs, resume, bounded memory, two processes."
import json, numpy as np, pandas as pd, pytest, torch
from pathlib import Path
from PIL import Image
from stlearn_nb.data import write_pyramid_tiff, SlideReader, resample_tile
from stlearn_nb.hestseg import hv_targets, simulate_tile, _relabel
from stlearn_nb.hestseg_real import segment_nuclei, save_segmenter
from stlearn_nb.hestseg_wsi import *
from stlearn_nb.hestseg_wsi import _labels_at, _load_block

torch.set_num_threads(1)

class AnswerInImage(torch.nn.Module):
    "A purely local stand-in network: NP from channel 0, HV maps from channels 1-2 (as in test_hestseg_real)."
    mpp, config = 0.5, dict(post=dict(ksize=5, min_size=5, open_radius=1))
    def forward(self, x): return torch.cat([-(x[:, :1] - 0.5) * 50, (x[:, :1] - 0.5) * 50, x[:, 1:3] * 2 - 1], 1)

def coded(inst):
    "An image whose channels encode the nuclei (foreground, h, v) for `AnswerInImage`."
    return np.dstack([(inst > 0) * 255, *((hv_targets(inst) + 1) / 2 * 255)]).round().astype(np.uint8)

def same_partition(a, b) -> bool:
    "Two label images split the pixels into the same nuclei (ids may differ): matched IoU 1.0 for every nucleus."
    if not np.array_equal(a > 0, b > 0): return False
    pairs = np.unique(np.c_[a[a > 0], b[b > 0]], axis=0)
    return len(pairs) == len(np.unique(a[a > 0])) == len(np.unique(b[b > 0]))

def run(tmp_path, slide, model, mpp, name, **kw):
    summary = segment_slide(slide, model, mpp, tmp_path/name, progress=False, **kw)
    return summary, pd.read_csv(tmp_path/name/'nuclei.csv')

def labels_of(out:Path) -> np.ndarray:
    import zarr
    return zarr.open_array(str(out/'labels.zarr'), mode='r')[:]

def synthetic_slide(tmp_path, size=300, seed=1):
    inst = _relabel(simulate_tile('colon', size, seed=seed)['inst'])[0].reshape(size, size).astype(np.int32)
    Image.fromarray(coded(inst)).save(tmp_path/'s.png'); return inst, tmp_path/'s.png'

TABLE = ['id', 'x_px', 'y_px', 'x_um', 'y_um', 'area_um2', 'bbox_x0_px', 'bbox_y0_px', 'bbox_x1_px', 'bbox_y1_px']

# ---------------------------------------------------------------- block-wise == one pass
@pytest.mark.parametrize('block_px', [23, 50, 97, 160])
def test_block_wise_equals_one_pass_on_synthetic_nuclei(tmp_path, block_px):
    "Blocks far smaller than the 300 px tile (23 px: a block per nucleus cluster) give the one-pass nuclei exactly, and today's `segment_nuclei`."
    inst, slide = synthetic_slide(tmp_path)
    _, one = run(tmp_path, slide, AnswerInImage(), 0.5, 'one', block_px=10_000, tile=128, overlap=32, halo=24, mask=True)
    s, blk = run(tmp_path, slide, AnswerInImage(), 0.5, 'blk', block_px=block_px, tile=128, overlap=32, halo=24, mask=True)
    assert s['n_blocks'] == (-(-300 // block_px)) ** 2 and s['n_blocks_unsafe'] == 0 and len(blk) > 400
    pd.testing.assert_frame_equal(blk[TABLE], one[TABLE])
    np.testing.assert_array_equal(labels_of(tmp_path/'blk'), labels_of(tmp_path/'one'))
    assert same_partition(labels_of(tmp_path/'one'), segment_nuclei(coded(inst), AnswerInImage(), 0.5, tile=128, overlap=32))

def test_nuclei_on_every_border_and_corner_kept_once(tmp_path):
    "Discs centred on every block border and corner (block 40 px on a 200 px slide): each appears exactly once, at its centre."
    yy, xx = np.mgrid[:200, :200]; inst = np.zeros((200, 200), np.int32); centres = []
    for y in range(0, 201, 40):
        for x in range(0, 201, 40):
            if 0 < y < 200 or 0 < x < 200:   # on block edges: 24 border points, 16 inner corners, skipping the slide's 4 corners
                cy, cx = min(max(y, 6), 193), min(max(x, 6), 193)
                inst[(yy - cy) ** 2 + (xx - cx) ** 2 <= 25] = len(centres) + 1; centres.append((cy, cx))
    Image.fromarray(coded(inst)).save(tmp_path/'d.png')
    s, t = run(tmp_path, tmp_path/'d.png', AnswerInImage(), 0.5, 'd', block_px=40, tile=64, overlap=16, halo=16)
    assert len(t) == len(centres) == 32
    got = sorted(zip(t.y_px.round(6), t.x_px.round(6))); assert got == sorted((float(a), float(b)) for a, b in centres)

def test_too_small_a_halo_would_fail(tmp_path):
    "The equality above can fail: with a 3 px halo and no growth nuclei are split, lost or duplicated at block borders."
    from stlearn_nb import hestseg_wsi
    inst, slide = synthetic_slide(tmp_path, 200, seed=2)
    _, one = run(tmp_path, slide, AnswerInImage(), 0.5, 'one', block_px=10_000, tile=128, overlap=32, halo=24)
    orig = hestseg_wsi.segment_block
    try:
        hestseg_wsi.segment_block = lambda *a, **k: orig(*a[:3], 3, *a[4:], max_halo=3)
        _, bad = run(tmp_path, slide, AnswerInImage(), 0.5, 'bad', block_px=30, tile=128, overlap=32, halo=3)
    finally: hestseg_wsi.segment_block = orig
    assert len(bad) != len(one) or not np.allclose(bad[TABLE].to_numpy(float), one[TABLE].to_numpy(float))

@pytest.mark.parametrize('mpp', [0.25, 0.69])
def test_block_wise_equals_one_pass_when_resampled(tmp_path, mpp):
    "Slides at another resolution: working-grid pixels are a function of their global position, so blocks still agree exactly; vs torch resampling (`segment_nuclei`) PQ >= 0.95."
    from stlearn_nb.hestseg import pq_stats
    inst, slide = synthetic_slide(tmp_path, 240, seed=3)
    big = np.asarray(Image.open(slide).resize((round(240 * 0.5 / mpp),) * 2, Image.BILINEAR)); Image.fromarray(big).save(tmp_path/'r.png')
    _, one = run(tmp_path, tmp_path/'r.png', AnswerInImage(), mpp, 'one', block_px=10_000, tile=128, overlap=32, halo=24, mask=True)
    _, blk = run(tmp_path, tmp_path/'r.png', AnswerInImage(), mpp, 'blk', block_px=45, tile=128, overlap=32, halo=24, mask=True)
    pd.testing.assert_frame_equal(blk[TABLE], one[TABLE]); np.testing.assert_array_equal(labels_of(tmp_path/'blk'), labels_of(tmp_path/'one'))
    assert pq_stats(segment_nuclei(big, AnswerInImage(), mpp, tile=128, overlap=32), labels_of(tmp_path/'one'))['pq'] >= 0.95

# ---------------------------------------------------------------- outputs
def test_outputs_table_geojson_anndata_thumbnail(tmp_path):
    "GeoJSON polygons rasterise back to the label image; the AnnData survives write_h5ad with centroids in obsm['spatial']; Parquet == CSV."
    import anndata as ad
    inst, slide = synthetic_slide(tmp_path, 200, seed=4)
    s, t = run(tmp_path, slide, AnswerInImage(), 0.5, 'o', block_px=64, tile=128, overlap=32, halo=24, mask=True)
    out = tmp_path/'o'
    assert sorted(p.name for p in out.iterdir()) == ['labels.zarr', 'nuclei.csv', 'nuclei.geojson', 'nuclei.h5ad', 'nuclei.parquet', 'segment.json', 'thumbnail.png', 'thumbnail_overlay.png']
    np.testing.assert_array_equal(geojson_to_labels(out/'nuclei.geojson', (200, 200)), labels_of(out))
    feats = json.loads((out/'nuclei.geojson').read_text())['features']
    assert len(feats) == len(t) and all(f['properties']['objectType'] == 'detection' for f in feats)
    lab = labels_of(out); k = int(t.id[10])
    np.testing.assert_allclose(t.loc[10, ['y_px', 'x_px']].to_numpy(float), np.argwhere(lab == k).mean(0))   # centroid = mean pixel
    test_area = (lab == k).sum() * 0.25; assert np.isclose(t.area_um2[10], test_area)
    a = ad.read_h5ad(out/'nuclei.h5ad'); a.write_h5ad(tmp_path/'again.h5ad'); b = ad.read_h5ad(tmp_path/'again.h5ad')
    exact = pd.read_parquet(out/'nuclei.parquet')   # full float precision (the CSV keeps ~17 significant digits)
    np.testing.assert_array_equal(b.obsm['spatial'], exact[['x_px', 'y_px']].to_numpy()); assert b.n_obs == len(t) and list(b.obs_names[:2]) == ['1', '2']
    assert b.uns['spatial']['s']['images']['lowres'].shape == (200, 200, 3)
    pd.testing.assert_frame_equal(exact, t, check_dtype=False, rtol=1e-14)
    over = np.asarray(Image.open(out/'thumbnail_overlay.png')); assert ((over != np.asarray(Image.open(out/'thumbnail.png'))).any(2) == (lab > 0)).all()

def test_killed_run_resumes_from_saved_blocks(tmp_path):
    "Interrupted after 3 of 16 blocks: the rerun computes only the other 13 (and no tile row twice) and gives the uninterrupted result."
    inst, slide = synthetic_slide(tmp_path, 200, seed=5)
    _, whole = run(tmp_path, slide, AnswerInImage(), 0.5, 'whole', block_px=50, tile=128, overlap=32, halo=24)
    with pytest.raises(KeyboardInterrupt): run(tmp_path, slide, AnswerInImage(), 0.5, 'r', block_px=50, tile=128, overlap=32, halo=24, stop_after=3)
    assert not (tmp_path/'r').exists() and len(list((tmp_path/'.r.work'/'blocks').glob('*.npz'))) == 3
    s, again = run(tmp_path, slide, AnswerInImage(), 0.5, 'r', block_px=50, tile=128, overlap=32, halo=24)
    assert s['blocks_run'] == 13 and s['seconds_maps'] < 0.5 and not (tmp_path/'.r.work').exists()
    pd.testing.assert_frame_equal(again, whole)
    s, other = run(tmp_path, slide, AnswerInImage(), 0.5, 'r', block_px=40, tile=128, overlap=32, halo=24)   # other settings: starts afresh
    assert s['blocks_run'] == 25

def test_segment_slide_refuses_bad_input(tmp_path):
    inst, slide = synthetic_slide(tmp_path, 64)
    with pytest.raises(ValueError, match='mpp: the pixel size must be > 0 um/px'): segment_slide(slide, AnswerInImage(), 0, tmp_path/'x')
    with pytest.raises(ValueError, match='halo must be >'): segment_slide(slide, AnswerInImage(), 0.5, tmp_path/'x', halo=1)
    with pytest.raises(FileNotFoundError, match='slide image not found'): segment_slide(tmp_path/'absent.tif', AnswerInImage(), 0.5, tmp_path/'x')

# ---------------------------------------------------------------- real H&E, bounded memory, two processes
@pytest.fixture(scope='module')
def quick_model(tmp_path_factory):
    "A MobileHoVerNet fine-tuned briefly on MoNuSeg + CPM-15 (1 frozen + 6 epochs of 16 crops): weak, but a real network on real tissue."
    from stlearn_nb.data import shared_data_dir
    from stlearn_nb.core import seed_everything
    from stlearn_nb.hestseg_real import read_nuclei_tiles, nuclei_learner, fit_segmenter, mobile_hovernet
    mon, cpm = shared_data_dir('monuseg'), shared_data_dir('cpm15')
    if mon is None or cpm is None: pytest.skip("../shared/data/monuseg and cpm15 not present on this machine")
    tiles = read_nuclei_tiles(mon, cpm); train = [t for t in tiles if t['split'] == 'train']; valid = [t for t in tiles if t['split'] == 'valid']
    seed_everything(0)   # before the model is built: its initial weights must not depend on which tests ran first
    m = fit_segmenter(nuclei_learner(train, valid, mobile_hovernet(), 128, 16, 4, 0), 6, 2e-3, 1, progress=False).eval()
    path = tmp_path_factory.mktemp('model')/'model.pt'; save_segmenter(m, path); return path

def test_block_wise_equals_one_pass_on_monuseg_tile(tmp_path, quick_model, shared):
    "A MoNuSeg test tile at the working resolution: block-wise (48, 100, 200 px blocks) == one pass == `segment_nuclei`, nucleus for nucleus."
    from stlearn_nb.hestseg_real import read_he_image, load_segmenter
    tif = sorted((shared('monuseg')/'test').glob('*.tif'))[0]
    img, _ = resample_tile(read_he_image(tif)[0], None, 0.25, 0.5); Image.fromarray(img).save(tmp_path/'mon.png')
    ref = segment_nuclei(img, load_segmenter(quick_model), 0.5)
    _, one = run(tmp_path, tmp_path/'mon.png', quick_model, 0.5, 'one', block_px=10_000, mask=True)
    assert same_partition(labels_of(tmp_path/'one'), ref) and len(one) > 50
    for b in (48, 100, 200):
        s, blk = run(tmp_path, tmp_path/'mon.png', quick_model, 0.5, f'b{b}', block_px=b, mask=True)
        assert s['n_blocks_unsafe'] == 0; pd.testing.assert_frame_equal(blk[TABLE], one[TABLE])
        np.testing.assert_array_equal(labels_of(tmp_path/f'b{b}'), labels_of(tmp_path/'one'))

def test_block_wise_equals_one_pass_on_her2st_crop(tmp_path, quick_model, shared):
    "A 700 px crop of her2st C6 (0.69 um/px, resampled to 0.5): blocks of 64 and 256 px == one pass; vs `segment_nuclei` (torch resampling) PQ >= 0.98."
    from stlearn_nb.hestseg import pq_stats
    from stlearn_nb.hestseg_real import load_segmenter
    with SlideReader(shared('her2st')/'images'/'C6.jpg') as r: crop = r.read(4000, 4000, 700, 700)
    Image.fromarray(crop).save(tmp_path/'c6.png')
    _, one = run(tmp_path, tmp_path/'c6.png', quick_model, 0.69, 'one', block_px=10_000, mask=True)
    assert pq_stats(segment_nuclei(crop, load_segmenter(quick_model), 0.69), labels_of(tmp_path/'one'))['pq'] >= 0.98 and len(one) > 50
    for b in (64, 256):
        s, blk = run(tmp_path, tmp_path/'c6.png', quick_model, 0.69, f'b{b}', block_px=b, mask=True)
        assert s['n_blocks_unsafe'] == 0; pd.testing.assert_frame_equal(blk[TABLE], one[TABLE])
        np.testing.assert_array_equal(labels_of(tmp_path/f'b{b}'), labels_of(tmp_path/'one'))

def periodic_slide(inst):
    "tile_fn of a slide that repeats the coded nuclei image `inst` (synthetic, any size)."
    code = coded(inst); n = inst.shape[0]
    return lambda y, x, h, w: code[np.arange(y, y + h)[:, None] % n, np.arange(x, x + w)[None] % n]

def test_peak_memory_bounded_by_block_not_slide(tmp_path):
    "A 2048 x 2048 pyramidal BigTIFF (12.6 MB of RGB, 50 MB of network maps): with 256 px blocks the traced peak stays below 40 MB (a 4096 px slide: 75 MB, still below its 200 MB of maps)."
    import tracemalloc
    inst = _relabel(simulate_tile('colon', 256, seed=6)['inst'])[0].reshape(256, 256).astype(np.int32)
    slide = write_pyramid_tiff(tmp_path/'big.tif', (2048, 2048), periodic_slide(inst))
    tracemalloc.start()
    s = segment_slide(slide, AnswerInImage(), 0.5, tmp_path/'o', block_px=256, halo=24, tile=256, overlap=32, thumb_px=512, progress=False)
    peak = tracemalloc.get_traced_memory()[1]; tracemalloc.stop()
    assert s["n_blocks"] == 64 and s["n_nuclei"] > 2_000 and s['n_blocks_unsafe'] == 0
    assert peak < 40e6, f"peak {peak / 1e6:.0f} MB"

def test_two_processes_equal_one(tmp_path):
    "torchrun with two CPU processes (gloo): each rank takes tile rows and blocks rank::2, rank 0 merges; the result equals one process."
    import subprocess, sys, socket
    inst, slide = synthetic_slide(tmp_path, 200, seed=7)
    _, one = run(tmp_path, slide, AnswerInImage(), 0.5, 'one', block_px=50, tile=64, overlap=16, halo=24)
    script = tmp_path/'two.py'
    script.write_text(f"""import sys, torch, torch.distributed as dist
sys.path.insert(0, {str(Path(__file__).parent)!r}); torch.set_num_threads(1)
from test_hestseg_wsi import AnswerInImage
from stlearn_nb.hestseg_wsi import segment_slide
dist.init_process_group('gloo')
s = segment_slide({str(slide)!r}, AnswerInImage(), 0.5, {str(tmp_path/'two')!r}, block_px=50, tile=64, overlap=16, halo=24, progress=False)
sys.stdout.write(f"rank {{dist.get_rank()}} blocks {{s['blocks_run']}} of {{s['n_blocks']}}\\n"); sys.stdout.flush(); dist.destroy_process_group()   # one write: ranks' lines do not interleave
""")
    with socket.socket() as so: so.bind(('127.0.0.1', 0)); port = so.getsockname()[1]
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', str(port), str(script)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'rank 0 blocks 8 of 16' in r.stdout and 'rank 1 blocks 8 of 16' in r.stdout
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path/'two'/'nuclei.csv'), one)

# ---------------------------------------------------------------- faults: full disk, killed merge, two runs at once
def _subprocess(script:Path, code:str, **kw):
    "Run `code` in a fresh interpreter that imports this checkout and this test module."
    import subprocess, sys, os
    script.write_text(f"import os, sys, signal, time, torch\nsys.path.insert(0, {str(Path(__file__).parent)!r}); torch.set_num_threads(1)\n"
                      f"from test_hestseg_wsi import AnswerInImage\nfrom stlearn_nb import hestseg_wsi\n{code}")
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get('PYTHONPATH', '')])}
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kw)

KW = dict(block_px=50, tile=128, overlap=32, halo=24)

def test_disk_full_mid_slide_keeps_blocks_and_resumes(tmp_path, monkeypatch):
    "A writer that fails with ENOSPC at the 6th block (after writing part of it): `DiskFullError` naming the 5 blocks kept, no partial file; the rerun computes only the other 11 and equals the uninterrupted run."
    import errno, os
    from stlearn_nb import hestseg_wsi
    inst, slide = synthetic_slide(tmp_path, 200, seed=8)
    _, whole = run(tmp_path, slide, AnswerInImage(), 0.5, 'whole', **KW)
    save, saved = hestseg_wsi._save_block, []
    def full_disk(path, b):
        if len(saved) == 5:
            with hestseg_wsi.atomic_file(path) as tmp:   # as a full disk does it: some bytes written, then ENOSPC
                tmp.write_bytes(b'PK\x03\x04' + bytes(100)); raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
        save(path, b); saved.append(path.name)
    monkeypatch.setattr(hestseg_wsi, '_save_block', full_disk)
    with pytest.raises(DiskFullError, match=r'5 of 16 blocks are kept in \S+\.r\.work: free space there and run the same command again') as e:
        run(tmp_path, slide, AnswerInImage(), 0.5, 'r', **KW)
    assert e.value.errno == errno.ENOSPC and isinstance(e.value, OSError) and 'No space left on device' in str(e.value)
    assert sorted(p.name for p in (tmp_path/'.r.work'/'blocks').iterdir()) == saved and not (tmp_path/'r').exists()   # whole blocks only
    monkeypatch.setattr(hestseg_wsi, '_save_block', save)
    s, again = run(tmp_path, slide, AnswerInImage(), 0.5, 'r', **KW)
    assert s['blocks_run'] == 11 and not (tmp_path/'.r.work').exists()
    pd.testing.assert_frame_equal(again, whole)

def test_killed_during_final_merge_rerun_merges_without_redoing_blocks(tmp_path, monkeypatch):
    "SIGKILL half-way through the merge (CSV written, GeoJSON next): the rerun runs no network tile and no block, removes the killed merge's folder and equals the uninterrupted run; a third call is skipped."
    import signal
    from stlearn_nb import hestseg_wsi
    inst, slide = synthetic_slide(tmp_path, 200, seed=9)
    _, whole = run(tmp_path, slide, AnswerInImage(), 0.5, 'whole', **KW)
    p = _subprocess(tmp_path/'kill.py', "hestseg_wsi.write_geojson = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
                    f"hestseg_wsi.segment_slide({str(slide)!r}, AnswerInImage(), 0.5, {str(tmp_path/'r')!r}, progress=False, **{KW!r})\n")
    out, err = p.communicate(timeout=300)
    assert p.returncode == -signal.SIGKILL, err[-2000:]
    stale = list(tmp_path.glob('.r.tmp-*'))
    assert not (tmp_path/'r').exists() and len(stale) == 1 and (stale[0]/'nuclei.csv').exists()   # killed inside the merge
    assert len(list((tmp_path/'.r.work'/'blocks').glob('*.npz'))) == 16 and (tmp_path/'.r.lock').exists()   # a lock file left by a dead process
    calls = []
    for name in ('predict_tile_row', 'segment_block'):
        f = getattr(hestseg_wsi, name); monkeypatch.setattr(hestseg_wsi, name, lambda *a, f=f, name=name, **k: calls.append(name) or f(*a, **k))
    s, again = run(tmp_path, slide, AnswerInImage(), 0.5, 'r', **KW)
    assert calls == [] and s['blocks_run'] == 0 and not s.get('skipped')
    pd.testing.assert_frame_equal(again, whole)
    assert not list(tmp_path.glob('.r.tmp-*')) and not list(tmp_path.glob('.r.old-*')) and not (tmp_path/'.r.work').exists()
    assert not (tmp_path/'.r.lock').exists()   # the stale lock was taken, and removed at the end
    (tmp_path/'.r.work'/'blocks').mkdir(parents=True)   # as a run killed while removing its work folder leaves it
    s = segment_slide(slide, AnswerInImage(), 0.5, tmp_path/'r', progress=False, **KW)   # finished: nothing to do
    assert s['skipped'] and s['n_nuclei'] == len(whole) and calls == [] and not (tmp_path/'.r.work').exists()
    assert segment_slide(slide, AnswerInImage(), 0.5, tmp_path/'r', progress=False, mask=True, **KW)['blocks_run'] == 16   # other outputs asked for: run again

def test_second_run_on_the_same_out_refused_while_the_first_runs(tmp_path):
    "A run paused at its first block holds the lock: a second call on the same out (other settings: unlocked, it would delete the first run's work folder) raises `OutputInUseError` naming the first run's pid, and the first run then finishes with the uninterrupted result."
    import time
    inst, slide = synthetic_slide(tmp_path, 200, seed=10)
    _, whole = run(tmp_path, slide, AnswerInImage(), 0.5, 'whole', **KW)
    paused, go = tmp_path/'paused', tmp_path/'go'
    p = _subprocess(tmp_path/'first.py', f"""block = hestseg_wsi.segment_block
def waiting(*a, **k):
    open({str(paused)!r}, 'w').close(); t = time.time()
    while not os.path.exists({str(go)!r}) and time.time() - t < 120: time.sleep(0.05)
    return block(*a, **k)
hestseg_wsi.segment_block = waiting
s = hestseg_wsi.segment_slide({str(slide)!r}, AnswerInImage(), 0.5, {str(tmp_path/'r')!r}, progress=False, **{KW!r})
print(s['blocks_run'])
""")
    try:
        t = time.time()
        while not paused.exists() and p.poll() is None and time.time() - t < 240: time.sleep(0.05)
        assert paused.exists() and p.poll() is None, p.communicate()[1][-2000:]
        with pytest.raises(OutputInUseError, match=rf'is being written by another run \(pid {p.pid} on '):
            segment_slide(slide, AnswerInImage(), 0.5, tmp_path/'r', progress=False, **{**KW, 'block_px': 40})
        assert (tmp_path/'.r.work'/'fingerprint.json').exists() and json.loads((tmp_path/'.r.work'/'fingerprint.json').read_text())['block_px'] == 50
    finally:
        go.touch(); out, err = p.communicate(timeout=300)
    assert p.returncode == 0 and out.strip() == '16', err[-2000:]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path/'r'/'nuclei.csv'), whole)
    s = segment_slide(slide, AnswerInImage(), 0.5, tmp_path/'r', progress=False, **{**KW, 'block_px': 40})   # the lock is free again
    assert s['blocks_run'] == 25
