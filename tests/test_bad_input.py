"""Bad-input corpus: every reader on small valid files written here, then on each kind of damage.

Each case asserts the named error (`DataFormatError` and subclasses, `FileNotFoundError`) and that the message
names the damaged file and the problem; a case whose honest answer is 'read it' asserts the exact result.
`FAULTS` maps each reader to its cases; `test_fault_kind_counts` prints how many kinds each reader covers.
Cases built from copies of the real files in ../shared/data run when they are present (skipped otherwise).
"""
import gzip, json, re, shutil, warnings
from pathlib import Path
import numpy as np, pandas as pd, pytest, anndata as ad, scipy.sparse as sp, h5py
from stlearn_nb.data import (DataFormatError, BarcodeMismatchError, PatchOutOfBoundsError, ZeroCountsError, UnreadableFileError,
                             read_hest, read_hest_patches, write_toy_hest, read_her2st, read_full_image, spot_patches, crop_patches,
                             read_10x_reference, write_toy_10x, read_cosmx, read_cosmx_masks, read_merfish_rctd, read_merfish_spatial,
                             read_merfish_reference, shared_data_dir, MaskShapeError, read_cpm15, read_cpm15_magnifications, read_cpm15_mask)
from stlearn_nb.hestseg import (XeniumFormatError, read_xenium, read_alignment, read_hest_nucleus_seg, read_hest_transcripts,
                                read_monuseg)

# ---------------------------------------------------------------- mutations (each takes the file to damage)
def _text(p:Path) -> str: return (gzip.decompress(p.read_bytes()) if p.suffix == '.gz' else p.read_bytes()).decode('latin-1')
def _write(p:Path, t:str):
    b = t.encode('latin-1'); p.write_bytes(gzip.compress(b) if p.suffix == '.gz' else b)
def edit(fn): return lambda p: _write(p, fn(_text(p)))
def truncate(p): b = p.read_bytes(); p.write_bytes(b[:len(b) // 2])
def empty(p): p.write_bytes(b'')
def garbage(p): p.write_bytes(bytes(range(128, 256)) * 8)           # neither UTF-8 text nor any binary format
def delete(p): p.unlink()
def not_utf8(p): _write(p, _text(p).replace('\n', '\n\xe9\xff', 1))  # two Latin-1 bytes at the start of row 1
def resep(old, new): return edit(lambda t: t.replace(old, new))
def cut_last_line(p):
    lines = _text(p).rstrip('\n').split('\n'); lines[-1] = lines[-1][:len(lines[-1]) * 3 // 5]; _write(p, '\n'.join(lines) + '\n')
def duplicate_rows(p):
    lines = _text(p).rstrip('\n').split('\n'); _write(p, '\n'.join(lines + lines[1:]) + '\n')
def table(fn, **kw):
    "Edit a delimited file as a DataFrame (kw: sep, index_col, header) and write it back in the same layout."
    def m(p):
        sep, index_col, header = kw.get('sep', ','), kw.get('index_col'), kw.get('header', 'infer')
        df = fn(pd.read_csv(p, sep=sep, index_col=index_col, header=header))
        df.to_csv(p, sep=sep, index=index_col is not None, header=header is not None)
    return m
def parquet(fn): return lambda p: fn(pd.read_parquet(p)).to_parquet(p)
def h5ad(fn):
    def m(p):
        with warnings.catch_warnings(): warnings.simplefilter('ignore'); a = ad.read_h5ad(p); fn(a); a.write_h5ad(p)
    return m
def h5(name, value):
    def m(p):
        with h5py.File(p, 'a') as f:
            new = value(f) if callable(value) else value
            if name in f: del f[name]
            if new is not None: f[name] = new
    return m

def case(kind, file, mutate, error, *words): return pytest.param(file, mutate, error, words, id=kind)

def _check(excinfo, path:Path, words):
    msg = str(excinfo.value)
    absent = isinstance(excinfo.value, FileNotFoundError) and str(path.parent) in msg   # a missing file: its folder is named
    assert path.name in msg or absent, f"message does not name {path.name}: {msg}"
    for w in words: assert w in msg, f"{w!r} not in: {msg}"

def _roundtrip(adata, tmp_path):
    "The result survives write_h5ad and reads back with the same counts."
    adata.write_h5ad(tmp_path/'roundtrip.h5ad')
    back = ad.read_h5ad(tmp_path/'roundtrip.h5ad')
    X, Y = (m.toarray() if sp.issparse(m) else np.asarray(m) for m in (adata.X, back.X))
    np.testing.assert_array_equal(X, Y); assert list(back.obs_names) == list(adata.obs_names)

# ---------------------------------------------------------------- her2st
def write_her2st(root:Path, section='Z1'):
    from PIL import Image
    for d in ('counts', 'spots', 'images', 'clusters', 'deconv_stereoscope/major'): (root/d).mkdir(parents=True, exist_ok=True)
    counts = pd.DataFrame({'GENE1': [3, 1, 1], 'GENE2': [1, 4, 2]}, index=['1x1', '2x1', '3x1'])
    counts.to_csv(root/'counts'/f'{section}.tsv.gz', sep='\t')
    pd.DataFrame({'x': [1, 2, 3, 4], 'y': [1, 1, 1, 1], 'pixel_x': [10., 20, 30, 40], 'pixel_y': [5., 6, 7, 8], 'selected': 1}
                 ).to_csv(root/'spots'/f'{section}_selection.tsv', sep='\t', index=False)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root/'images'/f'{section}.jpg', quality=90)
    pd.DataFrame({'label': [1, 2, 1], 'x': [1, 2, 3], 'y': [1, 1, 1]}).to_csv(root/'clusters'/f'{section}-cluster-annotation.tsv.gz', sep='\t')
    pd.DataFrame({'A': [.5, .2, 1.], 'B': [.5, .8, 0.]}, index=counts.index).to_csv(root/'deconv_stereoscope'/'major'/f'{section}-proportion.tsv', sep='\t')
    (root/'clusters'/'motivation.csv').write_text("patient,cluster,annotated as,based on,ref1,ref2\n"
                                                  "Z,1,cancer 1,Marker genes include: ERBB2,,\nZ,2,immune : B cells, T cells,Marker genes include: CD3E,,\n")
    return root

HER2ST_FAULTS = [
    case('counts absent', 'counts/Z1.tsv.gz', delete, FileNotFoundError, 'her2st counts not found'),
    case('counts truncated gzip', 'counts/Z1.tsv.gz', truncate, UnreadableFileError, 'cannot read the her2st counts'),
    case('counts empty', 'counts/Z1.tsv.gz', empty, UnreadableFileError, 'empty file'),
    case('counts not gzip', 'counts/Z1.tsv.gz', garbage, UnreadableFileError, 'cannot read'),
    case('counts not UTF-8', 'counts/Z1.tsv.gz', not_utf8, UnreadableFileError, 'UnicodeDecodeError'),
    case('counts comma-delimited', 'counts/Z1.tsv.gz', resep('\t', ','), DataFormatError, "first line contains [',']"),
    case('counts last line cut', 'counts/Z1.tsv.gz', cut_last_line, DataFormatError, 'missing (NaN)'),
    case('counts not numbers', 'counts/Z1.tsv.gz', edit(lambda t: t.replace('\t4\n', '\tfour\n')), DataFormatError, 'not numbers', 'GENE2', 'four'),
    case('counts negative', 'counts/Z1.tsv.gz', edit(lambda t: t.replace('\t4\n', '\t-4\n')), DataFormatError, 'negative'),
    case('counts not integers', 'counts/Z1.tsv.gz', edit(lambda t: t.replace('\t4\n', '\t4.5\n')), DataFormatError, 'not integers'),
    case('counts duplicated spot', 'counts/Z1.tsv.gz', duplicate_rows, DataFormatError, 'duplicated spot ids', '1x1'),
    case('counts zero spot', 'counts/Z1.tsv.gz', edit(lambda t: t.replace('2x1\t1\t4', '2x1\t0\t0')), ZeroCountsError, '1 spots have zero total counts: 2x1'),
    case('spot absent from spot file', 'counts/Z1.tsv.gz', edit(lambda t: t.replace('3x1', '9x9')), BarcodeMismatchError, '9x9'),
    case('spots absent', 'spots/Z1_selection.tsv', delete, FileNotFoundError, 'her2st spot file not found'),
    case('spots column missing', 'spots/Z1_selection.tsv', table(lambda d: d.drop(columns='pixel_y'), sep='\t'), DataFormatError, "lacks columns ['pixel_y']"),
    case('spots NaN coordinate', 'spots/Z1_selection.tsv', table(lambda d: d.assign(pixel_x=[10., np.nan, 30, 40]), sep='\t'), DataFormatError, 'missing, not numbers', 'rows 1'),
    case('spots semicolon-delimited', 'spots/Z1_selection.tsv', resep('\t', ';'), DataFormatError, 'column'),
    case('spots duplicated', 'spots/Z1_selection.tsv', duplicate_rows, DataFormatError, 'duplicated spots (x, y)', '1x1'),
    case('image truncated JPEG', 'images/Z1.jpg', truncate, UnreadableFileError, 'her2st H&E image'),
    case('image not an image', 'images/Z1.jpg', garbage, UnreadableFileError, 'her2st H&E image'),
    case('clusters column missing', 'clusters/Z1-cluster-annotation.tsv.gz', table(lambda d: d.drop(columns='label'), sep='\t', index_col=0), DataFormatError, "lacks columns ['label']"),
    case('proportions not numbers', 'deconv_stereoscope/major/Z1-proportion.tsv', edit(lambda t: t.replace('0.2', 'x')), DataFormatError, 'not numbers'),
    case('cluster names header wrong', 'clusters/motivation.csv', resep('patient,cluster', 'spot,label'), DataFormatError, 'expected a header'),
    case('cluster names empty', 'clusters/motivation.csv', empty, DataFormatError, 'an empty file'),
    case('cluster names cluster not a number', 'clusters/motivation.csv', resep('Z,2,', 'Z,two,'), DataFormatError, 'lines 3', "'patient,cluster,annotation'"),
    case('cluster names not UTF-8', 'clusters/motivation.csv', not_utf8, UnreadableFileError, 'UnicodeDecodeError'),
]

def test_her2st_valid_exact(tmp_path):
    a = read_her2st(write_her2st(tmp_path), 'Z1')
    np.testing.assert_array_equal(a.X.toarray(), [[3, 1], [1, 4], [1, 2]])
    np.testing.assert_array_equal(a.obsm['spatial'], [[10, 5], [20, 6], [30, 7]])
    assert a.obs['cluster'].tolist() == ['1', '2', '1'] and a.obsm['stereoscope_major']['B'].tolist() == [.5, .8, 0.]
    assert a.obs['tissue_class'].tolist() == ['cancer', 'immune', 'cancer']
    assert a.uns['spatial']['Z1']['images']['lowres'].shape == (6, 6, 3)
    _roundtrip(a, tmp_path)

def test_her2st_columns_read_by_name(tmp_path):
    write_her2st(tmp_path)
    table(lambda d: d[['pixel_y', 'selected', 'pixel_x', 'y', 'x']], sep='\t')(tmp_path/'spots'/'Z1_selection.tsv')
    np.testing.assert_array_equal(read_her2st(tmp_path, 'Z1').obsm['spatial'], [[10, 5], [20, 6], [30, 7]])

@pytest.mark.parametrize('file,mutate,error,words', HER2ST_FAULTS)
def test_her2st_faults(tmp_path, file, mutate, error, words):
    mutate(write_her2st(tmp_path)/file)
    with pytest.raises(error) as e: read_her2st(tmp_path, 'Z1')
    _check(e, tmp_path/file, words)

# ---------------------------------------------------------------- HEST-1k
def _patch_dup(f): b = f['barcode'][:]; b[1] = b[0]; return b
def _patch_bytes(f): b = f['barcode'][:]; b[0, 0] = b'\xff\xfe'; return b
def _patch_nan(f): c = f['coords'][:].astype(float); c[2, 0] = np.nan; return c

HEST_FAULTS = [
    case('expression absent', 'st/TOY.h5ad', delete, FileNotFoundError, 'HEST expression file not found'),
    case('expression truncated h5', 'st/TOY.h5ad', truncate, UnreadableFileError, 'cannot read the HEST expression file'),
    case('expression empty', 'st/TOY.h5ad', empty, UnreadableFileError, 'HEST expression file'),
    case('expression not HDF5', 'st/TOY.h5ad', garbage, UnreadableFileError, 'HEST expression file'),
    case('expression duplicated barcodes', 'st/TOY.h5ad', h5ad(lambda a: setattr(a, 'obs_names', ['spot0', 'spot0', *a.obs_names[2:]])), DataFormatError, 'duplicated spot barcodes', 'spot0'),
    case('expression NaN coordinates', 'st/TOY.h5ad', h5ad(lambda a: a.obsm['spatial'].__setitem__((1, 0), np.nan)), DataFormatError, "obsm['spatial']", 'spot1'),
    case('expression negative counts', 'st/TOY.h5ad', h5ad(lambda a: a.X.__setitem__((0, 0), -1)), DataFormatError, 'negative'),
    case('patches absent', 'patches/TOY.h5', delete, FileNotFoundError, 'HEST patch file not found'),
    case('patches truncated h5', 'patches/TOY.h5', truncate, UnreadableFileError, 'HEST patch file'),
    case('patches missing dataset', 'patches/TOY.h5', h5('img', None), DataFormatError, "missing datasets ['img']"),
    case('patches float images', 'patches/TOY.h5', h5('img', lambda f: f['img'][:].astype(np.float32)), DataFormatError, 'uint8'),
    case('patches grey images', 'patches/TOY.h5', h5('img', lambda f: f['img'][..., 0]), DataFormatError, 'expected (N, H, W, 3)'),
    case('patches coords shape', 'patches/TOY.h5', h5('coords', lambda f: f['coords'][:, :1]), DataFormatError, 'coords has shape'),
    case('patches NaN coords', 'patches/TOY.h5', h5('coords', _patch_nan), DataFormatError, 'patch coords are missing'),
    case('patches duplicated barcode', 'patches/TOY.h5', h5('barcode', _patch_dup), DataFormatError, 'duplicated patch barcodes'),
    case('patches undecodable barcode', 'patches/TOY.h5', h5('barcode', _patch_bytes), UnreadableFileError, 'UnicodeDecodeError'),
    case('patches match no spot', 'patches/TOY.h5', h5('barcode', lambda f: np.array([[f'x{i}'.encode()] for i in range(6)])), BarcodeMismatchError, 'no spot of TOY has a patch'),
    case('patches miss a spot', 'patches/TOY.h5', h5('barcode', lambda f: np.array([[b'other'], *f['barcode'][1:]])), BarcodeMismatchError, '1 of 6 spots have no patch'),
    case('metadata not JSON', 'metadata/TOY.json', edit(lambda t: t[:-3]), UnreadableFileError, 'HEST metadata'),
]

def test_hest_valid_exact(tmp_path):
    write_toy_hest(tmp_path)
    a = read_hest(tmp_path, 'TOY')
    with h5py.File(tmp_path/'patches'/'TOY.h5') as f:
        order = [b[0].decode() for b in f['barcode'][:]]; img = f['img'][:]
    for i, name in enumerate(a.obs_names): np.testing.assert_array_equal(a.obsm['patches'][i], img[order.index(name)])
    _roundtrip(a, tmp_path)
    (tmp_path/'metadata'/'TOY.json').unlink()   # optional: absent metadata means no pixel size, not None in uns
    b = read_hest(tmp_path, 'TOY'); assert 'pixel_size_um' not in b.uns['spatial']['TOY']['scalefactors']; _roundtrip(b, tmp_path)

def test_hest_unmatched_drop_is_warned(tmp_path):
    write_toy_hest(tmp_path); h5('barcode', lambda f: np.array([[b'other'], *f['barcode'][1:]]))(tmp_path/'patches'/'TOY.h5')
    with pytest.warns(UserWarning, match='dropped 1 of 6 spots without a patch'): assert read_hest(tmp_path, 'TOY', drop_unmatched=True).n_obs == 5

@pytest.mark.parametrize('file,mutate,error,words', HEST_FAULTS)
def test_hest_faults(tmp_path, file, mutate, error, words):
    write_toy_hest(tmp_path); mutate(tmp_path/file)
    with pytest.raises(error) as e: read_hest(tmp_path, 'TOY')
    _check(e, tmp_path/file, words)

def test_read_hest_patches_alone(tmp_path):
    write_toy_hest(tmp_path); truncate(tmp_path/'patches'/'TOY.h5')
    with pytest.raises(UnreadableFileError, match='TOY.h5'): read_hest_patches(tmp_path/'patches'/'TOY.h5')

# ---------------------------------------------------------------- 10x reference
def _mtx(values, field='integer'):
    def m(p):
        X = sp.coo_matrix(np.asarray(values)); import scipy.io, io
        buf = io.BytesIO(); scipy.io.mmwrite(buf, X, field=field); p.write_bytes(gzip.compress(buf.getvalue()))
    return m

def _mtx_repeat_last(text):
    "The last (gene, cell, count) entry listed twice, with the header's entry count raised to match."
    lines = text.rstrip('\n').split('\n'); k = next(i for i, l in enumerate(lines) if not l.startswith('%'))
    rows, cols, nnz = lines[k].split(); lines[k] = f"{rows} {cols} {int(nnz) + 1}"
    return '\n'.join(lines + lines[-1:]) + '\n'

TENX_FAULTS = [
    case('matrix absent', 'matrix.mtx.gz', delete, FileNotFoundError, '10x matrix not found'),
    case('matrix truncated gzip', 'matrix.mtx.gz', truncate, UnreadableFileError, 'cannot read the 10x matrix'),
    case('matrix empty', 'matrix.mtx.gz', empty, UnreadableFileError, '10x matrix'),
    case('matrix not gzip', 'matrix.mtx.gz', garbage, UnreadableFileError, '10x matrix'),
    case('matrix negative', 'matrix.mtx.gz', _mtx(-np.ones((4, 7))), DataFormatError, 'negative'),
    case('matrix not integers', 'matrix.mtx.gz', _mtx(np.full((4, 7), 0.5), 'real'), DataFormatError, 'not integers'),
    case('matrix entry listed twice', 'matrix.mtx.gz', edit(_mtx_repeat_last), DataFormatError, '1 (gene, cell) entries are listed twice'),
    case('matrix shape', 'barcodes.tsv.gz', edit(lambda t: t + 'cell7\n'), DataFormatError, '4 genes x 7 cells but there are 4 features and 8 barcodes'),
    case('features comma-delimited', 'features.tsv.gz', resep('\t', ','), DataFormatError, "first line contains [',']"),
    case('features empty', 'features.tsv.gz', empty, UnreadableFileError, 'empty file'),
    case('features missing name', 'features.tsv.gz', edit(lambda t: t.replace('G2\tG2', 'G2\t')), DataFormatError, 'gene names are missing (empty)'),
    case('features not UTF-8', 'features.tsv.gz', not_utf8, UnreadableFileError, 'UnicodeDecodeError'),
    case('barcodes duplicated', 'barcodes.tsv.gz', edit(lambda t: t.replace('cell1', 'cell0')), DataFormatError, 'duplicated barcodes: cell0'),
    case('obs duplicated', 'obs.csv', duplicate_rows, DataFormatError, 'duplicated barcodes (first column)'),
    case('obs missing a barcode', 'obs.csv', edit(lambda t: t.rstrip('\n').rsplit('\n', 1)[0] + '\n'), BarcodeMismatchError, '1 barcodes have no row in obs.csv'),
    case('obs semicolon-delimited', 'obs.csv', resep(',', ';'), DataFormatError, "first line contains [';']"),
]

def test_10x_valid_exact(tmp_path):
    import scipy.io
    write_toy_10x(tmp_path)
    r = read_10x_reference(tmp_path)
    with gzip.open(tmp_path/'matrix.mtx.gz') as f: ref = scipy.io.mmread(f).toarray().T
    np.testing.assert_array_equal(r.X.toarray(), ref); assert r.X.dtype == np.float32
    _roundtrip(r, tmp_path)

def test_10x_counts_above_2_24_stay_exact(tmp_path):
    write_toy_10x(tmp_path)
    big = np.ones((4, 7), np.int64); big[0, 0] = 2**24 + 1; big[1, 2] = 123_456_789
    _mtx(big)(tmp_path/'matrix.mtx.gz')
    r = read_10x_reference(tmp_path)
    assert r.X.dtype == np.float64 and r.X[0, 0] == 2**24 + 1 and r.X[2, 1] == 123_456_789
    assert int(np.float32(2**24 + 1)) != 2**24 + 1   # what float32 would have lost

def test_10x_names_read_exactly_as_written(tmp_path):
    "Names pandas would read as missing ('NA', 'nan', 'null') are names here."
    write_toy_10x(tmp_path); edit(lambda t: t.replace('G1\tG1', 'G1\tNA').replace('G2\tG2', 'G2\tnan'))(tmp_path/'features.tsv.gz')
    assert list(read_10x_reference(tmp_path).var_names) == ['G0', 'NA', 'nan', 'G3']

@pytest.mark.parametrize('file,mutate,error,words', TENX_FAULTS)
def test_10x_faults(tmp_path, file, mutate, error, words):
    write_toy_10x(tmp_path); mutate(tmp_path/file)
    with pytest.raises(error) as e: read_10x_reference(tmp_path)
    _check(e, tmp_path/file, words)

# ---------------------------------------------------------------- CosMx
def write_cosmx(root:Path):
    import tifffile
    for d in ('CellLabels', 'CellComposite'): (root/d).mkdir(parents=True, exist_ok=True)
    tx = pd.DataFrame({'fov': [1, 1, 1, 1, 1, 1], 'cell_ID': [1, 1, 2, 2, 0, 1],
                       'x_local_px': [1.5, 2.5, 6.5, 7.5, 4., 1.], 'y_local_px': [1.5, 2.5, 6.5, 7.5, 4., 2.],
                       'target': ['A', 'B', 'A', 'NegPrb1', 'A', 'A'], 'CellComp': 0})
    tx.to_csv(root/'Run_tx_file.csv', index=False)
    mask = np.zeros((10, 10), np.uint16); mask[:5, :5] = 1; mask[5:, 5:] = 2
    tifffile.imwrite(root/'CellLabels'/'CellLabels_F001.tif', mask)
    (root/'CellComposite'/'CellComposite_F001.jpg.aux.xml').write_text('<PAMDataset><GeoTransform> 0, 1, 0, 0, 0, 1</GeoTransform></PAMDataset>')
    return root

def _tif(array):
    def m(p):
        import tifffile; tifffile.imwrite(p, array)
    return m

COSMX_FAULTS = [
    case('transcripts absent', 'Run_tx_file.csv', delete, FileNotFoundError, 'no *_tx_file.csv'),
    case('two transcript files', 'Run_tx_file.csv', lambda p: shutil.copy(p, p.with_name('Other_tx_file.csv')), DataFormatError, '2 transcript tables'),
    case('transcripts empty', 'Run_tx_file.csv', empty, UnreadableFileError, 'empty file'),
    case('transcripts not UTF-8', 'Run_tx_file.csv', not_utf8, UnreadableFileError, 'UnicodeDecodeError'),
    case('transcripts semicolon-delimited', 'Run_tx_file.csv', resep(',', ';'), DataFormatError, "first line contains [';']"),
    case('transcripts column missing', 'Run_tx_file.csv', table(lambda d: d.drop(columns='target')), DataFormatError, "lacks columns ['target']"),
    case('transcripts last line cut', 'Run_tx_file.csv', cut_last_line, DataFormatError, 'rows 5'),
    case('transcripts NaN target', 'Run_tx_file.csv', table(lambda d: d.assign(target=['A', None, 'A', 'NegPrb1', 'A', 'A'])), DataFormatError, '1 rows have no target'),
    case('transcripts every row twice', 'Run_tx_file.csv', duplicate_rows, DataFormatError, '6 rows repeat an earlier row exactly'),
    case('transcripts cell_ID not integer', 'Run_tx_file.csv', table(lambda d: d.assign(cell_ID=[1, 1.5, 2, 2, 0, 1])), DataFormatError, 'not whole numbers', 'rows 1'),
    case('transcripts NaN coordinate', 'Run_tx_file.csv', table(lambda d: d.assign(x_local_px=[1.5, np.nan, 6.5, 7.5, 4., 1.])), DataFormatError, 'x_local_px', 'rows 1'),
    case('transcripts no cell', 'Run_tx_file.csv', table(lambda d: d.assign(cell_ID=0)), DataFormatError, 'no transcript is assigned'),
    case('mask absent', 'CellLabels/CellLabels_F001.tif', delete, FileNotFoundError, 'CellLabels_F*.tif'),
    case('mask truncated TIFF', 'CellLabels/CellLabels_F001.tif', truncate, UnreadableFileError, 'CosMx label mask'),
    case('mask not integers', 'CellLabels/CellLabels_F001.tif', _tif(np.full((10, 10), 0.5, np.float32)), DataFormatError, 'non-integer'),
    case('mask RGB', 'CellLabels/CellLabels_F001.tif', _tif(np.zeros((10, 10, 3), np.uint8)), DataFormatError, 'expected (H, W)'),
    case('mask negative ids', 'CellLabels/CellLabels_F001.tif', _tif(np.full((10, 10), -1, np.int32)), DataFormatError, 'outside 0..2**31-1'),
    case('mask FOV not in name', 'CellLabels/CellLabels_F001.tif', lambda p: p.rename(p.with_name('CellLabels_Fxyz.tif')), DataFormatError, 'FOV number'),
    case('GeoTransform not numbers', 'CellComposite/CellComposite_F001.jpg.aux.xml', edit(lambda t: t.replace(' 0, 1, 0', ' a, b, c')), DataFormatError, 'GeoTransform is not 6 numbers'),
    case('GeoTransform zero pixel', 'CellComposite/CellComposite_F001.jpg.aux.xml', edit(lambda t: t.replace('0, 0, 1<', '0, 0, 0<')), DataFormatError, 'non-zero pixel sizes'),
]

def test_cosmx_valid_exact(tmp_path):
    a = read_cosmx(write_cosmx(tmp_path))
    assert list(a.obs_names) == ['1_1', '1_2'] and list(a.var_names) == ['A', 'B']
    np.testing.assert_array_equal(a.X.toarray(), [[2, 1], [1, 0]])         # NegPrb and cell 0 out
    np.testing.assert_array_equal(a.obs['n_negprobe'], [0, 1])
    np.testing.assert_allclose(a.obsm['spatial'], [[5 / 3, 2], [7, 7]])
    np.testing.assert_array_equal(a.uns['cosmx']['masks']['1']['mask'][[0, 9], [0, 9]], [1, 2])
    _roundtrip(a, tmp_path)

def test_cosmx_columns_read_by_name(tmp_path):
    write_cosmx(tmp_path); table(lambda d: d[d.columns[::-1]])(tmp_path/'Run_tx_file.csv')
    np.testing.assert_array_equal(read_cosmx(tmp_path).X.toarray(), [[2, 1], [1, 0]])

@pytest.mark.parametrize('file,mutate,error,words', COSMX_FAULTS)
def test_cosmx_faults(tmp_path, file, mutate, error, words):
    write_cosmx(tmp_path); mutate(tmp_path/file)
    with pytest.raises(error) as e: read_cosmx(tmp_path)
    renamed = tmp_path/'CellLabels'/'CellLabels_Fxyz.tif'
    _check(e, renamed if renamed.exists() else tmp_path/file, words)

# ---------------------------------------------------------------- MERFISH (RCTD vignette layout)
def write_merfish(root:Path):
    for d in ('spatial', 'reference'): (root/d).mkdir(parents=True, exist_ok=True)
    pd.DataFrame({'c1': [1, 0, 2], 'c2': [0, 3, 1]}, index=['G1', 'G2', 'G3']).to_csv(root/'spatial'/'counts.csv')
    pd.DataFrame({'x': [1.5, 2.5], 'y': [-3., -4.]}, index=['c1', 'c2']).to_csv(root/'spatial'/'coords.csv')
    pd.DataFrame({'r1': [5, 1, 0], 'r2': [0, 2, 2], 'r3': [1, 1, 1]}, index=['G1', 'G2', 'G3']).to_csv(root/'reference'/'counts.csv')
    pd.DataFrame({'x': ['Astro', 'Neuron', 'Astro']}, index=['r1', 'r2', 'r3']).to_csv(root/'reference'/'cell_types.csv')
    return root

MERFISH_FAULTS = [
    case('counts absent', 'spatial/counts.csv', delete, FileNotFoundError, 'MERFISH counts not found'),
    case('counts semicolon-delimited', 'spatial/counts.csv', resep(',', ';'), DataFormatError, "first line contains [';']"),
    case('counts empty', 'spatial/counts.csv', empty, UnreadableFileError, 'empty file'),
    case('counts not UTF-8', 'spatial/counts.csv', not_utf8, UnreadableFileError, 'UnicodeDecodeError'),
    case('counts last line cut', 'spatial/counts.csv', cut_last_line, DataFormatError, 'missing (NaN)'),
    case('counts not numbers', 'spatial/counts.csv', edit(lambda t: t.replace('G2,0,3', 'G2,zero,3')), DataFormatError, 'not numbers', 'zero'),
    case('counts not integers', 'spatial/counts.csv', edit(lambda t: t.replace('G2,0,3', 'G2,0.5,3')), DataFormatError, 'not integers'),
    case('counts duplicated gene', 'spatial/counts.csv', edit(lambda t: t.replace('G3,', 'G1,')), DataFormatError, 'duplicated gene names', 'G1'),
    case('counts duplicated cell', 'spatial/counts.csv', edit(lambda t: t.replace(',c2', ',c1', 1)), DataFormatError, 'duplicated cell ids (header)', 'c1'),
    case('coords column missing', 'spatial/coords.csv', table(lambda d: d.drop(columns='y'), index_col=0), DataFormatError, "lacks columns ['y']"),
    case('coords NaN', 'spatial/coords.csv', table(lambda d: d.assign(x=[np.nan, 2.5]), index_col=0), DataFormatError, 'cells (x, y) are missing'),
    case('coords duplicated cell', 'spatial/coords.csv', duplicate_rows, DataFormatError, 'duplicated cell ids'),
    case('coords miss a cell', 'spatial/coords.csv', table(lambda d: d.iloc[:1], index_col=0), BarcodeMismatchError, '1 MERFISH cells have no coordinates: c2'),
    case('types miss a cell', 'reference/cell_types.csv', table(lambda d: d.iloc[:2], index_col=0), BarcodeMismatchError, 'r3'),
    case('types missing value', 'reference/cell_types.csv', table(lambda d: d.assign(x=['Astro', None, 'Astro']), index_col=0), DataFormatError, 'missing type: r2'),
    case('types two columns', 'reference/cell_types.csv', table(lambda d: d.assign(other=1), index_col=0), DataFormatError, "a 'cell_type' column"),
]

def test_merfish_valid_exact(tmp_path):
    spatial, ref = read_merfish_rctd(write_merfish(tmp_path))
    np.testing.assert_array_equal(spatial.X.toarray(), [[1, 0, 2], [0, 3, 1]])
    np.testing.assert_array_equal(spatial.obsm['spatial'], [[1.5, -3], [2.5, -4]])
    assert ref.obs['cell_type'].tolist() == ['Astro', 'Neuron', 'Astro']
    _roundtrip(spatial, tmp_path); _roundtrip(ref, tmp_path)
    one = read_merfish_spatial(tmp_path); assert isinstance(one, ad.AnnData) and (one.X != spatial.X).nnz == 0
    assert read_merfish_reference(tmp_path).obs['cell_type'].tolist() == ['Astro', 'Neuron', 'Astro']

def test_merfish_coords_read_by_name(tmp_path):
    write_merfish(tmp_path); table(lambda d: d[['y', 'x']], index_col=0)(tmp_path/'spatial'/'coords.csv')   # y before x
    np.testing.assert_array_equal(read_merfish_rctd(tmp_path)[0].obsm['spatial'], [[1.5, -3], [2.5, -4]])

@pytest.mark.parametrize('file,mutate,error,words', MERFISH_FAULTS)
def test_merfish_faults(tmp_path, file, mutate, error, words):
    write_merfish(tmp_path); mutate(tmp_path/file)
    with pytest.raises(error) as e: read_merfish_rctd(tmp_path)
    _check(e, tmp_path/file, words)

# ---------------------------------------------------------------- Xenium (raw XOA output)
def write_xenium(root:Path, fmt='csv'):
    nuc = pd.DataFrame({'cell_id': [1, 1, 1, 2, 2, 2], 'vertex_x': [0, 4, 4, 10, 14, 14.], 'vertex_y': [0, 0, 4, 10, 10, 14.]})
    tx = pd.DataFrame({'cell_id': [1, 1, 2, -1, 1, 2], 'overlaps_nucleus': [1, 0, 1, 0, 1, 1],
                       'feature_name': ['GeneA', 'GeneA', 'GeneB', 'GeneA', 'NegControlProbe_1', 'GeneB'],
                       'x_location': [1, 2, 11, 30, 2, 12.], 'y_location': [1, 1, 11, 30, 1, 12.], 'qv': [30, 25, 40, 30, 30, 10]})
    if fmt == 'parquet': nuc.to_parquet(root/'nucleus_boundaries.parquet'); tx.to_parquet(root/'transcripts.parquet')
    else: nuc.to_csv(root/'nucleus_boundaries.csv', index=False); tx.to_csv(root/'transcripts.csv', index=False)
    (root/'experiment.xenium').write_text(json.dumps({'pixel_size': 0.5}))
    return root

XENIUM_FAULTS = [
    case('transcripts absent', 'transcripts.csv', delete, FileNotFoundError, 'transcripts not found'),
    case('transcripts empty', 'transcripts.csv', empty, UnreadableFileError, 'empty file'),
    case('transcripts not UTF-8', 'transcripts.csv', not_utf8, UnreadableFileError, 'UnicodeDecodeError'),
    case('transcripts semicolon-delimited', 'transcripts.csv', resep(',', ';'), DataFormatError, "first line contains [';']"),
    case('transcripts column missing', 'transcripts.csv', table(lambda d: d.drop(columns='qv')), XeniumFormatError, "lacks columns ['qv']"),
    case('transcripts NaN cell id', 'transcripts.csv', table(lambda d: d.assign(cell_id=[1, np.nan, 2, -1, 1, 2])), XeniumFormatError, '1 cell ids are missing (NaN)'),
    case('transcripts NaN position', 'transcripts.csv', table(lambda d: d.assign(x_location=[1, np.nan, 11, 30, 2, 12.])), DataFormatError, 'x_location'),
    case('transcripts qv not numbers', 'transcripts.csv', table(lambda d: d.assign(qv=[30, 'high', 40, 30, 30, 10])), XeniumFormatError, 'non-numeric qv'),
    case('transcripts last line cut', 'transcripts.csv', cut_last_line, DataFormatError, 'rows 5'),
    case('transcripts no cell', 'transcripts.csv', table(lambda d: d.assign(cell_id=-1)), XeniumFormatError, 'no transcript'),
    case('transcripts listed twice', 'transcripts.csv', table(lambda d: d.assign(transcript_id=[1, 2, 3, 4, 5, 1])), DataFormatError, '1 duplicated transcript ids', 'counted twice'),
    case('ids match no nucleus', 'nucleus_boundaries.csv', table(lambda d: d.assign(cell_id=d.cell_id.map({1: 'aaa-1', 2: 'bbb-1'}))), BarcodeMismatchError, 'no cell of transcripts.csv has a nucleus'),
    case('boundaries NaN cell id', 'nucleus_boundaries.csv', table(lambda d: d.assign(cell_id=[1, 1, np.nan, 2, 2, 2])), XeniumFormatError, 'cell ids are missing'),
    case('boundaries NaN vertex', 'nucleus_boundaries.csv', table(lambda d: d.assign(vertex_x=[0, np.nan, 4, 10, 14, 14.])), XeniumFormatError, 'not finite'),
    case('boundaries two vertices', 'nucleus_boundaries.csv', table(lambda d: d.iloc[1:]), XeniumFormatError, 'fewer than 3 vertices'),
    case('boundaries column missing', 'nucleus_boundaries.csv', table(lambda d: d.drop(columns='vertex_y')), XeniumFormatError, "lacks columns ['vertex_y']"),
    case('experiment not JSON', 'experiment.xenium', edit(lambda t: t[:-2]), UnreadableFileError, 'experiment.xenium'),
    case('experiment no pixel size', 'experiment.xenium', edit(lambda t: '{"run": 1}'), XeniumFormatError, "'pixel_size'"),
]
XENIUM_PARQUET_FAULTS = [
    case('transcripts truncated parquet', 'transcripts.parquet', truncate, UnreadableFileError, 'transcripts (parquet)'),
    case('transcripts empty parquet', 'transcripts.parquet', empty, UnreadableFileError, 'empty file'),
    case('transcripts no rows', 'transcripts.parquet', parquet(lambda d: d.iloc[:0]), XeniumFormatError, 'no rows'),
    case('boundaries truncated parquet', 'nucleus_boundaries.parquet', truncate, UnreadableFileError, 'boundary table'),
]

def test_xenium_valid_exact(tmp_path):
    a = read_xenium(write_xenium(tmp_path))
    assert list(a.obs_names) == ['1', '2'] and list(a.var_names) == ['GeneA', 'GeneB']
    np.testing.assert_array_equal(a.X.toarray(), [[2, 0], [0, 1]])   # qv 10, control and unassigned dropped
    np.testing.assert_allclose(a.obsm['spatial'], [[8 / 3, 4 / 3], [38 / 3, 34 / 3]])
    _roundtrip(a, tmp_path)

def test_xenium_cell_without_nucleus_gets_transcript_centroid(tmp_path):
    write_xenium(tmp_path); table(lambda d: d[d.cell_id == 1])(tmp_path/'nucleus_boundaries.csv')
    with pytest.warns(UserWarning, match='1 of 2 cells have no nucleus polygon'): a = read_xenium(tmp_path)
    assert a.obs['has_nucleus'].tolist() == [True, False]
    np.testing.assert_allclose(a.obsm['spatial'][1], [11, 11])       # its one kept transcript
    assert np.isfinite(a.obsm['spatial']).all()

def test_xenium_float_ids_read_as_integers(tmp_path):
    write_xenium(tmp_path); table(lambda d: d.assign(cell_id=d.cell_id.astype(float)))(tmp_path/'nucleus_boundaries.csv')
    assert read_xenium(tmp_path).obs['has_nucleus'].all()

@pytest.mark.parametrize('file,mutate,error,words', XENIUM_FAULTS)
def test_xenium_faults(tmp_path, file, mutate, error, words):
    write_xenium(tmp_path); mutate(tmp_path/file)
    with pytest.raises(error) as e: read_xenium(tmp_path)
    _check(e, tmp_path/file, words)

@pytest.mark.parametrize('file,mutate,error,words', XENIUM_PARQUET_FAULTS)
def test_xenium_parquet_faults(tmp_path, file, mutate, error, words):
    write_xenium(tmp_path, 'parquet'); mutate(tmp_path/file)
    with pytest.raises(error) as e: read_xenium(tmp_path)
    _check(e, tmp_path/file, words)

# ---------------------------------------------------------------- alignment affine
ALIGNMENT_FAULTS = [
    case('absent', 'align.csv', delete, FileNotFoundError, 'alignment matrix not found'),
    case('empty', 'align.csv', empty, UnreadableFileError, 'empty file'),
    case('2x2', 'align.csv', lambda p: p.write_text('1,0\n0,1\n'), XeniumFormatError, '3x3'),
    case('NaN entry', 'align.csv', lambda p: p.write_text('2,0,5\n0,,-3\n0,0,1\n'), DataFormatError, 'alignment rows are missing', 'rows 1'),
    case('not numbers', 'align.csv', lambda p: p.write_text('2,0,5\n0,two,-3\n0,0,1\n'), DataFormatError, 'alignment rows are missing'),
    case('semicolon-delimited', 'align.csv', lambda p: p.write_text('2;0;5\n0;2;-3\n0;0;1\n'), DataFormatError, "first line contains [';']"),
    case('singular', 'align.csv', lambda p: p.write_text('1,1,0\n1,1,0\n0,0,1\n'), XeniumFormatError, 'invertible'),
]

def test_alignment_valid_exact(tmp_path):
    (tmp_path/'align.csv').write_text('2,0,5\n0,2,-3\n0,0,1\n')
    np.testing.assert_array_equal(read_alignment(tmp_path/'align.csv'), [[2, 0, 5], [0, 2, -3], [0, 0, 1]])

@pytest.mark.parametrize('file,mutate,error,words', ALIGNMENT_FAULTS)
def test_alignment_faults(tmp_path, file, mutate, error, words):
    (tmp_path/'align.csv').write_text('2,0,5\n0,2,-3\n0,0,1\n'); mutate(tmp_path/file)
    with pytest.raises(error) as e: read_alignment(tmp_path/'align.csv')
    _check(e, tmp_path/file, words)

# ---------------------------------------------------------------- HEST-1k nucleus polygons and transcripts
def write_hest_seg(root:Path):
    import shapely
    polys = [shapely.box(0, 0, 4, 2), shapely.MultiPolygon([shapely.box(10, 10, 11, 11), shapely.box(20, 20, 23, 23)])]
    pd.DataFrame({'geometry': shapely.to_wkb(polys)}, index=pd.Index([7, 9], name='cell_id')).to_parquet(root/'seg.parquet')
    pd.DataFrame({'cell_id': [7, 7, 9, -1], 'feature_name': ['A', 'NegControlProbe_1', 'A', 'B'], 'he_x': [1, 2, 21, 40.],
                  'he_y': [1, 1, 21, 40.], 'qv': [30, 30, 10, 30]}).to_parquet(root/'tx.parquet')
    return root

def _geoms(values): return parquet(lambda d: d.assign(geometry=values))
HEST_SEG_FAULTS = [
    case('absent', 'seg.parquet', delete, FileNotFoundError, 'HEST nucleus segmentation not found'),
    case('truncated parquet', 'seg.parquet', truncate, UnreadableFileError, 'HEST nucleus segmentation'),
    case('empty', 'seg.parquet', empty, UnreadableFileError, 'empty file'),
    case('no geometry', 'seg.parquet', parquet(lambda d: d.drop(columns='geometry').assign(x=1)), XeniumFormatError, "no 'geometry'"),
    case('geometry not WKB', 'seg.parquet', _geoms([b'abc', b'def']), XeniumFormatError, 'not WKB'),
    case('null geometry', 'seg.parquet', lambda p: pd.read_parquet(p).assign(geometry=[pd.read_parquet(p).geometry.iloc[0], None]).to_parquet(p), XeniumFormatError, '1 cells have no polygon (null, empty or not a polygon): 9'),
    case('duplicated ids', 'seg.parquet', lambda p: pd.read_parquet(p).set_axis(pd.Index([7, 7], name='cell_id')).to_parquet(p), DataFormatError, 'duplicated cell ids: 7'),
]
HEST_TX_FAULTS = [
    case('NaN position', 'tx.parquet', parquet(lambda d: d.assign(he_x=[1, np.nan, 21, 40.])), DataFormatError, 'he_x', 'rows 1'),
    case('column missing', 'tx.parquet', parquet(lambda d: d.drop(columns='he_y')), XeniumFormatError, "lacks columns ['he_y']"),
    case('qv not numbers', 'tx.parquet', parquet(lambda d: d.assign(qv=['30', 'x', '10', '30'])), XeniumFormatError, 'non-numeric qv'),
    case('NaN cell id', 'tx.parquet', parquet(lambda d: d.assign(cell_id=[7, np.nan, 9, -1])), XeniumFormatError, 'cell ids are missing'),
    case('truncated parquet', 'tx.parquet', truncate, UnreadableFileError, 'HEST transcripts'),
    case('transcripts listed twice', 'tx.parquet', parquet(lambda d: d.assign(transcript_id=[10, 11, 10, 12])), DataFormatError, '1 duplicated transcript ids', 'counted twice'),
]

def test_hest_seg_and_transcripts_valid_exact(tmp_path):
    write_hest_seg(tmp_path)
    seg = read_hest_nucleus_seg(tmp_path/'seg.parquet')
    assert sorted(seg.cell_id.unique()) == ['7', '9'] and seg[seg.cell_id == '9'].vertex_x.min() == 20.
    tx = read_hest_transcripts(tmp_path/'tx.parquet')
    assert tx.cell_id.tolist() == ['7', '-1'] and tx.feature_name.tolist() == ['A', 'B']   # control and qv 10 dropped

@pytest.mark.parametrize('file,mutate,error,words', HEST_SEG_FAULTS)
def test_hest_seg_faults(tmp_path, file, mutate, error, words):
    write_hest_seg(tmp_path); mutate(tmp_path/file)
    with pytest.raises(error) as e: read_hest_nucleus_seg(tmp_path/'seg.parquet')
    _check(e, tmp_path/file, words)

@pytest.mark.parametrize('file,mutate,error,words', HEST_TX_FAULTS)
def test_hest_transcripts_faults(tmp_path, file, mutate, error, words):
    write_hest_seg(tmp_path); mutate(tmp_path/file)
    with pytest.raises(error) as e: read_hest_transcripts(tmp_path/'tx.parquet')
    _check(e, tmp_path/file, words)

# ---------------------------------------------------------------- MoNuSeg
XML = '''<Annotations MicronsPerPixel="0.25"><Annotation><Regions>
<Region Id="1"><Vertices><Vertex X="2" Y="2"/><Vertex X="8" Y="2"/><Vertex X="8" Y="6"/><Vertex X="2" Y="6"/></Vertices></Region>
</Regions></Annotation></Annotations>'''

def write_monuseg(root:Path, image=None):
    import tifffile
    img = np.random.default_rng(0).integers(0, 255, (12, 12, 3), dtype=np.uint8) if image is None else image
    tifffile.imwrite(root/'t.tif', img); (root/'t.xml').write_text(XML)
    return img

MONUSEG_FAULTS = [
    case('image absent', 't.tif', delete, FileNotFoundError, 'MoNuSeg image not found'),
    case('image truncated TIFF', 't.tif', truncate, UnreadableFileError, 'MoNuSeg image (TIFF)'),
    case('image empty', 't.tif', empty, UnreadableFileError, 'MoNuSeg image'),
    case('image float', 't.tif', _tif(np.random.default_rng(0).random((12, 12, 3)).astype(np.float32)), DataFormatError, 'dtype float32, expected uint8'),
    case('image uint16', 't.tif', _tif(np.full((12, 12, 3), 4000, np.uint16)), DataFormatError, 'dtype uint16'),
    case('image two channels', 't.tif', _tif(np.zeros((12, 12, 2), np.uint8)), DataFormatError, 'has shape (12, 12, 2)'),
    case('xml absent', 't.xml', delete, FileNotFoundError, 'MoNuSeg annotation not found'),
    case('xml truncated', 't.xml', edit(lambda t: t[:len(t) // 2]), UnreadableFileError, 'ImageScope XML'),
    case('xml no regions', 't.xml', edit(lambda t: t.split('<Region ')[0] + '</Regions></Annotation></Annotations>'), DataFormatError, 'no <Region>'),
    case('xml vertex without X', 't.xml', edit(lambda t: t.replace('X="8" Y="2"', 'Y="2"')), DataFormatError, 'numeric X/Y'),
    case('xml no pixel size', 't.xml', edit(lambda t: t.replace(' MicronsPerPixel="0.25"', '')), DataFormatError, 'MicronsPerPixel'),
    case('xml empty', 't.xml', empty, UnreadableFileError, 'ImageScope XML'),
    case('xml not XML', 't.xml', garbage, UnreadableFileError, 'ImageScope XML'),
]

def test_monuseg_default_mpp_only_when_header_lacks_it(tmp_path):
    write_monuseg(tmp_path)
    assert read_monuseg(tmp_path/'t.tif', tmp_path/'t.xml', default_mpp=0.5)[2] == 0.25    # the header wins
    edit(lambda t: t.replace(' MicronsPerPixel="0.25"', ''))(tmp_path/'t.xml')
    assert read_monuseg(tmp_path/'t.tif', tmp_path/'t.xml', default_mpp=0.5)[2] == 0.5

def test_lzw_tiff_read_without_imagecodecs(tmp_path):
    from PIL import Image
    img = np.random.default_rng(0).integers(0, 255, (12, 12, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path/'t.tif', compression='tiff_lzw'); (tmp_path/'t.xml').write_text(XML)
    np.testing.assert_array_equal(read_monuseg(tmp_path/'t.tif', tmp_path/'t.xml')[0], img)

# ---------------------------------------------------------------- CPM-15
README = 'Image Name\t\tMagnification\n------------\t-------------\nimage01.png \t\t20x\nimage02.png\t\t\t40x\n'

def write_cpm15(root:Path):
    from PIL import Image
    rgba = np.dstack([np.arange(6, dtype=np.uint8).reshape(2, 3) * 40] * 3 + [np.full((2, 3), 255, np.uint8)])
    Image.fromarray(rgba, 'RGBA').save(root/'image01.png')
    (root/'image01_mask.txt').write_text('3 2\n0\n1\n1\n2\n0\n0\n'); (root/'README_training.txt').write_text(README)
    return rgba

def _cpm(root): return read_cpm15(root/'image01.png', root/'image01_mask.txt', read_cpm15_magnifications(root/'README_training.txt')['image01'])

CPM15_FAULTS = [
    case('image absent', 'image01.png', delete, FileNotFoundError, 'CPM-15 image not found'),
    case('image empty', 'image01.png', empty, UnreadableFileError, 'empty file'),
    case('image truncated PNG', 'image01.png', truncate, UnreadableFileError, 'CPM-15 image (PNG)'),
    case('image not an image', 'image01.png', garbage, UnreadableFileError, 'CPM-15 image (PNG)'),
    case('mask absent', 'image01_mask.txt', delete, FileNotFoundError, 'CPM-15 mask not found'),
    case('mask empty', 'image01_mask.txt', empty, UnreadableFileError, 'empty file'),
    case('mask header not W H', 'image01_mask.txt', edit(lambda t: t.replace('3 2', '3 x 2', 1)), DataFormatError, "must be 'W H'"),
    case('mask too few labels', 'image01_mask.txt', edit(lambda t: t.rsplit('0', 1)[0]), DataFormatError, 'the file holds 5'),
    case('mask label not an integer', 'image01_mask.txt', edit(lambda t: t.replace('\n2\n', '\n2.5\n')), DataFormatError, "found '2.5'"),
    case('mask negative label', 'image01_mask.txt', edit(lambda t: t.replace('\n2\n', '\n-2\n')), DataFormatError, 'must be >= 0'),
    case('mask shape differs from image', 'image01_mask.txt', edit(lambda t: t.replace('3 2', '2 3', 1)), MaskShapeError, 'the mask is 2 x 3'),
    case('README without magnifications', 'README_training.txt', edit(lambda t: 'no table here\n'), DataFormatError, 'no magnification table'),
    case('README absent', 'README_training.txt', delete, FileNotFoundError, 'CPM-15 README not found'),
]

def test_cpm15_valid_exact(tmp_path):
    rgba = write_cpm15(tmp_path)
    img, inst, mpp = _cpm(tmp_path)
    np.testing.assert_array_equal(img, rgba[..., :3]); np.testing.assert_array_equal(inst, [[0, 1, 1], [2, 0, 0]])
    assert mpp == 0.5 and inst.dtype == np.int32
    assert read_cpm15_magnifications(tmp_path/'README_training.txt') == {'image01': 20, 'image02': 40}

@pytest.mark.parametrize('file,mutate,error,words', CPM15_FAULTS)
def test_cpm15_faults(tmp_path, file, mutate, error, words):
    write_cpm15(tmp_path); mutate(tmp_path/file)
    with pytest.raises(error) as e: _cpm(tmp_path)
    _check(e, tmp_path/file, words)

def test_real_cpm15_masks_match_images():
    src = shared_data_dir('cpm15')
    if src is None: pytest.skip("../shared/data/cpm15 not present on this machine")
    mags = read_cpm15_magnifications(src/'README_training.txt'); assert len(mags) == 15
    n = sum(len(np.unique(read_cpm15(src/f'{k}.png', src/f'{k}_mask.txt', m)[1])) - 1 for k, m in mags.items())
    assert n == 2905   # PROVENANCE.txt: 2,905 nuclei

def test_monuseg_valid_exact(tmp_path):
    img = write_monuseg(tmp_path)
    out, inst, mpp = read_monuseg(tmp_path/'t.tif', tmp_path/'t.xml')
    np.testing.assert_array_equal(out, img); assert mpp == 0.25 and inst.dtype == np.int32
    assert (inst == 1).sum() == 6 * 4 and inst[4, 5] == 1 and inst[0, 0] == 0

@pytest.mark.parametrize('kind', ['grayscale', 'rgba'])
def test_monuseg_grayscale_and_rgba_converted_exactly(tmp_path, kind):
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 255, (12, 12), dtype=np.uint8)
    img = grey if kind == 'grayscale' else np.dstack([grey, grey // 2, grey // 3, np.full_like(grey, 255)])
    write_monuseg(tmp_path, img)
    out, inst, _ = read_monuseg(tmp_path/'t.tif', tmp_path/'t.xml')
    expect = np.dstack([grey] * 3) if kind == 'grayscale' else img[..., :3]
    assert out.shape == (12, 12, 3) and out.dtype == np.uint8; np.testing.assert_array_equal(out, expect)

@pytest.mark.parametrize('file,mutate,error,words', MONUSEG_FAULTS)
def test_monuseg_faults(tmp_path, file, mutate, error, words):
    write_monuseg(tmp_path); mutate(tmp_path/file)
    with pytest.raises(error) as e: read_monuseg(tmp_path/'t.tif', tmp_path/'t.xml')
    _check(e, tmp_path/file, words)

# ---------------------------------------------------------------- patches (crop_patches, spot_patches, read_full_image)
IMG = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
PATCH_FAULTS = [
    pytest.param(lambda: crop_patches(IMG, [[np.nan, 4.]], 4), DataFormatError, '1 patch centres are missing', id='NaN centre'),
    pytest.param(lambda: crop_patches(IMG, [[4., 4., 1.]], 4), DataFormatError, 'centres must be (n, 2)', id='centres not (n, 2)'),
    pytest.param(lambda: crop_patches(IMG.astype(float), [[4., 4.]], 4), DataFormatError, 'uint8', id='float image'),
    pytest.param(lambda: crop_patches(IMG[..., 0], [[4., 4.]], 4), DataFormatError, '(H, W, 3)', id='grey image'),
    pytest.param(lambda: crop_patches(IMG, [[4., 4.]], 0), DataFormatError, 'positive integer', id='zero size'),
    pytest.param(lambda: crop_patches(IMG, [[1., 1.]], 4), PatchOutOfBoundsError, 'reach outside the 12x10 image', id='outside without pad'),
]

@pytest.mark.parametrize('call,error,words', PATCH_FAULTS)
def test_crop_patches_faults(call, error, words):
    with pytest.raises(error, match=None) as e: call()
    assert words in str(e.value), str(e.value)

@pytest.mark.parametrize('center', [(-3., 8.), (-3., 2.), (14., -2.), (11., 9.)])
def test_crop_patches_pad_is_white_never_wrapped(center):
    "Against a slow reference: every pixel is the image pixel at its position, or white outside."
    size = 8; p, tl = crop_patches(IMG, [center], size, pad=True)
    for r in range(size):
        for c in range(size):
            y, x = tl[0, 1] + r, tl[0, 0] + c
            expect = IMG[y, x] if 0 <= y < 10 and 0 <= x < 12 else [255, 255, 255]
            np.testing.assert_array_equal(p[0, r, c], expect)

def test_spot_patches_image_faults(tmp_path):
    a = read_her2st(write_her2st(tmp_path), 'Z1', lowres=0)
    b = a.copy(); b.uns['spatial']['Z1']['scalefactors']['microns_per_pixel'] = 0
    with pytest.raises(DataFormatError, match='microns_per_pixel'): spot_patches(b, patch_um=4, out_px=4)
    with pytest.raises(DataFormatError, match="no library 'Z9'"): spot_patches(a, patch_um=4, out_px=4, library_id='Z9')
    with pytest.raises(DataFormatError, match="obsm\\['spatial'\\]"): spot_patches(ad.AnnData(a.X), patch_um=4)
    spot_patches(a, patch_um=4 * 0.69, out_px=4)            # 4 px patches of the 64 px image, exact crops at 4 px
    from PIL import Image
    full = np.asarray(Image.open(tmp_path/'images'/'Z1.jpg').convert('RGB'))
    np.testing.assert_array_equal(a.obsm['patches'][0], full[3:7, 8:12])   # centre (10, 5): rows 3..6, columns 8..11
    truncate(tmp_path/'images'/'Z1.jpg')
    with pytest.raises(UnreadableFileError, match='Z1.jpg'): spot_patches(a, patch_um=4, out_px=4)
    (tmp_path/'images'/'Z1.jpg').unlink()
    with pytest.raises(FileNotFoundError, match='Z1.jpg'): read_full_image(a)

# ---------------------------------------------------------------- real files (copies in tmp_path), when present
def _copy(src:Path, dst:Path):
    "Copy a dataset folder as symlinks, so a case can replace the one file it damages."
    for p in src.rglob('*'):
        if p.is_file(): (dst/p.relative_to(src)).parent.mkdir(parents=True, exist_ok=True); (dst/p.relative_to(src)).symlink_to(p)
    return dst

def _own(p:Path): data = p.read_bytes(); p.unlink(); p.write_bytes(data)   # turn the symlink into a private copy

REAL = [
    pytest.param('her2st', 'counts/C6.tsv.gz', truncate, lambda d: read_her2st(d, 'C6', lowres=0), UnreadableFileError, 'her2st counts', id='her2st counts truncated gzip'),
    pytest.param('her2st', 'spots/C6_selection.tsv', resep('\t', ','), lambda d: read_her2st(d, 'C6', lowres=0), DataFormatError, 'first line contains', id='her2st spots comma-delimited'),
    pytest.param('her2st', 'images/C6.jpg', truncate, lambda d: read_her2st(d, 'C6'), UnreadableFileError, 'her2st H&E image', id='her2st image truncated JPEG'),
    pytest.param('wu2021_brca_scrna_CID4465', 'features.tsv.gz', resep('\t', ','), read_10x_reference, DataFormatError, 'first line contains', id='10x features comma-delimited'),
    pytest.param('wu2021_brca_scrna_CID4465', 'matrix.mtx.gz', truncate, read_10x_reference, UnreadableFileError, '10x matrix', id='10x matrix truncated'),
    pytest.param('cosmx_nsclc_lung12_mini', 'Lung12_tx_file.csv', duplicate_rows, read_cosmx, DataFormatError, 'repeat an earlier row', id='cosmx rows twice'),
    pytest.param('cosmx_nsclc_lung12_mini', 'Lung12_tx_file.csv', cut_last_line, read_cosmx, DataFormatError, 'missing', id='cosmx last line cut'),
    pytest.param('merfish_hypothalamus_rctd', 'spatial/counts.csv', resep(',', ';'), read_merfish_rctd, DataFormatError, "first line contains [';']", id='merfish counts semicolons'),
    pytest.param('xenium_mouse_brain_mini', 'sample1/transcripts.csv', edit(lambda t: t.replace(',67500,', ',,', 1)), lambda d: read_xenium(d/'sample1'), XeniumFormatError, 'cell ids are missing', id='xenium NaN cell id'),
    pytest.param('monuseg_subset', 'TCGA-A6-6782-01A-01-BS1.tif', truncate, lambda d: read_monuseg(d/'TCGA-A6-6782-01A-01-BS1.tif', d/'TCGA-A6-6782-01A-01-BS1.xml'), UnreadableFileError, 'MoNuSeg image', id='monuseg truncated TIFF'),
]

@pytest.mark.parametrize('dataset,file,mutate,reader,error,words', REAL)
def test_real_file_faults(tmp_path, dataset, file, mutate, reader, error, words):
    src = shared_data_dir(dataset)
    if src is None: pytest.skip(f"../shared/data/{dataset} not present on this machine")
    d = _copy(src, tmp_path/dataset); _own(d/file); mutate(d/file)
    with pytest.raises(error) as e: reader(d)
    _check(e, d/file, (words,))

REAL_VALID = [
    pytest.param('her2st', lambda d: read_her2st(d, 'C6'), id='her2st C6'),
    pytest.param('wu2021_brca_scrna_CID4465', read_10x_reference, id='10x Wu et al.'),
    pytest.param('cosmx_nsclc_lung12_mini', read_cosmx, id='cosmx'),
    pytest.param('merfish_hypothalamus_rctd', lambda d: read_merfish_rctd(d, drop_zero=True)[0], id='merfish spatial'),   # 4 reference cells without counts
    pytest.param('xenium_mouse_brain_mini', lambda d: read_xenium(d/'sample1'), id='xenium sample1'),
]

@pytest.mark.parametrize('dataset,reader', REAL_VALID)
def test_real_results_survive_write_h5ad(tmp_path, dataset, reader):
    src = shared_data_dir(dataset)
    if src is None: pytest.skip(f"../shared/data/{dataset} not present on this machine")
    with warnings.catch_warnings(): warnings.simplefilter('ignore'); a = reader(src)
    _roundtrip(a, tmp_path)
    if 'spatial' in a.obsm: assert np.isfinite(np.asarray(a.obsm['spatial'], float)).all()

# ---------------------------------------------------------------- the count for the issue's closing note
FAULTS = {'read_her2st': HER2ST_FAULTS, 'read_hest (+ read_hest_patches)': HEST_FAULTS, 'read_10x_reference': TENX_FAULTS,
          'read_cosmx (+ read_cosmx_masks)': COSMX_FAULTS, 'read_merfish_rctd (spatial + reference)': MERFISH_FAULTS,
          'read_xenium (+ boundaries, transcripts, pixel size)': XENIUM_FAULTS + XENIUM_PARQUET_FAULTS, 'read_alignment': ALIGNMENT_FAULTS,
          'read_hest_nucleus_seg': HEST_SEG_FAULTS, 'read_hest_transcripts': HEST_TX_FAULTS, 'read_monuseg': MONUSEG_FAULTS, 'read_cpm15 (+ mask, magnifications)': CPM15_FAULTS,
          'crop_patches / spot_patches': PATCH_FAULTS}

def test_fault_kind_counts(capsys):
    "Each reader's fault list parametrises a test of this module (so every counted fault runs), with >= 5 distinct cases."
    used = {id(m.args[1]) for f in globals().values() if callable(f) and getattr(f, '__name__', '').startswith('test_')
            for m in getattr(f, 'pytestmark', []) if m.name == 'parametrize' and len(m.args) > 1}
    cases = {id(c) for f in globals().values() if callable(f) and getattr(f, '__name__', '').startswith('test_')
             for m in getattr(f, 'pytestmark', []) if m.name == 'parametrize' and len(m.args) > 1 and id(m.args[1]) in used for c in m.args[1]}
    assert [k for k, v in FAULTS.items() if not all(id(c) in cases for c in v)] == []
    ids = lambda v: [c.id for c in v if hasattr(c, 'id')]
    assert all(len(set(ids(v))) == len(ids(v)) for v in FAULTS.values()), 'duplicate case names'
    counts = {k: len(v) for k, v in FAULTS.items()}
    with capsys.disabled(): print('\nfault kinds per reader:', counts, 'total', sum(counts.values()))
    assert all(n >= 5 for n in counts.values())

# ---------------------------------------------------------------- a file cut short anywhere in it (issue 19)
def _cut_at(frac):
    "Keep the first `frac` of the bytes; in a text file the cut falls inside a line (a cut exactly at a line end is"
    " indistinguishable from a shorter complete table, see test_text_table_cut_at_a_line_end_is_not_detectable)."
    def m(p):
        raw = gzip.decompress(p.read_bytes()) if p.suffix == '.gz' else p.read_bytes()
        k = max(1, int(len(raw) * frac))
        while k > 1 and raw[k - 1:k] in (b'\n', b'\r'): k -= 1
        if p.suffix == '.gz' and frac < 1: p.write_bytes(gzip.compress(raw[:k]))   # a complete gzip of a cut text
        else: p.write_bytes(raw[:k])
    return m

def _hest(t): write_toy_hest(t); return lambda: read_hest(t, 'TOY')
def _her2st(t): write_her2st(t); return lambda: read_her2st(t, 'Z1')
def _tenx(t): write_toy_10x(t); return lambda: read_10x_reference(t)
def _cosmx(t): write_cosmx(t); return lambda: read_cosmx(t)
def _merfish(t): write_merfish(t); return lambda: read_merfish_rctd(t)
def _xenium(t, fmt='csv'): write_xenium(t, fmt); return lambda: read_xenium(t)
def _align(t): (t/'align.csv').write_text('2,0,5\n0,2,-3\n0,0,1\n'); return lambda: read_alignment(t/'align.csv')
def _seg(t): write_hest_seg(t); return lambda: (read_hest_nucleus_seg(t/'seg.parquet'), read_hest_transcripts(t/'tx.parquet'))
def _monuseg(t): write_monuseg(t); return lambda: read_monuseg(t/'t.tif', t/'t.xml')
def _cpm15(t): write_cpm15(t); return lambda: _cpm(t)

CUT_FILES = [  # (reader, its files): every file each reader opens
    ('read_hest', _hest, ['st/TOY.h5ad', 'patches/TOY.h5', 'metadata/TOY.json']),
    ('read_her2st', _her2st, ['counts/Z1.tsv.gz', 'spots/Z1_selection.tsv', 'images/Z1.jpg', 'clusters/Z1-cluster-annotation.tsv.gz',
                              'deconv_stereoscope/major/Z1-proportion.tsv', 'clusters/motivation.csv']),
    ('read_10x_reference', _tenx, ['matrix.mtx.gz', 'features.tsv.gz', 'barcodes.tsv.gz', 'obs.csv']),
    ('read_cosmx', _cosmx, ['Run_tx_file.csv', 'CellLabels/CellLabels_F001.tif', 'CellComposite/CellComposite_F001.jpg.aux.xml']),
    ('read_merfish_rctd', _merfish, ['spatial/counts.csv', 'spatial/coords.csv', 'reference/counts.csv', 'reference/cell_types.csv']),
    ('read_xenium (csv)', _xenium, ['transcripts.csv', 'nucleus_boundaries.csv', 'experiment.xenium']),
    ('read_xenium (parquet)', lambda t: _xenium(t, 'parquet'), ['transcripts.parquet', 'nucleus_boundaries.parquet']),
    ('read_alignment', _align, ['align.csv']),
    ('read_hest_nucleus_seg / read_hest_transcripts', _seg, ['seg.parquet', 'tx.parquet']),
    ('read_monuseg', _monuseg, ['t.tif', 't.xml']),
    ('read_cpm15', _cpm15, ['image01.png', 'image01_mask.txt', 'README_training.txt']),
]
CUTS = (0.05, 0.3, 0.6, 0.9)

def _same(a, b):
    "Exactly the same result: AnnData (X, names, obsm), arrays, tuples / lists of them, DataFrames."
    if isinstance(a, (tuple, list)): return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, ad.AnnData):
        X, Y = (m.toarray() if sp.issparse(m) else np.asarray(m) for m in (a.X, b.X))
        return (X.shape == Y.shape and (X == Y).all() and list(a.obs_names) == list(b.obs_names) and list(a.var_names) == list(b.var_names)
                and all(np.array_equal(np.asarray(a.obsm[k]), np.asarray(b.obsm[k])) for k in a.obsm))
    if isinstance(a, pd.DataFrame): return a.equals(b)
    return np.array_equal(np.asarray(a), np.asarray(b))

@pytest.mark.parametrize('reader,setup,file', [pytest.param(r, s, f, id=f'{r}: {f}') for r, s, files in CUT_FILES for f in files])
def test_file_cut_short_anywhere(tmp_path, reader, setup, file):
    "Cut at 5%, 30%, 60% and 90% of its bytes (inside a line for text), each file each reader opens gives a named error"
    " naming it, or exactly the uncut result (a PNG that loses only its end marker still holds every pixel)."
    (tmp_path/'ref').mkdir()
    with warnings.catch_warnings(): warnings.simplefilter('ignore'); ref = setup(tmp_path/'ref')()
    for frac in CUTS:
        d = tmp_path/str(frac); d.mkdir(); read = setup(d); _cut_at(frac)(d/file)
        try:
            with warnings.catch_warnings(): warnings.simplefilter('ignore'); got = read()
        except (DataFormatError, FileNotFoundError) as e:
            assert (d/file).name in str(e), f"cut at {frac}: {type(e).__name__}: {e}"
        else: assert _same(got, ref), f"cut at {frac}: read without error, result differs"

def test_text_table_cut_at_a_line_end_is_not_detectable(tmp_path):
    "The limit of the check above: a plain table cut exactly after a line break reads as a shorter table (no footer to"
    " compare with). Readers that cross-check files catch it: here the her2st counts lose spot 3x1, still in the spot file."
    write_her2st(tmp_path)
    edit(lambda t: t.split('3x1')[0])(tmp_path/'counts'/'Z1.tsv.gz')
    assert read_her2st(tmp_path, 'Z1').n_obs == 2

# ---------------------------------------------------------------- pixel sizes: missing, zero, negative, NaN, a bool, a unit in a string
from stlearn_nb.data import check_pixel_size, check_anndata
BAD_PIXEL_SIZES = [('0.5um', 'without its unit'), (0, 'must be > 0'), (-0.5, 'must be > 0'), (True, 'must be a number')]

@pytest.mark.parametrize('value,words', BAD_PIXEL_SIZES + [(float('nan'), 'must be > 0'), (None, 'must be a number')])
def test_check_pixel_size(value, words):
    with pytest.raises(DataFormatError, match=words): check_pixel_size(value, 'f.json')
    assert check_pixel_size(0.5, 'f') == 0.5 and check_pixel_size(np.float32(2), 'f') == 2.0

@pytest.mark.parametrize('value,words', BAD_PIXEL_SIZES)
def test_pixel_size_hest_metadata(tmp_path, value, words):
    write_toy_hest(tmp_path); (tmp_path/'metadata'/'TOY.json').write_text(json.dumps({'pixel_size_um_estimated': value}))
    with pytest.raises(DataFormatError) as e: read_hest(tmp_path, 'TOY')
    _check(e, tmp_path/'metadata'/'TOY.json', ('pixel_size_um_estimated', words))

@pytest.mark.parametrize('value,words', BAD_PIXEL_SIZES)
def test_pixel_size_xenium(tmp_path, value, words):
    write_xenium(tmp_path); (tmp_path/'experiment.xenium').write_text(json.dumps({'pixel_size': value}))
    with pytest.raises(XeniumFormatError) as e: read_xenium(tmp_path)
    _check(e, tmp_path/'experiment.xenium', ('pixel_size', words))

@pytest.mark.parametrize('value,words', [('0.5um', 'no numeric MicronsPerPixel'), ('0', 'must be > 0'), ('-0.5', 'must be > 0'), ('nan', 'must be > 0')])
def test_pixel_size_monuseg(tmp_path, value, words):
    write_monuseg(tmp_path); edit(lambda t: t.replace('MicronsPerPixel="0.25"', f'MicronsPerPixel="{value}"'))(tmp_path/'t.xml')
    with pytest.raises(DataFormatError) as e: read_monuseg(tmp_path/'t.tif', tmp_path/'t.xml')
    _check(e, tmp_path/'t.xml', ('MicronsPerPixel', words))

@pytest.mark.parametrize('value', ['0.5um', 0, -0.5, float('nan'), None, True])
def test_pixel_size_spot_patches(tmp_path, value):
    a = read_her2st(write_her2st(tmp_path), 'Z1', lowres=0); sf = a.uns['spatial']['Z1']['scalefactors']
    if value is None: del sf['microns_per_pixel']
    else: sf['microns_per_pixel'] = value
    with pytest.raises(DataFormatError, match='microns_per_pixel'): spot_patches(a, patch_um=4, out_px=4)

# ---------------------------------------------------------------- annotations or masks that do not fit their image
def test_monuseg_outline_outside_the_image(tmp_path):
    write_monuseg(tmp_path); edit(lambda t: t.replace('X="8" Y="2"', 'X="50" Y="2"'))(tmp_path/'t.xml')
    with pytest.raises(DataFormatError) as e: read_monuseg(tmp_path/'t.tif', tmp_path/'t.xml')
    _check(e, tmp_path/'t.xml', ('1 of 1 outlines lie outside the 12x12 image',))
    write_monuseg(tmp_path); edit(lambda t: t.replace('X="2"', 'X="-9"').replace('X="8"', 'X="-3"'))(tmp_path/'t.xml')   # wholly left of it
    with pytest.raises(DataFormatError, match='outlines lie outside'): read_monuseg(tmp_path/'t.tif', tmp_path/'t.xml')

def test_monuseg_outline_a_few_px_past_the_edge_is_read(tmp_path):
    "Real MoNuSeg outlines reach up to 3 px past the tile edge: read, clipped to the image, exactly as the slow reference."
    write_monuseg(tmp_path); edit(lambda t: t.replace('X="2" Y="2"', 'X="-2.9" Y="2"').replace('X="2" Y="6"', 'X="-2.9" Y="6"'))(tmp_path/'t.xml')
    _, inst, _ = read_monuseg(tmp_path/'t.tif', tmp_path/'t.xml')
    assert set(np.unique(inst)) == {0, 1} and (inst[3:6, 0:7] == 1).all()       # the outline's inside, from column 0
    assert (inst[:2] == 0).all() and (inst[7:] == 0).all() and (inst[:, 9:] == 0).all()

def test_cosmx_mask_smaller_than_its_transcripts(tmp_path):
    write_cosmx(tmp_path); _tif(np.ones((4, 4), np.uint16))(tmp_path/'CellLabels'/'CellLabels_F001.tif')
    with pytest.raises(DataFormatError) as e: read_cosmx(tmp_path)
    _check(e, tmp_path/'CellLabels'/'CellLabels_F001.tif', ('FOV 1 transcripts of Run_tx_file.csv fall outside its 4x4 px mask',))

# (also: CPM-15 mask of another size, CPM15_FAULTS 'mask shape differs from image'; HEST patches missing spots, HEST_FAULTS)

# ---------------------------------------------------------------- empty or absent folders where samples / tiles are expected
def _encode(d):
    from stlearn_nb.features import encode_hest_samples, load_encoder
    return encode_hest_samples(d, load_encoder('stain'), d/'out')
def _monuseg_tiles(d):
    from stlearn_nb.hestseg import monuseg_tiles
    return monuseg_tiles(d)
FOLDER_READERS = [('read_hest', lambda d: read_hest(d, 'S1')), ('read_10x_reference', read_10x_reference), ('read_cosmx', read_cosmx),
                  ('read_cosmx_masks', read_cosmx_masks), ('read_merfish_rctd', read_merfish_rctd), ('read_xenium', read_xenium),
                  ('read_her2st', lambda d: read_her2st(d, 'A1')), ('encode_hest_samples', _encode), ('monuseg_tiles', _monuseg_tiles)]

@pytest.mark.parametrize('state', ['empty', 'absent'])
@pytest.mark.parametrize('name,reader', FOLDER_READERS, ids=[n for n, _ in FOLDER_READERS])
def test_empty_or_absent_folder(tmp_path, name, reader, state):
    d = tmp_path/'data'
    if state == 'empty': d.mkdir()
    with pytest.raises(FileNotFoundError) as e: reader(d)
    assert str(d) in str(e.value), str(e.value)

# ---------------------------------------------------------------- AnnData with zero observations; a DataFrame where an AnnData is expected
def _mean_prototypes(a):
    from stlearn_nb.cpnn import mean_prototypes
    return mean_prototypes(a, 'label')
def _add_patch_features(a):
    from stlearn_nb.features import add_patch_features, load_encoder
    return add_patch_features(a, load_encoder('stain'))
def _ppi_de(a):
    from stlearn_nb.ppi_de import ppi_de
    ok = ad.AnnData(np.ones((4, 3), np.float32), obs=pd.DataFrame({'label': ['A', 'B', 'A', 'B']}, index=[f'k{i}' for i in range(4)]))
    return ppi_de(a, ok, 'label', 'label', 'A', 'B', layer=None)
ANNDATA_TAKERS = [('spot_patches', lambda a: spot_patches(a, patch_um=4)), ('read_full_image', read_full_image),
                  ('cpnn.mean_prototypes', _mean_prototypes), ('features.add_patch_features', _add_patch_features), ('ppi_de', _ppi_de)]

@pytest.mark.parametrize('name,call', ANNDATA_TAKERS, ids=[n for n, _ in ANNDATA_TAKERS])
def test_dataframe_where_anndata_expected(name, call):
    df = pd.DataFrame(np.ones((4, 3)), columns=['g0', 'g1', 'g2'], index=[f'c{i}' for i in range(4)]).assign(label=['A', 'B', 'A', 'B'])
    with pytest.raises(TypeError, match='expected an AnnData, got a DataFrame'): call(df)

@pytest.mark.parametrize('name,call', [t for t in ANNDATA_TAKERS if t[0] != 'read_full_image'], ids=[n for n, _ in ANNDATA_TAKERS if n != 'read_full_image'])
def test_anndata_with_zero_observations(name, call):
    a = ad.AnnData(np.zeros((0, 3), np.float32), obs=pd.DataFrame({'label': pd.Series([], dtype=str)}, index=pd.Index([], dtype=str)))
    with pytest.raises(DataFormatError, match='has 0 observations'): call(a)

def test_check_anndata():
    a = ad.AnnData(np.ones((2, 1)))
    assert check_anndata(a, 'x') is a and check_anndata(a[:0], 'x', min_obs=0).n_obs == 0
    with pytest.raises(TypeError, match='got a ndarray'): check_anndata(np.ones((2, 1)), 'x')

# ---------------------------------------------------------------- alignment matrices of the wrong shape (file or array)
@pytest.mark.parametrize('text,shape', [('1,0,0,0\n0,1,0,0\n0,0,1,0\n', '(3, 4)'), ('1,0,0\n0,1,0\n0,0,1\n0,0,1\n', '(4, 3)'), ('1,0,0\n', '(1, 3)')])
def test_alignment_file_wrong_shape(tmp_path, text, shape):
    (tmp_path/'align.csv').write_text(text)
    with pytest.raises(XeniumFormatError) as e: read_alignment(tmp_path/'align.csv')
    _check(e, tmp_path/'align.csv', ('3x3', shape))

@pytest.mark.parametrize('matrix', [np.eye(2), np.eye(4), np.ones((3, 4)), [[1, 0, 0], [0, 1]], np.array([[1, 0, np.nan], [0, 1, 0], [0, 0, 1]])],
                         ids=['2x2', '4x4', '3x4', 'ragged', 'NaN'])
def test_alignment_array_wrong_shape(tmp_path, matrix):
    write_xenium(tmp_path)
    with pytest.raises(XeniumFormatError, match='alignment'): read_xenium(tmp_path, alignment=matrix)

def test_alignment_array_equals_file(tmp_path):
    write_xenium(tmp_path); (tmp_path/'align.csv').write_text('2,0,5\n0,2,-3\n0,0,1\n')
    a, b = read_xenium(tmp_path, alignment=tmp_path/'align.csv'), read_xenium(tmp_path, alignment=[[2, 0, 5], [0, 2, -3], [0, 0, 1]])
    np.testing.assert_array_equal(a.obsm['spatial'], b.obsm['spatial'])

# ---------------------------------------------------------------- patches centred far outside the image, with padding
@pytest.mark.parametrize('center', [(1e9, 1e9), (-1e12, 5.), (5., 3e10)])
def test_crop_patches_far_outside_with_pad_is_refused_and_small(center):
    "Before: np.pad by the distance (a 10.8 TiB allocation for real coordinates in the wrong unit), then an all-white patch"
    " returned as data (issue 28); now refused, naming how many, before any allocation."
    import tracemalloc
    tracemalloc.start()
    with pytest.raises(PatchOutOfBoundsError, match=r'1 of 2 patches have no image pixel in their 4px patch \(wholly outside the 12x10 image\)'): crop_patches(IMG, [center, (5., 5.)], 4, pad=True)
    peak = tracemalloc.get_traced_memory()[1]; tracemalloc.stop()
    assert peak < 1e6
    p, _ = crop_patches(IMG, [(5., 5.)], 4, pad=True); np.testing.assert_array_equal(p[0], IMG[3:7, 3:7])

def test_crop_patches_absurd_or_no_centres():
    with pytest.raises(PatchOutOfBoundsError, match='not pixel coordinates'): crop_patches(IMG, [[1e15, 0.]], 4, pad=True)
    p, tl = crop_patches(IMG, np.zeros((0, 2)), 4)
    assert p.shape == (0, 4, 4, 3) and tl.shape == (0, 2)

# ---------------------------------------------------------------- labels missing (NaN) in curated data; genes in another order (ppi_de)
def _de_data(seed=0):
    rng = np.random.default_rng(seed)
    def mk(n, start):
        y = rng.choice(['A', 'B', 'C'], n)
        return ad.AnnData(rng.poisson(np.where(y[:, None] == 'B', 4., 2.), (n, 4)).astype(np.float32),
                          obs=pd.DataFrame({'auto': y, 'cur': y}, index=[f'c{i}' for i in range(start, start + n)]),
                          var=pd.DataFrame(index=[f'g{j}' for j in range(4)]))
    return mk(300, 0), mk(60, 1000)

@pytest.mark.parametrize('key', ['cur', 'auto'])
def test_ppi_de_missing_curated_labels(key):
    from stlearn_nb.ppi_de import ppi_de, DEInputError
    U, C = _de_data(); C.obs[key] = C.obs[key].astype(object); C.obs.iloc[[1, 4], C.obs.columns.get_loc(key)] = np.nan
    with pytest.raises(DEInputError, match=f"2 of 60 cells have no '{key}' label \\(NaN\\), e.g. \\['c1001', 'c1004'\\]"):
        ppi_de(U, C, 'auto', 'cur', 'A', 'B', layer=None)

def test_ppi_de_genes_in_another_order_give_the_same_table():
    from stlearn_nb.ppi_de import ppi_de
    U, C = _de_data()
    same = ppi_de(U, C, 'auto', 'cur', 'A', 'B', layer=None)
    other = ppi_de(U, C[:, ['g3', 'g1', 'g0', 'g2']].copy(), 'auto', 'cur', 'A', 'B', layer=None)
    pd.testing.assert_frame_equal(same.sort_index(), other.sort_index())

# ---------------------------------------------------------------- curation log: ids and labels (issue 19)
def _curation_log():
    try: from stlearn_nb.ppi_curation import CurationLog, CurationLogError   # where it lives once split from ppi_de
    except ImportError: from stlearn_nb.ppi_de import CurationLog, CurationLogError
    return CurationLog, CurationLogError

def test_curation_log_ids_with_tab_round_trip(tmp_path):
    CurationLog, _ = _curation_log()
    ids = ['a\tb', 'c,d', 'e"f']
    with CurationLog(tmp_path/'log.csv', ids, [0, 1, 2]) as log:
        for c in ids: log.record(c, 'accept')
    with CurationLog(tmp_path/'log.csv', ids, [0, 1, 2]) as log: assert list(log.decisions) == ids and log.pending == []

def test_curation_log_refuses_ids_with_line_breaks(tmp_path):
    CurationLog, _ = _curation_log()
    with pytest.raises(ValueError, match='1 cell ids contain a line break'): CurationLog(tmp_path/'log.csv', ['a', 'b\nc'], [0, 1])
    assert not (tmp_path/'log.csv').exists() and not (tmp_path/'log.csv.lock').exists()

def test_curation_log_reopened_with_other_automated_labels(tmp_path):
    CurationLog, CurationLogError = _curation_log()
    with CurationLog(tmp_path/'log.csv', ['a', 'b'], [0, 1]) as log: log.record('a', 'accept'); log.record('b', 'reject')
    with pytest.raises(CurationLogError, match="2 cells were logged with other automated labels than given now, e.g. a: 0 in the log, 1 now"):
        CurationLog(tmp_path/'log.csv', ['a', 'b'], [1, 0])
    with CurationLog(tmp_path/'log.csv', ['a', 'b'], [0, 1]) as log: assert log.curated_labels().tolist() == [0, 2]   # the same labels: read

@pytest.mark.parametrize('labels,words', [([0, 1], 'one label per cell'), (['cancer', 'B', 'A'], "['cancer'] are neither codes"),
                                          ([0, 3, 1], '1 auto_labels lie outside 0..2'), ([0.5, 1, 0], 'integer codes'), ([-1, 0, 1], 'outside 0..2')])
def test_curation_log_labels_wrong(tmp_path, labels, words):
    CurationLog, _ = _curation_log()
    with pytest.raises(ValueError, match=re.escape(words)): CurationLog(tmp_path/'log.csv', ['a', 'b', 'c'], labels, class_names=('A', 'B', 'other'))

def test_curation_log_label_names_are_their_codes(tmp_path):
    CurationLog, _ = _curation_log()
    with CurationLog(tmp_path/'n.csv', ['a', 'b', 'c'], ['B', 'A', 'other'], class_names=('A', 'B', 'other')) as log:
        assert log.auto.tolist() == [1, 0, 2]

# ---------------------------------------------------------------- references: genes in another set or order, missing labels (cpnn, ppi_de)
def _reference(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.poisson(3, (30, 4)).astype(np.float32) + 1
    return ad.AnnData(X, obs=pd.DataFrame({'celltype_major': rng.choice(['Cancer Epithelial', 'T-cells', 'B-cells'], 30)}, index=[f'r{i}' for i in range(30)]),
                      var=pd.DataFrame(index=['G0', 'G1', 'G2', 'G3']), layers={'counts': X.copy()})

def test_reference_genes_missing_from_the_reference():
    from stlearn_nb.cpnn import her2st_reference_prototypes
    with pytest.raises(DataFormatError, match=re.escape("1 of 3 genes are not in the reference: GX")): her2st_reference_prototypes(_reference(), ['G0', 'GX', 'G2'])

def test_reference_genes_in_the_query_order():
    "The prototypes follow the query's gene order, each column the same as in the reference's own order."
    from stlearn_nb.cpnn import mean_prototypes
    ref = _reference()
    a, b = mean_prototypes(ref, 'celltype_major'), mean_prototypes(ref[:, ['G3', 'G1', 'G0', 'G2']].copy(), 'celltype_major')
    assert list(b.columns) == ['G3', 'G1', 'G0', 'G2']; pd.testing.assert_frame_equal(a[b.columns], b)

def test_reference_labels_missing():
    from stlearn_nb.cpnn import mean_prototypes, regression_prototypes
    ref = _reference(); ref.obs['celltype_major'] = ref.obs['celltype_major'].astype(object); ref.obs.iloc[2, 0] = np.nan
    for f in (mean_prototypes, regression_prototypes):
        with pytest.raises(DataFormatError, match=re.escape('1 of 30 cells have no label (NaN), e.g. rows [2]')): f(ref, 'celltype_major')

def test_ppi_de_genes_differ_in_set():
    from stlearn_nb.ppi_de import ppi_de, DEInputError
    U, C = _de_data(); C.var_names = ['g0', 'g1', 'g2', 'other']
    with pytest.raises(DEInputError, match=re.escape("different genes: 1 only in automated ['g3'], 1 only in curated ['other']")):
        ppi_de(U, C, 'auto', 'cur', 'A', 'B', layer=None)

# ---------------------------------------------------------------- the issue's classes of bad input: readers covered and tests (closing note of issue 19)
BAD_INPUT_CLASSES = {
    'file cut short anywhere (compressed or plain; counts, transcripts, tables, images)': (
        [r for r, _, _ in CUT_FILES], ['test_file_cut_short_anywhere', 'test_text_table_cut_at_a_line_end_is_not_detectable', 'test_her2st_faults',
                                       'test_hest_faults', 'test_10x_faults', 'test_cosmx_faults', 'test_real_file_faults']),
    'pixel size missing, zero, negative, NaN, bool, with a unit': (
        ['read_hest', 'read_xenium', 'read_monuseg', 'spot_patches', 'stlearn-nb segment --mpp'],
        ['test_check_pixel_size', 'test_pixel_size_hest_metadata', 'test_pixel_size_xenium', 'test_pixel_size_monuseg', 'test_pixel_size_spot_patches']),
    'annotations or masks that do not fit their image': (
        ['read_monuseg', 'read_cosmx', 'read_cpm15'], ['test_monuseg_outline_outside_the_image', 'test_monuseg_outline_a_few_px_past_the_edge_is_read',
                                                       'test_cosmx_mask_smaller_than_its_transcripts', 'test_cpm15_faults']),
    'empty or absent folder': ([n for n, _ in FOLDER_READERS], ['test_empty_or_absent_folder']),
    'reference genes differ in set or order; missing (NaN) labels': (
        ['cpnn.her2st_reference_prototypes', 'cpnn.mean_prototypes', 'cpnn.regression_prototypes', 'ppi_de'],
        ['test_reference_genes_missing_from_the_reference', 'test_reference_genes_in_the_query_order', 'test_reference_labels_missing',
         'test_ppi_de_genes_differ_in_set', 'test_ppi_de_genes_in_another_order_give_the_same_table', 'test_ppi_de_missing_curated_labels']),
    'labels as names where codes are expected (and vice versa); ids and labels of different lengths': (
        ['CurationLog'], ['test_curation_log_labels_wrong', 'test_curation_log_label_names_are_their_codes']),
    'curation log reopened with other automated labels; ids with a tab or newline': (
        ['CurationLog'], ['test_curation_log_reopened_with_other_automated_labels', 'test_curation_log_ids_with_tab_round_trip',
                          'test_curation_log_refuses_ids_with_line_breaks']),
    'patches centred far outside the image with padding': (
        ['crop_patches', 'spot_patches'], ['test_crop_patches_far_outside_with_pad_is_refused_and_small', 'test_crop_patches_absurd_or_no_centres',
                                           'test_crop_patches_pad_is_white_never_wrapped']),
    'AnnData with zero observations; DataFrame where AnnData is expected': (
        [n for n, _ in ANNDATA_TAKERS], ['test_anndata_with_zero_observations', 'test_dataframe_where_anndata_expected', 'test_check_anndata']),
    'alignment matrix of the wrong shape': (
        ['read_alignment', 'read_xenium(alignment=array)'], ['test_alignment_file_wrong_shape', 'test_alignment_array_wrong_shape',
                                                              'test_alignment_array_equals_file', 'test_alignment_faults']),
}

def test_bad_input_classes_listed(capsys):
    "Every test the class list names exists here (so the list cannot go stale), and the list is printed for the issue's closing note."
    import inspect, re, stlearn_nb.data, stlearn_nb.hestseg, stlearn_nb.ppi_de
    library = {n: f for m in (stlearn_nb.data, stlearn_nb.hestseg, stlearn_nb.ppi_de) for n, f in vars(m).items() if inspect.isfunction(f)}
    def text(f):   # a test's source, its parameters, and the module helpers it calls (one level)
        src = inspect.getsource(f) + ''.join(repr(m.args) for m in getattr(f, 'pytestmark', []) if m.name == 'parametrize')
        return src + ''.join(inspect.getsource(g) for n, g in globals().items() if inspect.isfunction(g) and n.startswith('_') and n in src)
    for cls, (readers, tests) in BAD_INPUT_CLASSES.items():
        assert readers and all(callable(globals().get(t)) for t in tests), (cls, [t for t in tests if t not in globals()])
        # each named test exercises a listed reader, or a library check that a listed reader calls (e.g. check_pixel_size)
        names = {re.split(r'[(\s]', r)[0].split('.')[-1] for r in readers}
        if 'stlearn-nb' in names: names.add('stlearn_nb.cli')   # a command line: its tests call the CLI module
        reader_src = ''.join(inspect.getsource(library[n]) for n in names if n in library)
        for t in tests:
            src = text(globals()[t])
            helpers = [n for n in library if re.search(rf'\b{n}\(', src) and re.search(rf'\b{n}\(', reader_src)]
            assert any(n in src for n in names) or helpers, (cls, t)
    with capsys.disabled():
        print('\nbad-input classes:'); [print(f'- {c}: {", ".join(r)} ({len(t)} tests)') for c, (r, t) in BAD_INPUT_CLASSES.items()]

# ================================================================ issue 28: no input kills the process or passes silently (readers / data part)
import subprocess, sys, textwrap
from stlearn_nb.data import check_count_rows, check_finite

def _mtx_text(genes=4, cells=7, field='integer', entries=None):
    "A Matrix Market file written by hand: (gene, cell, value) entries, 1-based, the header's sizes as given."
    entries = [(1, c, 1) for c in range(1, cells + 1)] if entries is None else entries
    body = ''.join(f"{r} {c}{'' if field == 'pattern' else f' {v}'}\n" for r, c, v in entries)
    return f"%%MatrixMarket matrix coordinate {field} general\n%written by hand\n{genes} {cells} {len(entries)}\n" + body

def _mtx_file(text): return lambda p: p.write_bytes(gzip.compress(text.encode()))
def _mtx_big_bad_row(p):
    "1.5 million entries (15 MB of text) with a row index past the gene count on line 13: scipy's threaded reader was still"
    " reading the stream when the error closed it (SIGABRT in 3 of 3 runs here before the fix; 500 000 entries: 0 of 2)."
    n_genes, n_cells = 100, 15_000
    r, c = np.divmod(np.arange(n_genes * n_cells), n_cells)
    body = pd.DataFrame({'r': r + 1, 'c': c + 1, 'v': 1}); body.iloc[10, 0] = n_genes + 5
    text = f'%%MatrixMarket matrix coordinate integer general\n{n_genes} {n_cells} {len(body)}\n' + body.to_csv(sep=' ', header=False, index=False)
    p.write_bytes(gzip.compress(text.encode(), 1))

# ---------------------------------------------------------------- process-level crashes: each reader on corrupt input, in a subprocess, many times
CRASH_CASES = [  # (case, setup writing valid files, the reader alone, file to damage, damage, the named error)
    ('read_10x_reference: row index past the gene count', write_toy_10x, read_10x_reference, 'matrix.mtx.gz',
     _mtx_file(_mtx_text(entries=[(9, 1, 3)] + [(1, c, 1) for c in range(2, 8)])), 'DataFormatError'),
    ('read_10x_reference: row index past the gene count, large file', write_toy_10x, read_10x_reference, 'matrix.mtx.gz', _mtx_big_bad_row, 'DataFormatError'),
    ('read_10x_reference: truncated gzip', write_toy_10x, read_10x_reference, 'matrix.mtx.gz', truncate, 'UnreadableFileError'),
    ('read_hest: truncated HDF5 (h5py)', write_toy_hest, lambda t: read_hest(t, 'TOY'), 'patches/TOY.h5', truncate, 'UnreadableFileError'),
    ('read_her2st: truncated JPEG (Pillow)', write_her2st, lambda t: read_her2st(t, 'Z1'), 'images/Z1.jpg', truncate, 'UnreadableFileError'),
    ('read_her2st: truncated gzip table (pandas C reader)', write_her2st, lambda t: read_her2st(t, 'Z1'), 'counts/Z1.tsv.gz', truncate, 'UnreadableFileError'),
    ('read_cosmx: truncated TIFF (tifffile)', write_cosmx, read_cosmx, 'CellLabels/CellLabels_F001.tif', truncate, 'UnreadableFileError'),
    ('read_xenium: truncated parquet (pyarrow)', lambda t: write_xenium(t, 'parquet'), read_xenium, 'transcripts.parquet', truncate, 'UnreadableFileError'),
    ('read_monuseg: truncated TIFF (tifffile)', write_monuseg, lambda t: read_monuseg(t/'t.tif', t/'t.xml'), 't.tif', truncate, 'UnreadableFileError'),
]
CRASH_RUNS, CRASH_READS = 3, 15   # processes for the large file (its abort came in 3 of 3 runs before the fix), reads per process

_CRASH_SCRIPT = textwrap.dedent('''
    import sys, pickle, warnings, gc
    sys.path.insert(0, sys.argv[1]); import test_bad_input as t
    from stlearn_nb.data import DataFormatError
    reader, folder = dict((c[0], c[2]) for c in t.CRASH_CASES)[sys.argv[2]], __import__('pathlib').Path(sys.argv[3])
    names = set()
    for _ in range(int(sys.argv[4])):
        try:
            with warnings.catch_warnings(): warnings.simplefilter('ignore'); reader(folder)
        except (DataFormatError, FileNotFoundError) as e: names.add(type(e).__name__); err = e
        gc.collect()
    del err; gc.collect()
    print('ERRORS', sorted(names), flush=True)
''')

@pytest.mark.parametrize('name,setup,reader,file,mutate,error', [pytest.param(*c, id=c[0]) for c in CRASH_CASES])
def test_corrupt_input_never_kills_the_process(tmp_path, name, setup, reader, file, mutate, error):
    "Before: scipy's threaded Matrix Market reader still read a gzip stream the reader had closed: SIGABRT after the named error."
    setup(tmp_path); mutate(tmp_path/file)
    env = {**__import__('os').environ, 'PYTHONFAULTHANDLER': '1'}
    reads = 2 if 'large file' in name else CRASH_READS
    for run in range(CRASH_RUNS if 'large file' in name else 1):   # the race of the issue: repeated in processes (and reads, above)
        p = subprocess.run([sys.executable, '-c', _CRASH_SCRIPT, str(Path(__file__).parent), name, str(tmp_path), str(reads)],
                           capture_output=True, text=True, timeout=300, env=env)
        assert p.returncode == 0, f"run {run}: exit {p.returncode} (a negative code is a signal: {-p.returncode}), stderr: {p.stderr[-2000:]}"
        assert f"ERRORS ['{error}']" in p.stdout, (p.stdout[-500:], p.stderr[-2000:])

# ---------------------------------------------------------------- values silently changed: a named error instead of a floor, a clamp or a None
def _hest_meta(meta): return lambda t: (write_toy_hest(t), (t/'metadata'/'TOY.json').write_text(json.dumps(meta)))
CHANGED_VALUES = [  # (case, setup, call, file named, error, words)
    ('10x count 2.5 under an integer header (was floored to 2)', lambda t: (write_toy_10x(t), _mtx_file(_mtx_text(entries=[(1, c, 2.5 if c == 3 else 1) for c in range(1, 8)]))(t/'matrix.mtx.gz')),
     read_10x_reference, 'matrix.mtx.gz', DataFormatError, 'the header says integer but 1 values are not whole numbers, e.g. 2.5 at lines 6'),
    ('10x gene_column=5 of 3 (was clamped to the feature type)', write_toy_10x, lambda t: read_10x_reference(t, gene_column=5), 'features.tsv.gz',
     DataFormatError, 'gene_column=5 but the features table has 3 column(s), 0..2'),
    ('10x gene_column=-1', write_toy_10x, lambda t: read_10x_reference(t, gene_column=-1), 'features.tsv.gz', DataFormatError, 'gene_column=-1'),
    ('10x gene_column=True', write_toy_10x, lambda t: read_10x_reference(t, gene_column=True), 'features.tsv.gz', DataFormatError, 'gene_column=True'),
    ('10x one-column features with the default symbol column', lambda t: (write_toy_10x(t), edit(lambda s: ''.join(l.split('\t')[0] + '\n' for l in s.splitlines()))(t/'features.tsv.gz')),
     read_10x_reference, 'features.tsv.gz', DataFormatError, 'gene_column=1 but the features table has 1 column(s), 0..0'),
    ('HEST metadata without a pixel size (was no pixel size, used later as unknown)', _hest_meta({'organ': 'Toy'}), lambda t: read_hest(t, 'TOY'),
     'metadata/TOY.json', DataFormatError, "no pixel size: 'pixel_size_um_estimated' is missing or null"),
    ('HEST metadata with a null pixel size', _hest_meta({'pixel_size_um_estimated': None}), lambda t: read_hest(t, 'TOY'), 'metadata/TOY.json', DataFormatError, 'missing or null'),
    ('HEST metadata not an object', _hest_meta([0.5]), lambda t: read_hest(t, 'TOY'), 'metadata/TOY.json', DataFormatError, 'no pixel size'),
]

@pytest.mark.parametrize('setup,call,file,error,words', [pytest.param(*c[1:], id=c[0]) for c in CHANGED_VALUES])
def test_values_never_silently_changed(tmp_path, setup, call, file, error, words):
    setup(tmp_path)
    with pytest.raises(error) as e: call(tmp_path)
    _check(e, tmp_path/file, (words,))

def test_10x_matrix_market_read_as_scipy_reads_it(tmp_path):
    "The hand-written parser against scipy's reader (run here on a valid file only): integer, real and pattern fields, comments, blank-free body."
    import scipy.io
    rng = np.random.default_rng(0)
    for field in ('integer', 'real', 'pattern'):
        X = sp.random(6, 9, density=0.4, random_state=1, format='coo'); X.data = rng.integers(1, 50, X.nnz).astype(float)
        entries = list(zip(X.row + 1, X.col + 1, X.data.astype(int)))
        write_toy_10x(tmp_path, n_cells=9, n_genes=6); _mtx_file(_mtx_text(6, 9, field, entries))(tmp_path/'matrix.mtx.gz')
        expect = scipy.io.mmread(__import__('io').BytesIO(_mtx_text(6, 9, field, entries).encode())).toarray().T
        ok = expect.sum(1) > 0
        if not ok.all():
            with pytest.raises(ZeroCountsError): read_10x_reference(tmp_path)
        got = read_10x_reference(tmp_path, drop_zero=True) if not ok.all() else read_10x_reference(tmp_path)
        np.testing.assert_array_equal(got.X.toarray(), expect[ok]); assert list(got.obs_names) == [f'cell{i}' for i in np.flatnonzero(ok)]

@pytest.mark.parametrize('text,words', [
    (_mtx_text(4, 7).replace('coordinate', 'array'), "a 10x matrix is 'matrix coordinate integer general'"),
    (_mtx_text(4, 7).replace('general', 'symmetric'), "its header says 'matrix coordinate integer symmetric'"),
    (_mtx_text(4, 7).replace('%%MatrixMarket', '%%Matrix'), 'not a Matrix Market file'),
    (_mtx_text(4, 7).replace('4 7 7\n', '4 7 8\n'), 'announces 8 entries, the file holds 7'),
    (_mtx_text(4, 7).replace('4 7 7\n', '4 7\n'), "no size line 'genes cells entries'"),
    (_mtx_text(4, 7).replace('1 7 1\n', '1 8 1\n'), 'column (cell) index outside 1..7'),
    (_mtx_text(4, 7).replace('1 7 1\n', '0 7 1\n'), 'row (gene) index outside 1..4'),
    (_mtx_text(4, 7).replace('1 7 1\n', '1.5 7 1\n'), 'e.g. line 10: 1.5 7'),
    (_mtx_text(4, 7).replace('1 7 1\n', '1 7\n'), "entries are not 'row column value'"),
], ids=['array', 'symmetric', 'banner', 'entry count', 'size line', 'column past', 'row zero', 'fractional index', 'missing value'])
def test_10x_matrix_market_header_and_entries(tmp_path, text, words):
    write_toy_10x(tmp_path); _mtx_file(text)(tmp_path/'matrix.mtx.gz')
    with pytest.raises(DataFormatError) as e: read_10x_reference(tmp_path)
    _check(e, tmp_path/'matrix.mtx.gz', (words,))

# ---------------------------------------------------------------- rows silently dropped or kept: one rule (data.check_count_rows) in every reader
def _zero_her2st(t): write_her2st(t); edit(lambda s: s.replace('2x1\t1\t4', '2x1\t0\t0'))(t/'counts'/'Z1.tsv.gz')
def _zero_hest(t): write_toy_hest(t); h5ad(lambda a: a.X.__setitem__((2, slice(None)), 0))(t/'st'/'TOY.h5ad')
def _mtx_drop_cell(col):
    "The toy matrix without the entries of one cell (1-based column), the header's entry count lowered to match."
    def fn(text):
        lines = text.rstrip('\n').split('\n'); k = next(i for i, l in enumerate(lines) if not l.startswith('%'))
        body = [l for l in lines[k + 1:] if int(l.split()[1]) != col]; rows, cols, _ = lines[k].split()
        return '\n'.join(lines[:k] + [f'{rows} {cols} {len(body)}'] + body) + '\n'
    return edit(fn)
def _zero_10x(t): write_toy_10x(t); _mtx_drop_cell(4)(t/'matrix.mtx.gz')
def _zero_cosmx(t): write_cosmx(t); table(lambda d: d.assign(target=['A', 'B', 'NegPrb2', 'NegPrb1', 'A', 'A']))(t/'Run_tx_file.csv')   # cell 1_2: probes only
def _zero_xenium(t):   # cell 3: one negative-control transcript, nothing else
    write_xenium(t); table(lambda d: pd.concat([d, pd.DataFrame([{'cell_id': 3, 'overlaps_nucleus': 0, 'feature_name': 'NegControlProbe_2',
                                                                   'x_location': 5., 'y_location': 5., 'qv': 30}])]))(t/'transcripts.csv')
def _zero_merfish_spatial(t): write_merfish(t); edit(lambda s: s.replace('G2,0,3', 'G2,0,0').replace('G3,2,1', 'G3,2,0'))(t/'spatial'/'counts.csv')
def _zero_merfish_ref(t): write_merfish(t); edit(lambda s: s.replace('G2,1,2,1', 'G2,1,0,1').replace('G3,0,2,1', 'G3,0,0,1'))(t/'reference'/'counts.csv')

ZERO_ROWS = [  # (reader, valid files, the same with one row's counts zeroed, read(folder, drop_zero), file named, the zero row, the rows kept)
    ('read_her2st', write_her2st, _zero_her2st, lambda t, z: read_her2st(t, 'Z1', drop_zero=z), 'counts/Z1.tsv.gz', '2x1', ['1x1', '3x1']),
    ('read_hest', write_toy_hest, _zero_hest, lambda t, z: read_hest(t, 'TOY', drop_zero=z), 'st/TOY.h5ad', 'spot2', ['spot0', 'spot1', 'spot3', 'spot4', 'spot5']),
    ('read_10x_reference', write_toy_10x, _zero_10x, lambda t, z: read_10x_reference(t, drop_zero=z), 'matrix.mtx.gz', 'cell3', ['cell0', 'cell1', 'cell2', 'cell4', 'cell5', 'cell6']),
    ('read_cosmx (negative probes only)', write_cosmx, _zero_cosmx, lambda t, z: read_cosmx(t, drop_zero=z), 'Run_tx_file.csv', '1_2', ['1_1']),
    ('read_xenium (control transcripts only)', write_xenium, _zero_xenium, lambda t, z: read_xenium(t, drop_zero=z), 'transcripts.csv', '3', ['1', '2']),
    ('read_merfish_spatial', write_merfish, _zero_merfish_spatial, lambda t, z: read_merfish_spatial(t, drop_zero=z), 'spatial/counts.csv', 'c2', ['c1']),
    ('read_merfish_reference', write_merfish, _zero_merfish_ref, lambda t, z: read_merfish_reference(t, drop_zero=z), 'reference/counts.csv', 'r2', ['r1', 'r3']),
    ('read_merfish_rctd', write_merfish, _zero_merfish_ref, lambda t, z: read_merfish_rctd(t, drop_zero=z)[1], 'reference/counts.csv', 'r2', ['r1', 'r3']),
]

def _dense(X): return X.toarray() if sp.issparse(X) else np.asarray(X)

@pytest.mark.parametrize('valid,setup,read,file,zero,kept', [pytest.param(*c[1:], id=c[0]) for c in ZERO_ROWS])
def test_zero_count_rows_one_rule(tmp_path, valid, setup, read, file, zero, kept):
    "Every reader: a zero-count row raises ZeroCountsError naming it; drop_zero=True drops it with a warning naming it, the other"
    " rows exactly as read from the valid files (before: the CosMx cell vanished and the MERFISH one was kept, without a word)."
    (tmp_path/'v').mkdir(); valid(tmp_path/'v'); ref = read(tmp_path/'v', False)
    (tmp_path/'a').mkdir(); setup(tmp_path/'a')
    with pytest.raises(ZeroCountsError) as e: read(tmp_path/'a', False)
    _check(e, tmp_path/'a'/file, (f'1 ', zero, 'zero total counts', 'drop_zero=True'))
    with pytest.warns(UserWarning, match=f'dropped 1 (spots|cells) with zero total counts: {zero}'): got = read(tmp_path/'a', True)
    assert list(got.obs_names) == kept
    np.testing.assert_array_equal(_dense(got.X), _dense(ref[kept].X)); assert list(got.var_names) == list(ref.var_names)

def test_cosmx_negative_probe_only_cell_counted_not_lost(tmp_path):
    "The kept cell's counts and QC column, by hand: 1_1 has A, B, A (2, 1) and no probe; 1_2 had two probes and nothing else."
    _zero_cosmx(tmp_path)
    with pytest.warns(UserWarning, match='dropped 1 cells'): a = read_cosmx(tmp_path, drop_zero=True)
    np.testing.assert_array_equal(a.X.toarray(), [[2, 1]]); assert list(a.var_names) == ['A', 'B'] and a.obs['n_negprobe'].tolist() == [0]

NO_ROWS = [  # (reader, setup leaving no rows, read, file named)
    ('read_hest: an h5ad with zero spots (was a numpy reshape error)', lambda t: (write_toy_hest(t),
        ad.AnnData(np.zeros((0, 5), np.float32), obsm={'spatial': np.zeros((0, 2))}).write_h5ad(t/'st'/'TOY.h5ad')), lambda t: read_hest(t, 'TOY'), 'st/TOY.h5ad'),
    ('read_10x_reference: every cell dropped', lambda t: (write_toy_10x(t, n_cells=2), _mtx_file(_mtx_text(4, 2, entries=[]))(t/'matrix.mtx.gz')),
     lambda t: read_10x_reference(t, drop_zero=True), 'matrix.mtx.gz'),
    ('read_merfish_spatial: every cell dropped', lambda t: (write_merfish(t), edit(lambda s: s.replace('1,0', '0,0').replace('0,3', '0,0').replace('2,1', '0,0'))(t/'spatial'/'counts.csv')),
     lambda t: read_merfish_spatial(t, drop_zero=True), 'spatial/counts.csv'),
]

@pytest.mark.parametrize('setup,read,file', [pytest.param(*c[1:], id=c[0]) for c in NO_ROWS])
def test_no_rows_is_a_named_error(tmp_path, setup, read, file):
    setup(tmp_path)
    with pytest.raises(DataFormatError) as e: read(tmp_path)
    assert isinstance(e.value, DataFormatError) and not isinstance(e.value, UnreadableFileError)
    _check(e, tmp_path/file, ())
    assert re.search(r'no (spots|cells) at all|all \d+ (spots|cells) have zero total counts', str(e.value)), str(e.value)

def test_check_finite_keeps_zero_rows():
    "An empty (0, 2) array is (0, 2), not a reshape error; a loop over rows agrees on a non-empty one."
    assert check_finite(np.zeros((0, 2)), 'f', 'x').shape == (0, 2) and check_finite([], 'f', 'x').shape == (0, 1)
    v = np.arange(6.).reshape(3, 2); np.testing.assert_array_equal(check_finite(v, 'f', 'x'), np.array([list(r) for r in v]))

# ---------------------------------------------------------------- two tables that disagree: the MERFISH pair on one gene axis, by name
def _ref_genes(fn): return table(fn, index_col=0)
TWO_TABLES = [  # (case, change to reference/counts.csv, genes expected on both axes, words of the warning or None)
    ('reference genes in another order', _ref_genes(lambda d: d.loc[['G3', 'G1', 'G2']]), ['G1', 'G2', 'G3'], None),
    ('reference lacks a gene', _ref_genes(lambda d: d.loc[['G1', 'G3']]), ['G1', 'G3'], 'dropped 1 spatial-only genes (G2) and 0 reference-only genes ()'),
    ('reference has an extra gene, reordered', _ref_genes(lambda d: pd.concat([d, d.loc[['G1']].rename(index={'G1': 'G9'})]).iloc[::-1]), ['G1', 'G2', 'G3'],
     'dropped 0 spatial-only genes () and 1 reference-only genes (G9)'),
]

@pytest.mark.parametrize('change,genes,words', [pytest.param(*c[1:], id=c[0]) for c in TWO_TABLES])
def test_two_tables_share_one_gene_axis(tmp_path, change, genes, words):
    "Each reference column is the same gene's counts as in the reference file, by name (a loop over genes), and the axes match."
    write_merfish(tmp_path); change(tmp_path/'reference'/'counts.csv')
    if words is None:
        with warnings.catch_warnings(): warnings.simplefilter('error'); spatial, ref = read_merfish_rctd(tmp_path)
    else:
        with pytest.warns(UserWarning, match=re.escape(words)): spatial, ref = read_merfish_rctd(tmp_path)
    assert list(spatial.var_names) == list(ref.var_names) == genes
    raw_ref = pd.read_csv(tmp_path/'reference'/'counts.csv', index_col=0); raw_sp = pd.read_csv(tmp_path/'spatial'/'counts.csv', index_col=0)
    for j, g in enumerate(genes):
        np.testing.assert_array_equal(ref.X[:, j].toarray().ravel(), raw_ref.loc[g].to_numpy())
        np.testing.assert_array_equal(spatial.X[:, j].toarray().ravel(), raw_sp.loc[g].to_numpy())

def test_two_tables_without_a_shared_gene(tmp_path):
    write_merfish(tmp_path); _ref_genes(lambda d: d.rename(index=lambda g: g.lower()))(tmp_path/'reference'/'counts.csv')
    with pytest.raises(DataFormatError, match='share no gene: spatial G1, G2, G3, reference g1, g2, g3'): read_merfish_rctd(tmp_path)

# ---------------------------------------------------------------- patches with no image in them: refused, never all-white data
@pytest.mark.parametrize('shift', [(-200., 0.), (0., 500.), (1e6, 1e6)], ids=['left', 'below', 'far'])
def test_patch_without_image_is_refused(tmp_path, shift):
    "crop_patches and spot_patches (pad=True): a patch holding no image pixel is refused naming how many (and which spots);"
    " the loop below is the independent answer for which patches hold at least one pixel of the image."
    a = read_her2st(write_her2st(tmp_path), 'Z1', lowres=0)      # 3 spots on a 64 x 64 image, 4 px patches
    a.obsm['spatial'][1] += shift
    size = 4; H = W = 64
    def holds_image(x, y):
        x0, y0 = int(np.floor(x - size / 2)), int(np.floor(y - size / 2))
        return any(0 <= x0 + i < W and 0 <= y0 + j < H for i in range(size) for j in range(size))
    empty = [not holds_image(*xy) for xy in a.obsm['spatial']]; assert empty == [False, True, False]
    with pytest.raises(PatchOutOfBoundsError, match=r'1 of 3 spots .* no image pixel in their 4px patch .*: 2x1'):
        spot_patches(a, patch_um=size * 0.69, out_px=4, pad=True)
    img = np.zeros((H, W, 3), np.uint8)
    with pytest.raises(PatchOutOfBoundsError, match=r'1 of 3 patches have no image pixel in their 4px patch \(wholly outside the 64x64 image\)'): crop_patches(img, a.obsm['spatial'], size, pad=True)
    p, _ = crop_patches(img, a.obsm['spatial'][[0, 2]], size, pad=True); assert p.shape == (2, 4, 4, 3)

def test_patch_with_one_image_pixel_is_kept():
    "The boundary: a patch whose corner pixel is the image's corner pixel holds image, so it is padded, not refused."
    p, tl = crop_patches(IMG, [[-1., -1.]], 4, pad=True)         # top-left (-3, -3): only pixel (3, 3) of the patch is inside
    assert tl.tolist() == [[-3, -3]] and (p[0, 3, 3] == IMG[0, 0]).all() and (p[0, :3] == 255).all() and (p[0, :, :3] == 255).all()
    with pytest.raises(PatchOutOfBoundsError, match='wholly outside'): crop_patches(IMG, [[-2., -1.]], 4, pad=True)   # top-left x -4: none

# ---------------------------------------------------------------- names vs codes: CurationLog.record takes a class name as a label
@pytest.mark.parametrize('label,code', [('target', 1), ('other', 2), (0, 0), (np.int64(2), 2), (1.0, 1)])
def test_curation_log_record_label_name_or_code(tmp_path, label, code):
    "A name maps to its index in class_names (the independent answer: class_names.index), a code stays; both read back from the CSV."
    CurationLog, _ = _curation_log()
    names = ('reference', 'target', 'other')
    with CurationLog(tmp_path/'log.csv', ['a', 'b'], [0, 0], class_names=names) as log: log.record('a', 'relabel', label)
    assert code == (names.index(label) if isinstance(label, str) else int(label))
    with CurationLog(tmp_path/'log.csv', ['a', 'b'], [0, 0], class_names=names) as log: assert log.curated_labels().tolist() == [code]

@pytest.mark.parametrize('label', ['Target', 'nope', 3, -1, 1.5, True, None])
def test_curation_log_record_label_wrong(tmp_path, label):
    CurationLog, _ = _curation_log()
    with CurationLog(tmp_path/'log.csv', ['a'], [0]) as log:
        with pytest.raises(ValueError, match=re.escape("relabel needs a label: a code 0..2 or a name of class_names ['reference', 'target', 'other'], got")):
            log.record('a', 'relabel', label)
        assert log.decisions == {}

# ---------------------------------------------------------------- issue 28's classes (readers / data part), listed with the others
BAD_INPUT_CLASSES.update({
    'process-level crashes: a reader on a threaded or native parser given corrupt input, in a subprocess, repeated': (
        sorted({c[0].split(':')[0] for c in CRASH_CASES}), ['test_corrupt_input_never_kills_the_process']),
    'values silently changed: a non-integer count under an integer header, a column index out of range, a pixel size missing from metadata': (
        ['read_10x_reference', 'read_hest'], ['test_values_never_silently_changed', 'test_10x_matrix_market_read_as_scipy_reads_it',
                                              'test_10x_matrix_market_header_and_entries']),
    'rows silently dropped or kept: zero-count rows under one rule (data.check_count_rows), no rows at all': (
        [c[0] for c in ZERO_ROWS], ['test_zero_count_rows_one_rule', 'test_cosmx_negative_probe_only_cell_counted_not_lost', 'test_no_rows_is_a_named_error',
                                    'test_check_finite_keeps_zero_rows']),
    'two tables that disagree: reference genes fewer, extra or in another order': (
        ['read_merfish_rctd'], ['test_two_tables_share_one_gene_axis', 'test_two_tables_without_a_shared_gene']),
    'patches with no image in them, even with pad=True': (
        ['crop_patches', 'spot_patches'], ['test_patch_without_image_is_refused', 'test_patch_with_one_image_pixel_is_kept']),
    'names vs codes: a class name as the relabel label': (
        ['CurationLog.record'], ['test_curation_log_record_label_name_or_code', 'test_curation_log_record_label_wrong']),
})

# ---------------------------------------------------------------- command-line values checked before the experiment is imported
SLOW_ARGUMENT_ERRORS = [   # (argv, words of the one error line): values an experiment would refuse only after its 10-30 s import
    (['ppi-sim', '--seed', '-1'], '--seed -1: must be an integer in [0, 2147483647]'),
    (['strank-toy', '--seed', '4294967296'], '--seed 4294967296: must be an integer in [0, 2147483647]'),
    (['cpnn-synth', '--seed', '2147483648'], '--seed 2147483648: must be an integer in [0, 2147483647]'),
    (['ppi-sim', '--set', 'family=nbinom'], "--set family='nbinom': must be one of 'poisson', 'nb'"),
    (['ppi-sim', '--set', 'family=NB'], "--set family='NB': must be one of 'poisson', 'nb'"),
    (['features-her2st', '--set', 'arch=resnet99'], "--set arch='resnet99': must be one of 'stain', 'alexnet',"),
    (['cpnn-her2st', '--set', 'arch=mobilenetv2'], "did you mean 'mobilenet_v2'"),
    (['strank-toy', '--set', 'configs=bogus'], "--set configs='bogus': must be one of 'reference 1-16-1', 'Fourier16 1-32-1'"),
    (['strank-toy', '--set', 'configs=reference 1-16-1,Fourier16 1-32-2'], "'Fourier16 1-32-2' is not one of 'reference 1-16-1', 'Fourier16 1-32-1'; did you mean 'Fourier16 1-32-1'?"),
]

@pytest.mark.parametrize('argv,words', SLOW_ARGUMENT_ERRORS)
def test_argument_errors_refused_before_the_experiment_is_imported(tmp_path, argv, words):
    "`stlearn-nb` in a fresh interpreter: exit 2, one line naming the value, and nothing heavy imported (the import was the 6.5-13 s)."
    import subprocess, sys, os
    code = ("import sys, io, contextlib; from stlearn_nb.cli import main\n"
            "err = io.StringIO()\nwith contextlib.redirect_stderr(err): rc = main(sys.argv[1:])\n"
            "heavy = [m for m in ('torch', 'torchvision', 'numpy', 'pandas', 'stlearn_nb.ppi_de', 'stlearn_nb.strank', 'stlearn_nb.cpnn', 'stlearn_nb.features') if m in sys.modules]\n"
            "print(rc, heavy); print(err.getvalue(), end='')")
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get('PYTHONPATH', '')])}
    r = subprocess.run([sys.executable, '-c', code, *argv, '--quick', '--out', str(tmp_path/'o')], capture_output=True, text=True, env=env, timeout=120)
    first, *err = r.stdout.splitlines()
    assert first == '2 []' and len(err) == 1 and words in err[0], r.stdout + r.stderr
    assert not (tmp_path/'o').exists()

def test_cli_seed_and_family_rules_match_numpy_and_ppi_de():
    "The CLI's rules against the libraries that would refuse later: NumPy's seed range (seed + k too) and the families `ppi_de` fits."
    import torch
    from stlearn_nb.cli import check_seed, SEED_MAX, GLM_FAMILIES, validate_options, CommandLineError
    from stlearn_nb.ppi_de import glm_terms
    for seed in (-1, 0, SEED_MAX, SEED_MAX + 1, 2**32 - 1, 2**32):
        try: np.random.seed(seed); numpy_ok = True
        except ValueError: numpy_ok = False
        try: check_seed(seed); cli_ok = True
        except CommandLineError: cli_ok = False
        assert not cli_ok or (numpy_ok and np.random.seed(seed + 10**6) is None), seed   # accepted: NumPy takes it and seed + k
        assert cli_ok or seed < 0 or seed > SEED_MAX
    for family in ('poisson', 'nb', 'nbinom', 'NB', 'gaussian'):
        try: glm_terms(torch.ones(2, 1), torch.ones(2, 1), torch.zeros(1, 1), family=family, inv_dispersion=torch.ones(1)); fits = True
        except ValueError: fits = False
        try: validate_options('ppi-sim', {'family': family}); cli_ok = True
        except CommandLineError: cli_ok = False
        assert fits == cli_ok == (family in GLM_FAMILIES), family

def test_cli_arch_rule_matches_torchvision_and_load_encoder():
    "The architectures read from torchvision's source files == `list_models(module=torchvision.models)`; `load_encoder` refuses what the CLI refuses."
    import torchvision
    from stlearn_nb.cli import torchvision_classifiers, validate_options, CommandLineError
    from stlearn_nb.features import load_encoder
    assert torchvision_classifiers() == tuple(sorted(torchvision.models.list_models(module=torchvision.models)))
    for arch in ('resnet99', 'mobilenetv2', 'maskrcnn_resnet50_fpn'):   # the last: a torchvision model, but a detector
        with pytest.raises(CommandLineError, match='must be one of'): validate_options('features-her2st', {'arch': arch})
        with pytest.raises(ValueError, match='unknown architecture'): load_encoder(arch, 'random')
    for arch in ('stain', 'resnet18', 'mobilenet_v2', None): assert validate_options('features-her2st', {'arch': arch}) == {'arch': arch}

BAD_INPUT_CLASSES['command-line values an experiment refuses only after its import (seed range, GLM family, encoder architecture)'] = (
    ['stlearn-nb <experiment> --seed', 'stlearn-nb <experiment> --set family=', 'stlearn-nb <experiment> --set arch='],
    ['test_argument_errors_refused_before_the_experiment_is_imported', 'test_cli_seed_and_family_rules_match_numpy_and_ppi_de',
     'test_cli_arch_rule_matches_torchvision_and_load_encoder'])


def test_cli_configs_rule_matches_strank_toy_configs():
    "The CLI's configs words, read from strank's source, are strank.TOY_CONFIGS' names, and each valid list passes."
    from stlearn_nb.cli import static_keys, validate_options
    from stlearn_nb.strank import TOY_CONFIGS
    assert static_keys('stlearn_nb.strank', 'TOY_CONFIGS') == tuple(TOY_CONFIGS)
    assert static_keys('stlearn_nb.strank', 'TOY_FUNCTIONS_MISSING') is None
    assert validate_options('strank-toy', {'configs': ','.join(TOY_CONFIGS)})['configs'] == ','.join(TOY_CONFIGS)

# ================================================================ issue 26: one pixel-size rule at every entry point; a slide codec that is missing
PIXEL_SIZE_ENTRY_POINTS = ['check_pixel_size', 'resample_tile', 'segment_nuclei', 'check_segment_inputs', 'segment_files', 'segment_slide', 'stlearn-nb segment --mpp']
BAD_PIXEL_SIZES = [0.0, -0.5, float('nan'), '0.5um']

def test_pixel_size_every_entry_point_same_message(tmp_path):
    "0, negative, NaN and '0.5um' are refused by each entry point with the rule's own words (filekind.pixel_size_problem), the CLI before torch."
    import subprocess, sys, os, textwrap
    from stlearn_nb.filekind import pixel_size_problem
    from stlearn_nb.data import check_pixel_size, resample_tile
    from stlearn_nb.hestseg_real import MobileHoVerNet, segment_nuclei, check_segment_inputs, segment_files
    from stlearn_nb.hestseg_wsi import segment_slide
    img, net = np.zeros((32, 32, 3), np.uint8), MobileHoVerNet()
    calls = {'check_pixel_size': lambda v: check_pixel_size(v, 'mpp'), 'resample_tile': lambda v: resample_tile(img, None, v, 0.5),
             'segment_nuclei': lambda v: segment_nuclei(img, net, v), 'check_segment_inputs': lambda v: check_segment_inputs([tmp_path/'a.png'], net, v),
             'segment_files': lambda v: segment_files([tmp_path/'a.png'], net, [v], tmp_path/'out'),
             'segment_slide': lambda v: segment_slide(tmp_path/'a.png', net, v, tmp_path/'out')}
    for v in BAD_PIXEL_SIZES:
        rule = pixel_size_problem(v); assert rule
        for name, call in calls.items():
            with pytest.raises(DataFormatError) as e: call(v)
            assert str(e.value).endswith(': ' + rule), (name, v, str(e.value))
    (tmp_path/'x.png').write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(32))
    code = textwrap.dedent(f"""
        import sys, io, contextlib, json
        from stlearn_nb.cli import main
        out = []
        for v in {[str(v) for v in BAD_PIXEL_SIZES]!r}:
            err = io.StringIO()
            with contextlib.redirect_stderr(err): out.append([main(['segment', r'{tmp_path/'x.png'}', '--model', r'{tmp_path/'x.png'}', '--mpp', v, '--out', r'{tmp_path/'o'}']), err.getvalue()])
        print(json.dumps([out, 'torch' in sys.modules]))""")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120, env={**os.environ, 'PYTHONPATH': str(Path(__file__).parents[1])})
    out, torch_imported = json.loads(r.stdout)
    assert not torch_imported
    for v, (rc, text) in zip(BAD_PIXEL_SIZES, out):   # the CLI parses the text: '0.0' -> 0.0, 'nan' -> nan, '0.5um' stays text
        assert rc == 2 and text.count('\n') == 1 and text.startswith('stlearn-nb segment: error: ') and text.strip().endswith(f"--mpp: {pixel_size_problem(v)}"), (v, text)

BAD_INPUT_CLASSES['pixel size missing, zero, negative, NaN, bool, with a unit'][0].extend(PIXEL_SIZE_ENTRY_POINTS)
BAD_INPUT_CLASSES['pixel size missing, zero, negative, NaN, bool, with a unit'][1].append('test_pixel_size_every_entry_point_same_message')

def test_slide_codec_missing_names_the_package(tmp_path, monkeypatch):
    "A tiled JPEG slide whose codec is not installed (tifffile's decoder table answers as it does without imagecodecs): MissingCodecError naming the package, not the file."
    import tifffile
    from stlearn_nb.data import SlideReader, MissingCodecError
    tifffile.imwrite(tmp_path/'s.tif', np.zeros((64, 64, 3), np.uint8), tile=(32, 32), compression='jpeg', photometric='rgb')
    class NoJpeg(dict):
        def __getitem__(self, k): raise KeyError(f"<COMPRESSION.JPEG: 7> requires the 'imagecodecs' package")
    monkeypatch.setattr(tifffile.TIFF, 'DECOMPRESSORS', NoJpeg())
    with pytest.raises(MissingCodecError, match=r"JPEG-compressed and no installed package decodes them .*pip install imagecodecs; the file itself may be fine"):
        SlideReader(tmp_path/'s.tif')

BAD_INPUT_CLASSES['slide compressed with a codec that is not installed'] = (['SlideReader'], ['test_slide_codec_missing_names_the_package'])
