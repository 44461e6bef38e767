"""Training many toy MLPs together (stlearn_nb.strank.toy_learner) against one model at a time, in the same run.

Reference: the naive loop the reference code runs, one 1-16-1 `nn.Sequential` per (dataset, loss) with
`torch.optim.AdamW`, batches of 256 drawn from its own dataset, the generic (B, G) losses of `strank`.
Ours: the ensemble step (forward, the 7 losses, backward, AdamW) of a grid of M models, and fastai's
`Learner.fit` around it. Printed: milliseconds per model-step each way, their ratio, and the ensemble at 1 vs 2
torch threads for a small and a large grid (the rule `fit_toy` uses to pick its thread count).

Run: python benchmarks/strank_toy_speed.py   (a shared 2-core CPU is noisy: run twice, compare ratios)
"""
import time, numpy as np, torch
from torch import nn
from stlearn_nb import strank as st
from stlearn_nb.core import cpu_threads
from fastai.learner import CancelValidException
from fastai.callback.core import Callback

STEPS = 40


class SkipValidation(Callback):
    def before_validate(self): raise CancelValidException()


def naive_ms_per_step(data, loss_name, steps=STEPS):
    "One reference model trained alone: ms per optimiser step."
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, c, g = (torch.as_tensor(data[k]) for k in ('x', 'counts', 'group'))
    gen = torch.Generator().manual_seed(0)
    loss_fn = {'MSE': lambda f, c, g: st.mse_loss(f, c), 'Po': lambda f, c, g: st.poisson_loss(f, c),
               'NB': lambda f, c, g: st.nb_loss(f, c), 'PCC': lambda f, c, g: st.pcc_loss(f, c),
               'Rank': lambda f, c, g: st.rank_loss(f, c, g, generator=gen),
               'PairSTRank': lambda f, c, g: st.pair_strank_loss(f, c, g, generator=gen),
               'ListSTRank': lambda f, c, g: st.list_strank_loss(f, c, g)}[loss_name]
    order = torch.randperm(len(x), generator=gen)
    start = time.perf_counter()
    for i in range(steps):
        idx = order[i * 256:(i + 1) * 256]
        loss = loss_fn(model(x[idx, None]), c[idx, None], g[idx])
        opt.zero_grad(); loss.backward(); opt.step()
    return (time.perf_counter() - start) / steps * 1000


def ensemble_ms_per_step(datasets, grid, threads, fastai=False, steps=STEPS):
    "The whole grid in one step: ms per optimiser step (raw loop, or fastai's fit over `steps` batches)."
    with cpu_threads(threads):
        learn = st.toy_learner(datasets, grid)
        if fastai:                                  # fastai's loop without the per-epoch evaluation
            learn.remove_cb(learn.toy_eval)
            batches = learn.dls.train                   # a ToyBatches: keep `steps` batches of every dataset
            batches.x, batches.y = batches.x[:, :steps * batches.bs], batches.y[:, :steps * batches.bs]
            start = time.perf_counter()
            with learn.no_bar(), learn.no_logging(): learn.fit(1, cbs=SkipValidation())
            return (time.perf_counter() - start) / steps * 1000
        model, loss_fn = learn.model, learn.loss_func
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        batches = iter(learn.dls.train)
        for _ in range(3): xb, yb = next(batches); loss_fn(model(xb), yb).backward()
        start = time.perf_counter()
        for _ in range(steps):
            xb, yb = next(batches)
            loss = loss_fn(model(xb), yb); opt.zero_grad(); loss.backward(); opt.step()
        return (time.perf_counter() - start) / steps * 1000


def main():
    full = st.toy_grid(seeds=tuple(range(5)), configs={'reference 1-16-1': st.TOY_CONFIGS['reference 1-16-1']})
    small = full[full.seed == 0].reset_index(drop=True)
    datasets = st.toy_datasets(full, n=20_000)
    with cpu_threads(1):
        naive = {loss: naive_ms_per_step(datasets[0], loss) for loss in st.TOY_LOSSES}
    per_model = np.mean(list(naive.values()))
    print('naive loop, one reference model, ms/step by loss: ' + ', '.join(f'{k} {v:.2f}' for k, v in naive.items()))
    for name, grid in (('1 seed', small), ('5 seeds', full)):
        for threads in (1, 2):
            ms = ensemble_ms_per_step(datasets, grid, threads)
            print(f'ensemble {name:>7} ({len(grid):3d} models), {threads} thread(s): {ms:6.1f} ms/step = '
                  f'{ms / len(grid):.3f} ms per model-step; naive loop {per_model:.3f} ms -> x{per_model * len(grid) / ms:.1f} faster')
    ms = ensemble_ms_per_step(datasets, full, 2, fastai=True)
    print(f'ensemble 5 seeds ({len(full)} models) inside fastai Learner.fit, 2 threads: {ms:.1f} ms/step')


if __name__ == '__main__': main()
