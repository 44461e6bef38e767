"""Speed of two choices in stlearn_nb.cpnn, each against a reference measured in the same run.

1. Prototype regression: exact Poisson coordinate ascent on (K, E, G) sufficient statistics vs full-batch Adam
   on the (N, G) Poisson likelihood (same model; Adam's optimum is checked to agree).
2. Training CPNN on one CPU thread (what `fit_quietly` does on CPU) vs torch's default thread count.

Run: python benchmarks/cpnn_speed.py   (timings on a shared CPU are noisy; run twice)
"""
import time, numpy as np, pandas as pd, torch
from stlearn_nb.cpnn import (simulate_prototypes, simulate_reference, fit_prototype_regression, prototype_recovery,
                             simulate_cpnn, nnls_proportions, regression_prototypes, BagDataset, bag_dataloaders,
                             cpnn_learner)
from stlearn_nb.core import cpu_threads

def adam_poisson(counts, labels, batches, steps=400, lr=0.05):
    K, E, G = int(labels.max()) + 1, int(batches.max()) + 1, counts.shape[1]
    log_T = torch.nn.Parameter(torch.zeros(K, G)); b = torch.nn.Parameter(torch.zeros(E, G))
    opt = torch.optim.Adam([log_T, b], lr=lr)
    for _ in range(steps):
        eta = log_T[labels] + (b - b.mean(0))[batches]
        loss = (eta.exp() - counts * eta).sum() / len(counts)
        opt.zero_grad(); loss.backward(); opt.step()
    return log_T.detach().exp()

T = simulate_prototypes(n_genes=500, seed=0); ref = simulate_reference(T, n_cells=3000, seed=0)
counts = torch.tensor(ref.layers['counts'])
labels = torch.tensor(pd.Categorical(ref.obs['cell_type']).codes.astype(np.int64))
batches = torch.tensor(pd.Categorical(ref.obs['batch']).codes.astype(np.int64))
with cpu_threads(1):  # both on one thread, so the ratio measures the algorithm, not thread contention
    t = time.perf_counter(); fast = fit_prototype_regression(counts, labels, batches)['prototypes']; t_fast = time.perf_counter() - t
    t = time.perf_counter(); slow = adam_poisson(counts, labels, batches); t_slow = time.perf_counter() - t
print(f"regression: coordinate ascent {t_fast:.2f} s, Adam {t_slow:.2f} s, ratio {t_slow / t_fast:.1f}x; "
      f"recovery {prototype_recovery(fast.numpy(), T)['pearson']:.4f} vs {prototype_recovery(slow.numpy(), T)['pearson']:.4f}")

sim = simulate_cpnn(n_slides=80, seed=0)
proto = regression_prototypes(sim['reference'], 'cell_type', batch_key='batch').values
props = nnls_proportions(sim['slide_counts'], proto)
ds = BagDataset(sim['features'][:60], sim['slide_counts'][:60], props[:60])
dls = bag_dataloaders(ds, BagDataset(sim['features'][60:], sim['slide_counts'][60:], props[60:]), device=torch.device('cpu'))
times = {}
for n in (1, torch.get_num_threads()):
    learn = cpnn_learner(dls, proto)
    with cpu_threads(n), learn.no_bar(), learn.no_logging():
        t = time.perf_counter(); learn.fit(5, 1e-3); times[n] = time.perf_counter() - t
print(f"CPNN 5 epochs: 1 thread {times[1]:.2f} s, {max(times)} threads {times[max(times)]:.2f} s, "
      f"ratio {times[max(times)] / times[1]:.1f}x")
