"""Forward+backward of ListSTRank and PairSTRank (B=4096, G=250, 8 groups): vectorised vs a slow loop.

The slow loop is the reference's formulation: a Python loop over groups with a log_softmax per group (List), and
a loop over groups building each group's pairs (Pair). Both use the same partners, so the values must agree.
A second setting (G=1, 512 groups) is the batched toy, where a loop over groups costs most.
Run: python benchmarks/strank_losses.py   (timings on a shared CPU are noisy; the ratio is measured in one run)
"""
import time, torch, torch.nn.functional as F
from stlearn_nb.strank import list_strank_loss, pair_strank_loss, library_offset, within_group_partners


def slow_list(f, c, g, off):
    u = f + off
    return torch.cat([-(torch.log_softmax(u[g == s], 0) * c[g == s]) for s in g.unique()]).mean()


def slow_pair(f, c, g, off, partner):
    u, total = f + off, 0.
    for s in g.unique():                       # loop over groups, as the reference's group_perm
        rows = (g == s).nonzero().flatten()
        a, b = rows, partner[rows]
        total = total - (c[a] * F.logsigmoid(u[a] - u[b]) + c[b] * F.logsigmoid(u[b] - u[a])).sum()
    return total / (2 * f.numel())


def timed(fn, f, repeats=5):
    best, value, grad = float('inf'), None, None
    for _ in range(repeats):
        x = f.clone().requires_grad_()
        t = time.perf_counter(); value = fn(x); value.backward(); best = min(best, time.perf_counter() - t)
        grad = x.grad
    return best, value.detach(), grad


def bench(B, G, S):
    torch.manual_seed(0)
    f = torch.randn(B, G); c = torch.poisson(torch.rand(B, G) * 10); g = torch.randint(0, S, (B,))
    off = library_offset(c)
    partner = within_group_partners(g, 1, torch.Generator().manual_seed(1))[0]
    rows = []
    t_fast, v_fast, g_fast = timed(lambda x: list_strank_loss(x, c, g, off), f)
    t_slow, v_slow, g_slow = timed(lambda x: slow_list(x, c, g, off), f)
    rows.append(('ListSTRank', t_slow, t_fast, (v_fast - v_slow).abs().item(), (g_fast - g_slow).abs().max().item()))
    t_fast, v_fast, g_fast = timed(lambda x: pair_strank_loss(x, c, g, off, generator=torch.Generator().manual_seed(1)), f)
    t_slow, v_slow, g_slow = timed(lambda x: slow_pair(x, c, g, off, partner), f)
    rows.append(('PairSTRank', t_slow, t_fast, (v_fast - v_slow).abs().item(), (g_fast - g_slow).abs().max().item()))
    print(f"B={B} G={G} groups={S}, forward+backward, best of 5, torch threads={torch.get_num_threads()}")
    print(f"{'loss':<11} {'loop ms':>9} {'vectorised ms':>14} {'speed-up':>9} {'max|dloss|':>11} {'max|dgrad|':>11}")
    for name, ts, tf, dv, dg in rows:
        print(f"{name:<11} {1e3 * ts:9.1f} {1e3 * tf:14.1f} {ts / tf:8.1f}x {dv:11.2e} {dg:11.2e}")


if __name__ == '__main__':
    bench(4096, 250, 8)      # the setting: few sections, many genes
    bench(4096, 1, 512)      # the toy ensemble's setting: one gene, hundreds of (model, tissue) groups
