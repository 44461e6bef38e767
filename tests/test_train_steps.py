"Every learner factory trains at least one optimiser step per epoch when it has fewer items than its batch size (issue 19)."
import numpy as np, pandas as pd, pytest, torch
import fastai.callback.progress  # noqa: F401 (Learner.no_bar)
from stlearn_nb.core import EmptyEpochError, check_train_steps

torch.set_num_threads(1)


def _trains(learn, epochs=1):
    "One epoch of training: at least one batch, a finite training loss, and the weights move."
    assert check_train_steps(learn.dls, 'test') >= 1
    before = [p.detach().clone() for p in learn.model.parameters() if p.requires_grad]
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs, 1e-3)
    assert np.isfinite(float(learn.recorder.losses[-1]))
    after = [p.detach() for p in learn.model.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(before, after)), 'no parameter changed: the model did not train'


def _tiles(n, size=32, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    inst = np.zeros((n, size, size), np.int32); types = np.zeros((n, size, size), np.int64)
    for b in range(n):
        for k, (r, c) in enumerate(rng.integers(4, size - 4, (4, 2)), 1):
            inst[b, r - 3:r + 3, c - 3:c + 3] = k; types[b, r - 3:r + 3, c - 3:c + 3] = 1 + k % 4
    return images, inst, types


def test_hovernet_learner_with_fewer_tiles_than_the_batch():
    "hestseg-synth's manual arm: 3 tiles, one for validation, batch size 4 (fastai's drop_last gave zero steps)."
    from stlearn_nb.hestseg import hovernet_learner
    learn = hovernet_learner(*_tiles(3), width=4, bs=4)
    assert len(learn.dls.train) == 1 and learn.dls.train.bs == 2
    _trains(learn)
    with pytest.raises(EmptyEpochError, match='0 training items'): hovernet_learner(*_tiles(1), width=4, bs=4)


def test_nuclei_learner_with_fewer_crops_than_the_batch():
    from stlearn_nb.hestseg_real import nuclei_learner, mobile_hovernet
    images, inst, _ = _tiles(2, 64)
    tiles = [{'image': i, 'inst': m} for i, m in zip(images, inst)]
    learn = nuclei_learner(tiles[:1], tiles[1:], mobile_hovernet(weights='random'), crop=32, n_crops=3, bs=8)
    assert len(learn.dls.train) == 1
    _trains(learn)
    with pytest.raises(EmptyEpochError): nuclei_learner(tiles[:1], tiles[1:], mobile_hovernet(weights='random'), crop=32, n_crops=0)


def test_cpnn_dataloaders_with_fewer_bags_than_the_batch():
    from stlearn_nb.cpnn import BagDataset, bag_dataloaders, directmil_learner, cpnn_learner
    rng = np.random.default_rng(0)
    bags = lambda n: BagDataset([rng.normal(size=(5, 6)) for _ in range(n)], rng.poisson(5, (n, 4)), np.full((n, 2), .5))
    dls = bag_dataloaders(bags(3), bags(2), bs=8)
    assert len(dls.train) == 1
    _trains(directmil_learner(dls))
    _trains(cpnn_learner(dls, rng.uniform(1, 5, (2, 4))))   # (K, G) prototypes
    with pytest.raises(EmptyEpochError, match='0 training items'): bag_dataloaders(bags(0), bags(2), bs=8)


def test_toy_learner_with_fewer_spots_than_the_batch():
    from stlearn_nb.strank import toy_learner, toy_grid, toy_datasets, TOY_FUNCTIONS, TOY_CONFIGS
    configs = dict(list(TOY_CONFIGS.items())[:1])
    grid = toy_grid(TOY_FUNCTIONS[:1], ('Uniform',), ('MSE', 'Po'), configs=configs)
    data = toy_datasets(grid, n=10)   # 20 spots, batch size 256
    learn = toy_learner(data, grid, configs, bs=256)
    assert len(learn.dls.train) == 1
    _trains(learn)


def test_her2st_learner_with_fewer_spots_than_the_batch():
    from stlearn_nb.strank import her2st_learner
    rng = np.random.default_rng(0)
    section = np.array(['A'] * 10 + ['B'] * 6)
    data = dict(features=rng.normal(size=(16, 8)).astype(np.float32), counts=rng.poisson(3, (16, 5)).astype(np.float32),
                section=section, library=rng.uniform(500, 1000, 16), genes=[f'g{i}' for i in range(5)])
    learn = her2st_learner(data, 'Po', split={'train': ['A'], 'valid': ['B'], 'test': []}, bs=128)
    assert len(learn.dls.train) == 1
    _trains(learn)
    with pytest.raises(EmptyEpochError, match='0 training items'):
        her2st_learner(data, 'Po', split={'train': ['C'], 'valid': ['B'], 'test': []}, bs=128)


def test_count_vae_learner_with_fewer_spots_than_the_batch():
    from stlearn_nb.stcontrast import count_vae_learner
    rng = np.random.default_rng(0)
    learn = count_vae_learner(rng.poisson(3, (20, 7)), np.repeat(['p1', 'p2'], 10), bs=128)
    assert len(learn.dls.train) == 1 and learn.dls.train.bs == 18
    _trains(learn)


def test_contrastive_learner_with_fewer_spots_than_the_batch():
    from stlearn_nb.stcontrast import contrastive_learner
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 6)).astype(np.float32)
    learn = contrastive_learner(X, X[:, :3], bs=128)
    assert len(learn.dls.train) == 1
    _trains(learn)
    with pytest.raises(EmptyEpochError, match='need at least 2'): contrastive_learner(X[:3], X[:3, :3], bs=128)
    with pytest.raises(EmptyEpochError, match='exceeds every section'):
        contrastive_learner(X, X[:, :3], np.repeat(['a', 'b'], 10), 'section', bs=32)
