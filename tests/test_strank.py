"STRank losses against slow loops and peer libraries; the ensemble trainer; the synthetic claim; her2st loading."
import math, numpy as np, pandas as pd, pytest, torch, scipy.stats
from stlearn_nb import strank as st
from stlearn_nb.data import shared_data_dir
from stlearn_nb.features import load_encoder


def _inputs(seed=0, B=23, G=4):
    gen = torch.Generator().manual_seed(seed)
    f = torch.randn(B, G, generator=gen, dtype=torch.float64)
    c = torch.poisson(torch.full((B, G), 6.), generator=gen).double()
    g = torch.randint(0, 4, (B,), generator=gen) * 3 + 1            # 4 non-contiguous groups
    g[-1] = 99                                                     # plus a singleton
    return f, c, g


def _slow_list_torch(f, c, g, off):
    "Per-group log_softmax with a Python loop (autograd-able), the reference's formulation."
    u = f + off
    parts = [-(torch.log_softmax(u[g == s], 0) * c[g == s]) for s in g.unique()]
    return torch.cat(parts).mean()


def test_list_strank_value_and_gradient_match_loop():
    f, c, g = _inputs()
    off = st.library_offset(c)
    f1, f2 = f.clone().requires_grad_(), f.clone().requires_grad_()
    a, b = st.list_strank_loss(f1, c, g, off), _slow_list_torch(f2, c, g, off)
    a.backward(); b.backward()
    assert torch.allclose(a, b, atol=1e-12) and torch.allclose(f1.grad, f2.grad, atol=1e-12)


def test_pair_and_rank_match_loops():
    f, c, g = _inputs(1)
    for seed in range(3):
        j = st.within_group_partners(g, 1, torch.Generator().manual_seed(seed))[0]
        slow = 0.
        for i in range(len(g)):
            for k in range(f.shape[1]):
                d = float(f[i, k] - f[j[i], k])
                slow += -(c[i, k] * math.log(1 / (1 + math.exp(-d))) + c[j[i], k] * math.log(1 / (1 + math.exp(d))))
        got = st.pair_strank_loss(f, c, g, generator=torch.Generator().manual_seed(seed))
        assert abs(float(got) - slow / (2 * f.numel())) < 1e-10
        perm = st.within_group_partners(g, 32, torch.Generator().manual_seed(seed))
        slow = np.mean([max(0., -(1. if c[i, k] > c[perm[p, i], k] else -1.) * float(f[i, k] - f[perm[p, i], k]))
                        for p in range(32) for i in range(len(g)) for k in range(f.shape[1])])
        assert abs(float(st.rank_loss(f, c, g, generator=torch.Generator().manual_seed(seed))) - slow) < 1e-10


def test_pointwise_losses_match_scipy_and_numpy():
    f, c, _ = _inputs(2)
    mu = np.exp(f.numpy())
    assert np.isclose(float(st.poisson_loss(f, c)), -scipy.stats.poisson.logpmf(c.numpy(), mu).mean())
    theta = 2.5   # scipy nbinom(n=theta, p=theta / (theta + mu)) has mean mu
    nb = -scipy.stats.nbinom.logpmf(c.numpy(), theta, theta / (theta + mu)).mean()
    assert np.isclose(float(st.nb_loss(f, c, math.log(theta))), nb)
    r = [np.corrcoef(f[:, k], c[:, k])[0, 1] for k in range(f.shape[1])]
    assert np.isclose(float(st.pcc_loss(f, c)), -np.mean(r))
    target = np.log1p(1e4 * c.numpy() / c.numpy().sum(1, keepdims=True))
    assert np.isclose(float(st.mse_loss(f, c, normalise=True)), ((f.numpy() - target) ** 2).mean())


def test_invariance_singletons_and_zero_totals():
    f, c, g = _inputs(3)
    shift = torch.randn(200, dtype=torch.float64, generator=torch.Generator().manual_seed(3))[g][:, None]
    assert torch.allclose(st.list_strank_loss(f + shift, c, g), st.list_strank_loss(f, c, g))
    p1 = st.pair_strank_loss(f + shift, c, g, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(p1, st.pair_strank_loss(f, c, g, generator=torch.Generator().manual_seed(0)))
    zero = torch.zeros(3, 2); x = torch.zeros(3, 2, requires_grad=True)
    for loss in (st.mse_loss(x, zero, normalise=True), st.list_strank_loss(x, zero, torch.tensor([0, 1, 2])),
                 st.pcc_loss(x, zero), st.pair_strank_loss(x, zero, torch.tensor([0, 1, 2]), st.library_offset(zero), True)):
        loss.backward(); assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


def test_partners_uniform_within_group():
    g = torch.tensor([5, 5, 5, 2, 2, 7])
    p = st.within_group_partners(g, 30_000, torch.Generator().manual_seed(0))
    assert (g[p] == g).all()
    counts = torch.bincount(p[:, 0], minlength=6)[:3].numpy()
    assert scipy.stats.chisquare(counts).pvalue > 1e-3       # uniform over the 3 members of group 5


def test_ensemble_gradient_is_per_model_gradient():
    "The summed ensemble loss gives each model exactly the gradient of its own loss (so AdamW trains them independently)."
    torch.manual_seed(0)
    names = ['MSE', 'ListSTRank', 'PCC', 'Po', 'NB', 'Rank', 'PairSTRank']
    ens = st.EnsembleMLP([1, 0], len(names), hidden=5, n_fourier=2, seed=1)
    x = torch.rand(2, 40)
    tissue = torch.sort(torch.randint(0, 2, (2, 40)), dim=1).values.float()          # tissue-sorted batches
    y = torch.stack([torch.poisson(torch.full((2, 40), 4.)), tissue], -1)
    model_data = [1] * 7 + [0] * 7
    st.ToyEnsembleLoss(names * 2, model_data, seed=7)(ens(x), y).backward()
    partner = st.tissue_sorted_partners(y[..., 1], 32, torch.Generator().manual_seed(7))   # the loss's own draw
    for m, name in enumerate(names * 2):
        d, l = divmod(m, len(names))
        w1 = ens.w1[d, 5 * l:5 * l + 5].detach().clone().requires_grad_()
        w2 = ens.w2[m].detach().clone().requires_grad_()
        xm = x[model_data[m], :, None]
        xm = torch.cat([xm, torch.sin(xm * ens.freqs), torch.cos(xm * ens.freqs)], -1)
        fm = torch.relu(xm @ w1.T + ens.b1[d, 5 * l:5 * l + 5, 0].detach()) @ w2.T + ens.b2[m, 0].detach()   # (b, 1)
        c, t, j = y[model_data[m], :, :1], y[model_data[m], :, 1].long(), partner[model_data[m]].T     # j: (b, k)
        own = {'MSE': lambda: st.mse_loss(fm, c), 'PCC': lambda: st.pcc_loss(fm, c), 'Po': lambda: st.poisson_loss(fm, c),
               'NB': lambda: st.nb_loss(fm, c), 'ListSTRank': lambda: st.list_strank_loss(fm, c, t),
               'Rank': lambda: st.rank_loss_on_pairs(fm, fm[j, 0], c, c[j, 0]),
               'PairSTRank': lambda: st.pair_strank_on_pairs(fm, fm[j[:, :1], 0], c, c[j[:, :1], 0])}[name]()
        own.backward()
        assert torch.allclose(w1.grad, ens.w1.grad[d, 5 * l:5 * l + 5], atol=1e-6), name
        assert torch.allclose(w2.grad, ens.w2.grad[m], atol=1e-6), name


def test_toy_claim_via_cli(tmp_path):
    "Quick CLI run (Fourier network, first function): List/Pair beat pointwise under Imbalanced; PCC falls."
    from stlearn_nb.cli import main
    main(['strank-toy', '--quick', '--out', str(tmp_path), '--set', 'configs="Fourier16 1-32-1"', '--set', 'progress=False'])
    t = pd.read_csv(tmp_path/'results.csv').set_index(['setting', 'loss']).spearman_mean
    imb = t['Imbalanced']
    assert min(imb['ListSTRank'], imb['PairSTRank']) > max(imb['MSE'], imb['Po'], imb['NB']) + 0.1, imb
    assert t['Uniform', 'PCC'] - imb['PCC'] > 0.1, t
    written = pd.read_csv(tmp_path/'results.csv')
    assert {'loss', 'setting', 'spearman_mean', 'spearman_sd', 'paper'} <= set(written.columns)
    # the CLI writes what the same call returns in process (seeded training: equal to float rounding in the CSV)
    same = st.run_strank_toy(quick=True, configs="Fourier16 1-32-1", progress=False).table
    pd.testing.assert_frame_equal(written, same.reset_index(drop=True), check_exact=False, rtol=1e-6, atol=1e-9)


