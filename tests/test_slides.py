"Slides as scanners write them: tiled pyramidal (Big, OME-)TIFF and SVS per compression, read region by region; the pixel size the file states."
import os, subprocess, sys
from pathlib import Path
import numpy as np, pytest, tifffile
from stlearn_nb.data import SlideReader, MissingCodecError, shared_data_dir
from stlearn_nb.filekind import stated_pixel_size, CREDIBLE_UM_PER_PX

H, W, TILE = 600, 760, 128   # not a multiple of the tile: the edge tiles are partial
REGIONS = [(0, 0, H, W), (100, 120, 40, 50), (120, 250, 300, 17), (H - 70, W - 90, 70, 90), (127, 127, 2, 2), (0, 255, 256, 2)]

def he_like(h=H, w=W, seed=0):
    "A smooth seeded RGB image (sums of sinusoids, periods 20-80 px, grey levels 30-225): what JPEG compresses as it does H&E."
    rng = np.random.default_rng(seed); y, x = np.mgrid[:h, :w].astype(float)
    chans = [sum(np.sin(2 * np.pi * (y * np.sin(a) + x * np.cos(a)) / p + ph)
                 for a, p, ph in zip(rng.uniform(0, np.pi, 3), rng.uniform(20, 80, 3), rng.uniform(0, 2 * np.pi, 3))) for _ in range(3)]
    return np.dstack([np.round(127.5 + 32 * c).astype(np.uint8) for c in chans])

def write_slide(path, img, compression, levels=3, photometric='rgb', **kw):
    "A tiled pyramid as scanners write it: level 0, then each level halved, as SubIFDs of level 0 (as `data.write_pyramid_tiff`)."
    if photometric == 'ycbcr':   # tifffile stores YCbCr data as given (subsampled 2x2): convert as a scanner does, JFIF's formula via Pillow
        from PIL import Image
        img = np.asarray(Image.fromarray(img).convert('YCbCr'))
    with tifffile.TiffWriter(path, bigtiff=kw.pop('bigtiff', True), ome=kw.pop('ome', None)) as tw:
        args = dict(tile=(TILE, TILE), photometric=photometric, compression=compression)
        tw.write(img, subifds=levels - 1, **args, **kw)
        for k in range(1, levels): tw.write(img[::2 ** k, ::2 ** k], subfiletype=1, **args, **{k: v for k, v in kw.items() if k == 'compressionargs'})
    return Path(path)

def psnr(a, b): return 10 * np.log10(255 ** 2 / np.mean((a.astype(float) - b.astype(float)) ** 2))

# Lossless codecs: every region exactly the pixels written. Lossy ones (JPEG at tifffile's default quality 75, RGB or
# YCbCr 4:2:0 as SVS files hold it; JPEG 2000 at level 40, i.e. lossy): over regions of >= 1000 px the smooth image's
# error is quantisation noise of a few grey levels (whole image: MAE 1.2 / PSNR 43.6 dB for RGB JPEG, 1.5 / 38.0 dB for
# YCbCr, 2.1 / 39.0 dB for JPEG 2000, measured when this test was written), so the tolerance is a mean absolute error
# < 3 grey levels and PSNR > 35 dB per region; a region read 8 px off, or with two channels swapped, misses it by far
# (checked below), so the tolerance still tells a right reader from a wrong one. Besides, each region equals the same
# decoder's whole-level read exactly (the region assembly is exact even when the codec is not).
LOSSY = {'jpeg', 'jpeg2000'}
CASES = [('none', None, {}), ('lzw', 'lzw', {}), ('deflate', 'zlib', {}), ('jpeg', 'jpeg', {}), ('jpeg-ycbcr', 'jpeg', dict(photometric='ycbcr', size=(640, 768))),
         ('jpeg2000', 'jpeg2000', dict(compressionargs={'level': 40})), ('classic-tiff-lzw', 'lzw', dict(bigtiff=False))]

@pytest.mark.parametrize('name,compression,kw', CASES, ids=[c[0] for c in CASES])
def test_tiled_pyramid_read_region_by_region(tmp_path, name, compression, kw):
    kw = dict(kw); img = he_like(*kw.pop('size', (H, W)))   # YCbCr: whole tiles, as scanners write them (tifffile pads an edge tile's
    path = write_slide(tmp_path/f'{name}.tif', img, compression, **kw)   # chroma with zeros, which JPEG's upsampling spreads into the last pixel)
    whole = tifffile.imread(path)   # the same decoder, whole level 0
    with tifffile.TiffFile(path) as t:
        want = {None: 'NONE', 'lzw': 'LZW', 'zlib': 'ADOBE_DEFLATE', 'jpeg': 'JPEG', 'jpeg2000': 'JPEG2000'}[compression]
        assert t.pages[0].is_tiled and len(t.series[0].levels) == 3 and t.pages[0].compression.name == want, (t.pages[0].compression, len(t.series[0].levels))
    with SlideReader(path) as s:
        assert s.kind == 'tiff' and s.shape == img.shape[:2]
        for y, x, h, w in REGIONS:
            got, want = s.read(y, x, h, w), img[y:y + h, x:x + w]
            assert got.shape == (h, w, 3) and got.dtype == np.uint8
            np.testing.assert_array_equal(got, whole[y:y + h, x:x + w])
            if compression not in LOSSY: np.testing.assert_array_equal(got, want); continue
            if h * w < 1000: continue   # a mean over a handful of pixels is no measure of the loss; such regions are exact against `whole`
            mae = np.abs(got.astype(int) - want).mean()
            assert mae < 3 and psnr(got, want) > 35, (name, (y, x, h, w), mae, psnr(got, want))
        if compression in LOSSY:   # the tolerance can fail: a region read 8 px off, or with red and blue swapped
            good = s.read(100, 100, 200, 300)
            assert np.abs(s.read(108, 100, 200, 300).astype(int) - img[100:300, 100:400]).mean() > 10
            assert np.abs(good[..., ::-1].astype(int) - img[100:300, 100:400]).mean() > 10

def test_ome_tiff_pyramid_and_its_pixel_size(tmp_path):
    "OME-TIFF (tifffile writes the OME-XML): regions exact under Deflate, and SlideReader.mpp from PhysicalSizeX in its unit."
    img = he_like(seed=1)
    path = write_slide(tmp_path/'s.ome.tif', img, 'zlib', ome=True, metadata={'axes': 'YXS', 'PhysicalSizeX': 0.4, 'PhysicalSizeXUnit': 'µm'})
    with tifffile.TiffFile(path) as t: assert t.is_ome
    with SlideReader(path) as s:
        assert s.mpp == pytest.approx(0.4)
        for y, x, h, w in REGIONS: np.testing.assert_array_equal(s.read(y, x, h, w), img[y:y + h, x:x + w])

APERIO = 'Aperio Image Library v12.0.15\r\n{w}x{h} [0,0 {w}x{h}] ({t}x{t}) JPEG/RGB Q=70|AppMag = 40|StripeWidth = 2040|ScanScope ID = SS1234|MPP = 0.2520|Filename = 1234'

def test_svs_like_file_regions_and_mpp(tmp_path):
    "An Aperio-style SVS (tiled JPEG TIFF whose ImageDescription starts with 'Aperio' and states MPP): read through tifffile, no openslide needed."
    img = he_like(seed=2)
    path = write_slide(tmp_path/'slide.svs', img, 'jpeg', bigtiff=False, description=APERIO.format(w=W, h=H, t=TILE), metadata=None)
    with tifffile.TiffFile(path) as t: assert t.pages[0].description.startswith('Aperio') and t.is_svs
    with SlideReader(path) as s:
        assert s.kind == 'tiff' and s.mpp == 0.252
        for y, x, h, w in REGIONS:
            got = s.read(y, x, h, w); assert np.abs(got.astype(int) - img[y:y + h, x:x + w]).mean() < 3
    assert stated_pixel_size(path) == 0.252

def _tifffile_size(path):
    "The independent answer: the same rule applied to the tags as tifffile parses them."
    with tifffile.TiffFile(path) as t:
        p = t.pages[0]; d = p.description
        if d.startswith('Aperio'): s = float(d.split('MPP = ')[1].split('|')[0])
        elif t.is_ome: px = t.ome_metadata.split('PhysicalSizeX="')[1].split('"')[0]; s = float(px) * (1e-3 if 'PhysicalSizeXUnit="nm"' in t.ome_metadata else 1)
        elif 'XResolution' in p.tags and p.tags['ResolutionUnit'].value in (2, 3):
            num, den = p.tags['XResolution'].value; s = (25400 if p.tags['ResolutionUnit'].value == 2 else 10000) / (num / den)
        else: return None
    lo, hi = CREDIBLE_UM_PER_PX
    return s if lo <= s <= hi else None

@pytest.mark.parametrize('kw', [dict(resolution=(72, 72), resolutionunit='INCH'), dict(resolution=(96, 96), resolutionunit='INCH'),
                                dict(resolution=(25400 / 0.5, 25400 / 0.5), resolutionunit='INCH'), dict(resolution=(1e4 / 0.2527, 1e4 / 0.2527), resolutionunit='CENTIMETER'),
                                dict(resolution=(1e4 / 25, 1e4 / 25), resolutionunit='CENTIMETER'), dict(resolution=(2, 2), resolutionunit='NONE'),
                                dict(bigtiff=True, resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit='CENTIMETER'),
                                dict(byteorder='>', resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit='CENTIMETER'),
                                dict(description=APERIO.format(w=8, h=8, t=8), metadata=None), dict(description=APERIO.replace('0.2520', '40'), metadata=None),
                                dict(ome=True, metadata={'axes': 'YXS', 'PhysicalSizeX': 250, 'PhysicalSizeXUnit': 'nm'}), {}],
                         ids=['72dpi', '96dpi', 'inch-0.5', 'cm-0.2527', 'cm-25um', 'unit-none', 'bigtiff-cm', 'big-endian', 'svs', 'svs-40um', 'ome-nm', 'no-tags'])
def test_stated_pixel_size_matches_tifffile(tmp_path, kw):
    "The standard-library header reader agrees with tifffile's tags under the credible-range rule (screen defaults and 25 um/px give None)."
    path = tmp_path/('a.ome.tif' if kw.get('ome') else 'a.tif')
    tifffile.imwrite(path, np.zeros((8, 8, 3), np.uint8), photometric='rgb', **kw)
    want = _tifffile_size(path); got = stated_pixel_size(path)
    assert (got is None and want is None) or got == pytest.approx(want, rel=1e-6), (got, want)
    if 'dpi' in str(kw.get('resolution', '')) or kw.get('resolution') in ((72, 72), (96, 96)): assert got is None

def test_monuseg_tiles_state_no_credible_size():
    "Every MoNuSeg tile says 72 dpi (or nothing): no stated size, so segment still needs --mpp for them."
    tiles = sorted(p for d in ('monuseg', 'monuseg_subset') if (shared_data_dir()/d).is_dir() for p in (shared_data_dir()/d).rglob('*.tif')) if shared_data_dir() else []
    if not tiles: pytest.skip('MoNuSeg tiles not in ../shared/data')
    with tifffile.TiffFile(tiles[0]) as t: assert t.pages[0].tags['XResolution'].value in ((72, 1), (720000, 10000)) or 'XResolution' not in t.pages[0].tags
    assert [stated_pixel_size(p) for p in tiles] == [None] * len(tiles)

def test_missing_codec_names_the_package(tmp_path):
    "Without imagecodecs (blocked in a fresh interpreter), JPEG, LZW and JPEG 2000 slides raise MissingCodecError naming it at open; Deflate still reads."
    img = he_like(96, 96)
    for c in ('jpeg', 'lzw', 'jpeg2000', 'zlib'): write_slide(tmp_path/f'{c}.tif', img, c, levels=1)
    code = f"""
import sys; sys.modules['imagecodecs'] = None
from stlearn_nb.data import SlideReader, MissingCodecError
for c in ('jpeg', 'lzw', 'jpeg2000', 'zlib'):
    try: SlideReader(r'{tmp_path}/' + c + '.tif').read(0, 0, 8, 8); print(c, 'read')
    except MissingCodecError as e: print(c, 'missing:', e)
"""
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).parents[1])}
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=300)
    lines = dict(l.split(' ', 1) for l in r.stdout.strip().splitlines())
    assert r.returncode == 0 and set(lines) == {'jpeg', 'lzw', 'jpeg2000', 'zlib'}, r.stderr
    assert lines['zlib'] == 'read'
    for c, name in (('jpeg', 'JPEG'), ('lzw', 'LZW'), ('jpeg2000', 'JPEG2000')):
        assert lines[c].startswith('missing:') and f'{name}-compressed' in lines[c] and 'pip install imagecodecs' in lines[c] and 'truncated' not in lines[c], lines[c]

# ---------------------------------------------------------------- stlearn-nb segment without --mpp when the files state it
def _cli(*args, code="import sys; from stlearn_nb.cli import main; sys.exit(main(sys.argv[1:]))"):
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).parents[1]), 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, '-c', code, *args], capture_output=True, text=True, env=env, timeout=600)
    return r.returncode, r.stdout, r.stderr

@pytest.fixture(scope='module')
def seg_inputs(tmp_path_factory):
    from stlearn_nb.hestseg_real import MobileHoVerNet, save_segmenter
    from stlearn_nb.hestseg import simulate_tile
    d = tmp_path_factory.mktemp('seg'); img = simulate_tile('breast', 64, seed=0)['image']
    save_segmenter(MobileHoVerNet(), d/'m.pt')
    tifffile.imwrite(d/'cm.tif', img, photometric='rgb', resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit='CENTIMETER')   # states 0.5 um/px
    tifffile.imwrite(d/'dpi.tif', img, photometric='rgb', resolution=(72, 72), resolutionunit='INCH')                       # a screen default
    write_slide(d/'slide.svs', np.tile(img, (2, 2, 1)), 'jpeg', levels=2, bigtiff=False, metadata=None,
                description=APERIO.format(w=128, h=128, t=TILE).replace('0.2520', '0.5000'))                               # JPEG pyramid, MPP 0.5
    return d

def test_segment_takes_the_stated_pixel_size(seg_inputs):
    import pandas as pd
    d = seg_inputs
    rc, out, err = _cli('segment', str(d/'cm.tif'), '--model', str(d/'m.pt'), '--out', str(d/'o1'), '--quiet')
    assert rc == 0, err
    assert pd.read_csv(d/'o1'/'segment.csv').mpp.tolist() == [0.5] and 'note' not in out

def test_segment_given_mpp_wins_with_a_note(seg_inputs):
    import pandas as pd
    d = seg_inputs
    rc, out, err = _cli('segment', str(d/'cm.tif'), str(d/'dpi.tif'), '--model', str(d/'m.pt'), '--mpp', '0.25', '--out', str(d/'o2'), '--quiet')
    assert rc == 0, err
    assert pd.read_csv(d/'o2'/'segment.csv').mpp.tolist() == [0.25, 0.25]
    notes = [l for l in out.splitlines() if 'note' in l]   # one line, for the file that states a size 100% away; none for 72 dpi
    assert notes == [f"segment: note: {d/'cm.tif'} states 0.5 um/px, --mpp 0.25 is used"], out
    rc, out, err = _cli('segment', str(d/'cm.tif'), '--model', str(d/'m.pt'), '--mpp', '0.49', '--out', str(d/'o3'), '--quiet')
    assert rc == 0 and 'note' not in out, (out, err)   # 2% away: no note

def test_segment_needs_mpp_when_a_file_states_none(seg_inputs):
    d = seg_inputs
    code = "import sys; from stlearn_nb.cli import main; rc = main(sys.argv[1:]); assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    rc, out, err = _cli('segment', str(d/'cm.tif'), str(d/'dpi.tif'), '--model', str(d/'m.pt'), '--out', str(d/'o4'), code=code)
    assert rc == 2 and err.strip().count('\n') == 0, err
    assert f"--mpp is needed: 1 of 2 images state no credible pixel size ({d/'dpi.tif'})" in err and not (d/'o4').exists()

def test_segment_jpeg_pyramid_slide_without_mpp(seg_inputs):
    "Whole-slide mode on a JPEG-compressed pyramidal SVS-like TIFF: no --mpp, the slide's MPP used."
    import json
    d = seg_inputs
    rc, out, err = _cli('segment', str(d/'slide.svs'), '--model', str(d/'m.pt'), '--out', str(d/'o5'), '--block-px', '64', '--workers', '1', '--quiet')
    assert rc == 0, err
    summary = json.loads(next((d/'o5'/'slide').glob('*.json')).read_text())
    assert summary['mpp'] == 0.5 and (summary['height'], summary['width']) == (128, 128)
