"""Benchmark: vectorised GLM DE (stlearn_nb.ppi_de) vs a per-gene statsmodels GLM loop.

5,000 genes x 20,000 automated cells (+ 500 curated cells for PPI++), Poisson counts with size factors.
The reference is statsmodels' GLM Poisson with cov_type='HC0', fitted gene by gene on the same 20,000 cells
(our naive / lambda = 0 fit is the same estimator). The loop is timed on a random sample of genes and
EXTRAPOLATED linearly to all genes (a full loop would take tens of minutes); the script says so in its output.

    python benchmarks/ppi_de.py [--genes 5000] [--cells 20000] [--loop-genes 40] [--chunk 1000]

Timings on a shared 2-core CPU are noisy; the ratio is measured in one run on one machine.
"""
import argparse, time
import numpy as np, torch
import statsmodels.api as sm
from stlearn_nb.ppi_de import naive_glm_fit, ppi_glm_fit, glm_design


def main(genes=5000, cells=20000, curated=500, loop_genes=40, chunk=1000, seed=0):
    torch.set_num_threads(2)
    rng = np.random.default_rng(seed)
    rates = np.exp(rng.normal(-0.5, 1.0, (3, genes)) + np.array([[0.], [0.3], [-0.2]]) * rng.normal(0, 1, (3, genes)))
    def draw(m):
        y = rng.choice(3, m, p=[.5, .25, .25]); sf = np.exp(rng.normal(0, .3, m))
        yh = np.where(rng.random(m) < .15, rng.choice(3, m), y)
        return rng.poisson(sf[:, None] * rates[y]).astype(np.float32), y, yh, np.log(sf)
    xu, _, yhu, ou = draw(cells)
    xc, yc, yhc, oc = draw(curated)
    print(f"data: {cells} automated cells + {curated} curated cells x {genes} genes, "
          f"{(xu > 0).mean():.2f} nonzero; torch threads {torch.get_num_threads()}")

    t = time.perf_counter()   # vectorised naive (= lambda 0) fit, genes in chunks to bound memory
    naive = [naive_glm_fit(xu[:, s:s + chunk], yhu, ou) for s in range(0, genes, chunk)]
    t_vec = time.perf_counter() - t
    beta = torch.cat([f['beta'] for f in naive]).numpy(); se = torch.cat([f['se'] for f in naive]).numpy()

    t = time.perf_counter()   # full PPI++ (two fits + lambda + sandwich) for reference
    for s in range(0, genes, chunk):
        ppi_glm_fit(xc[:, s:s + chunk], yc, yhc, xu[:, s:s + chunk], yhu, offset=oc, offset_unlabeled=ou)
    t_ppi = time.perf_counter() - t

    sample = np.sort(rng.choice(genes, loop_genes, replace=False))
    design = glm_design(yhu).numpy()
    t = time.perf_counter()
    ref = [sm.GLM(xu[:, g].astype(float), design, family=sm.families.Poisson(), offset=ou).fit(cov_type='HC0') for g in sample]
    t_loop = (time.perf_counter() - t) / loop_genes * genes
    ref_beta = np.array([r.params[1] for r in ref]); ref_se = np.array([r.bse[1] for r in ref])

    print(f"vectorised naive/classical GLM, {genes} genes: {t_vec:.2f} s")
    print(f"vectorised PPI++ (2 fits, lambda*, sandwich), {genes} genes: {t_ppi:.2f} s")
    print(f"statsmodels per-gene loop: timed on {loop_genes} random genes, EXTRAPOLATED to {genes} genes: {t_loop:.1f} s")
    print(f"speed ratio (statsmodels loop / vectorised, same estimator): {t_loop / t_vec:.0f}x")
    print(f"largest |beta difference| on the {loop_genes} sampled genes: {np.abs(beta[sample] - ref_beta).max():.2e}; "
          f"largest relative SE difference: {np.abs(se[sample] / ref_se - 1).max():.2e}")


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--genes', type=int, default=5000); p.add_argument('--cells', type=int, default=20000)
    p.add_argument('--curated', type=int, default=500); p.add_argument('--loop-genes', type=int, default=40)
    p.add_argument('--chunk', type=int, default=1000); p.add_argument('--seed', type=int, default=0)
    a = p.parse_args()
    main(a.genes, a.cells, a.curated, a.loop_genes, a.chunk, a.seed)
