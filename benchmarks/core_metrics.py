"""Per-gene Spearman/Pearson, vectorised (stlearn_nb.core) vs a scipy.stats loop over genes, same data, same run.

python benchmarks/core_metrics.py [--spots 2000] [--genes 2000]
"""
import argparse, time
import numpy as np, scipy.stats
from stlearn_nb.core import spearman_per_gene, pearson_per_gene, average_ranks

def timed(fn, repeat=3):
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter(); out = fn(); best = min(best, time.perf_counter() - t)
    return best, out

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--spots', type=int, default=2000); ap.add_argument('--genes', type=int, default=2000)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    true = rng.poisson(3, (a.spots, a.genes)).astype(float)          # counts: many ties
    pred = true + rng.normal(0, 2, true.shape)
    for name, ours, ref in [('spearman', spearman_per_gene, lambda x, y: scipy.stats.spearmanr(x, y)[0]),
                            ('pearson', pearson_per_gene, lambda x, y: scipy.stats.pearsonr(x, y)[0])]:
        t_ours, r_ours = timed(lambda: ours(pred, true))
        t_loop, r_loop = timed(lambda: np.array([ref(pred[:, g], true[:, g]) for g in range(a.genes)]), repeat=1)
        print(f"{name:>8}: {a.spots} spots x {a.genes} genes  vectorised {t_ours:.3f} s  scipy loop {t_loop:.3f} s  "
              f"speed-up x{t_loop / t_ours:.1f}  max |diff| {np.nanmax(np.abs(r_ours - r_loop)):.2e}")
    toy = rng.normal(size=(10_000, 448)).astype(np.float32); toy[:3000, :10] = 1.   # the strank toy's validation shape
    t_ours, r_ours = timed(lambda: average_ranks(toy))
    t_ref, r_ref = timed(lambda: scipy.stats.rankdata(toy, axis=0))
    print(f"   ranks: 10000 x 448 average_ranks {t_ours:.3f} s  scipy rankdata(axis=0) {t_ref:.3f} s  "
          f"speed-up x{t_ref / t_ours:.1f}  max |diff| {np.abs(r_ours - r_ref).max():.1e}")

if __name__ == '__main__': main()
