"Feature extraction: two gloo processes under torchrun write the same files as one process; shared weights on her2st."
import os, subprocess, sys, textwrap
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from stlearn_nb.data import write_toy_hest, shared_data_dir
from stlearn_nb.features import (load_encoder, encode_hest_samples, read_feature_file, feature_key, shared_weights,
                                 encode_patches, EncoderWeightsError, her2st_dataset)

WORKER = textwrap.dedent('''
    import sys, torch, torch.distributed as dist
    from stlearn_nb.features import load_encoder, encode_hest_samples
    dist.init_process_group('gloo')
    torch.set_num_threads(1)
    done = encode_hest_samples(sys.argv[1], load_encoder('resnet18', sys.argv[2]), sys.argv[3], progress=False)
    done.to_csv(f"{sys.argv[3]}_rank{dist.get_rank()}.csv", index=False)
    dist.barrier(); dist.destroy_process_group()
''')

@pytest.fixture(scope='module')
def hest(tmp_path_factory):
    root = tmp_path_factory.mktemp('hest')
    for i, sid in enumerate(['S0', 'S1', 'S2', 'S3', 'S4']): write_toy_hest(root, sid, n=2 + i, patch=32, seed=i)
    torch.manual_seed(0)
    from torchvision.models import resnet18
    weights = root/'resnet18_random.pth'; torch.save(resnet18().state_dict(), weights)
    return root, weights

def test_two_gloo_ranks_equal_one_process(hest, tmp_path):
    root, weights = hest
    torch.set_num_threads(1)
    single = encode_hest_samples(root, load_encoder('resnet18', weights), tmp_path/'single', progress=False)
    (tmp_path/'worker.py').write_text(WORKER)
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(Path(__file__).resolve().parents[1])}
    torchrun = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port', '29517']
    proc = subprocess.run(torchrun + [str(tmp_path/'worker.py'), str(root), str(weights), str(tmp_path/'ranks')],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = lambda d: sorted(p.relative_to(d) for p in Path(d).rglob('*.npz'))
    assert files(tmp_path/'ranks') == files(tmp_path/'single') and len(files(tmp_path/'single')) == 5
    enc = load_encoder('resnet18', weights)
    for rel in files(tmp_path/'single'):
        meta = dict(arch='resnet18', weights_hash=enc.weights_hash, patch_um=112., patch_px=32, tta=False)
        a, b = read_feature_file(tmp_path/'single'/rel, meta), read_feature_file(tmp_path/'ranks'/rel, meta)
        np.testing.assert_allclose(a[0], b[0], atol=1e-5); assert (a[1] == b[1]).all()
    # each rank took samples rank::2 of the sorted list
    import pandas as pd
    assert pd.read_csv(f"{tmp_path/'ranks'}_rank0.csv").sample_id.tolist() == ['S0', 'S2', 'S4']
    assert pd.read_csv(f"{tmp_path/'ranks'}_rank1.csv").sample_id.tolist() == ['S1', 'S3']

def test_weights_from_another_architecture_are_refused(hest):
    _, weights = hest
    with pytest.raises(EncoderWeightsError, match='missing keys'): load_encoder('densenet121', weights)

def test_shared_mobilenet_on_her2st_patches():
    path, root = shared_weights('mobilenet_v2'), shared_data_dir('her2st')
    if path is None or root is None: pytest.skip('../shared/models/mobilenetv2_imagenet or ../shared/data/her2st not present')
    from stlearn_nb.data import read_her2st, spot_patches
    a = read_her2st(root, 'C6', drop_zero=True, lowres=0)[:32].copy()
    spot_patches(a, patch_um=112., out_px=112, pad=True)
    enc = load_encoder('mobilenet_v2', path)
    f = encode_patches(a.obsm['patches'], enc)
    # ImageNet features after ReLU6-pooled bottleneck: non-negative, finite, not constant across spots
    assert f.shape == (32, 1280) and np.isfinite(f).all() and f.min() >= 0 and (f.std(0) > 0).mean() > 0.5
    # random weights give different features: the file was really loaded
    rnd = encode_patches(a.obsm['patches'], load_encoder('mobilenet_v2', 'random'))
    assert not np.allclose(f, rnd, atol=1e-3)


def test_her2st_genes_are_top_variance():
    root = shared_data_dir('her2st')
    if root is None: pytest.skip('../shared/data/her2st not present')
    d = her2st_dataset(root, sections=('C6',), train=('C6',), n_genes=5, encoder=load_encoder('stain'), patch_px=16, cache_dir=False)
    assert d['counts'].shape == (len(d['section']), 5) and (d['counts'] == np.round(d['counts'])).all()
    counts = pd.read_csv(root/'counts'/'C6.tsv.gz', sep='\t', index_col=0)
    counts = counts[(counts > 0).sum(1) >= 200]
    counts = counts.loc[:, (counts > 0).sum(0) >= 3]
    logn = np.log1p(1e4 * counts.to_numpy(float) / counts.to_numpy(float).sum(1, keepdims=True))
    top = counts.columns[np.argsort(-logn.var(0))[:5]]
    assert list(top) == d['genes']

    # tissue classes: the cluster of each kept spot, named by hand from motivation.csv (patient C; cluster 6 'unknown')
    labels = pd.read_csv(root/'clusters'/'C6-cluster-annotation.tsv.gz', sep='\t')
    labels.index = labels.x.astype(int).astype(str) + 'x' + labels.y.astype(int).astype(str)
    names = {0: 'immune', 1: 'immune', 2: 'cancer', 3: 'cancer', 4: 'cancer', 5: 'immune'}
    expected = labels.label.reindex(counts.index).map(names)
    assert list(expected.fillna('-')) == list(pd.Series(d['tissue_class']).fillna('-'))
