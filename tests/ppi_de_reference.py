"""Frozen copy of stlearn_nb.ppi_de before the sufficient-statistics rewrite: the slow reference (per-cell (cells, K, K, genes) tensors).

Used only by benchmarks/ppi_de.py (the speed ratio). No test compares with it: a copy of the library catches a
change, not an error present from the start; tests/test_ppi_de.py checks each PPI++ piece against ppi-python,
statsmodels and autograd per-cell loops instead (tests/README.md). Do not edit.
"""


# %% ../nbs/40_ppi_de.ipynb #0c96410b
from __future__ import annotations
import os, math, time, warnings, tempfile
from pathlib import Path
import numpy as np, pandas as pd, torch
from scipy.stats import norm
from stlearn_nb.core import Experiment, seed_everything, nb_log_prob, poisson_log_prob

# %% auto #0
__all__ = ['SIM_ARMS', 'glm_design', 'glm_terms', 'estimate_inv_dispersion', 'ppi_glm_pointestimate', 'ppi_glm_stats',
           'ppi_glm_lambda', 'ppi_glm_cov', 'ppi_glm_fit', 'classical_glm_fit', 'naive_glm_fit', 'glm_ci', 'ppi_glm_ci',
           'classical_glm_ci', 'bh_adjust', 'de_table', 'sample_curation', 'simulate_de_genes', 'simulate_cells',
           'ppi_sim_replicates', 'ppi_sim_summary', 'plot_sim_coverage', 'plot_sim_width', 'CurationLog',
           'curation_widget', 'ppi_de', 'plot_volcano', 'plot_forest', 'run_ppi_sim']

# %% ../nbs/40_ppi_de.ipynb #2ae7dd78
def glm_design(labels, # (..., c) integer labels in 0..n_classes-1; 0 is the reference group
               n_classes:int=3, # K
              ) -> torch.Tensor: # (..., c, K) float64 rows (1, [y=1], ..., [y=K-1])
    "Saturated one-hot design with an intercept: the reference class is the baseline."
    labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes-1}, got range {int(labels.min())}..{int(labels.max())}")
    onehot = torch.nn.functional.one_hot(labels, n_classes).double()
    return torch.cat([torch.ones_like(onehot[..., :1]), onehot[..., 1:]], -1)

# %% ../nbs/40_ppi_de.ipynb #009d55a7
def glm_terms(counts:torch.Tensor,   # (..., c, G) counts
              design:torch.Tensor,   # (..., c, K) design rows
              theta:torch.Tensor,    # (..., G, K) coefficients
              offset:torch.Tensor|None=None, # (..., c) log size factors, or None
              family:str='poisson',  # 'poisson' or 'nb' (NB2)
              inv_dispersion=None,   # (..., G) NB2 theta; ignored for Poisson
              with_loss:bool=True,   # also return the loss (None otherwise, saves time)
             ) -> tuple:             # (loss, score, curvature), each (..., c, G)
    "Per-cell loss (up to terms constant in theta) and its first two derivatives in the linear predictor."
    lin = torch.einsum('...ck,...gk->...cg', design, theta)
    if offset is not None: lin = lin + offset[..., None]
    mean = torch.exp(lin)
    if family == 'poisson': return (mean - counts * lin) if with_loss else None, mean - counts, mean
    if family != 'nb': raise ValueError(f"family must be 'poisson' or 'nb', got {family!r}")
    phi = torch.as_tensor(inv_dispersion, dtype=mean.dtype)[..., None, :]
    log_phi_mean = torch.log(phi + mean)
    loss = (counts + phi) * log_phi_mean - counts * lin if with_loss else None
    return loss, phi * (mean - counts) / (phi + mean), phi * mean * (phi + counts) / (phi + mean)**2

# %% ../nbs/40_ppi_de.ipynb #bef317bc
def _cell_sum(a, b, w, v):
    "sum_i w_i a_i b_i^T v_ig: (..., c, K), (..., c, K), (..., c), (..., c, G) -> (..., G, K, K)."
    ab = (a[..., :, None] * b[..., None, :]) * w[..., None, None]
    out = torch.einsum('...cq,...cg->...gq', ab.flatten(-2), v)
    return out.unflatten(-1, (a.shape[-1], b.shape[-1]))

def _as_tensor(x, dtype=torch.float64):
    if x is None: return None
    if hasattr(x, 'toarray'): x = x.toarray()
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).to(dtype)

def _norm_weights(weights, shape):
    "Importance weights normalised to sum to n over the cell axis (ones when None)."
    if weights is None: return torch.ones(shape, dtype=torch.float64)
    w = _as_tensor(weights)
    if (w < 0).any() or not torch.isfinite(w).all(): raise ValueError("weights must be finite and >= 0")
    return w / w.sum(-1, keepdim=True) * w.shape[-1]

# %% ../nbs/40_ppi_de.ipynb #dcb0fe3d
def _ppi_parts(counts, labels, labels_hat, counts_unl, labels_hat_unl, weights, offset, offset_unl, n_classes):
    "Tensors of the three data terms: (curated with y), (curated with yhat), (automated with yhat)."
    x = _as_tensor(counts); z = glm_design(labels, n_classes); w = _norm_weights(weights, x.shape[:-1])
    o = _as_tensor(offset)
    parts = {'x': x, 'z': z, 'w': w, 'o': o, 'n': x.shape[-2]}
    if labels_hat is not None:
        parts.update(zh=glm_design(labels_hat, n_classes), xu=_as_tensor(counts_unl),
                     zu=glm_design(labels_hat_unl, n_classes), ou=_as_tensor(offset_unl))
        parts['N'] = parts['xu'].shape[-2]
        if parts['xu'].shape[-1] != x.shape[-1]: raise ValueError("curated and automated counts have different gene counts")
    if z.shape[:-1] != x.shape[:-1]: raise ValueError(f"labels {tuple(z.shape[:-1])} do not match counts {tuple(x.shape[:-1])}")
    return parts

# %% ../nbs/40_ppi_de.ipynb #07e4c48d
def _lam_terms(p, lam):
    "(design, counts, offset, per-cell weight, per-gene multiplier) for each term of L_lambda."
    n, G = p['n'], p['x'].shape[-1]
    lam = torch.as_tensor(lam, dtype=torch.float64).expand(*p['x'].shape[:-2], G)
    terms = [(p['z'], p['x'], p['o'], p['w'] / n, torch.ones_like(lam))]
    if 'zu' in p:
        terms += [(p['zh'], p['x'], p['o'], p['w'] / n, -lam),
                  (p['zu'], p['xu'], p['ou'], torch.ones(p['xu'].shape[:-1], dtype=torch.float64) / p['N'], lam)]
    return terms

def _closed_form(p, lam):
    "Saturated Poisson solution theta (..., G, K) from class totals S_k / W_k."
    S = W = 0
    for z, x, o, w, mult in _lam_terms(p, lam):
        onehot = torch.cat([1 - z[..., 1:].sum(-1, keepdim=True), z[..., 1:]], -1)   # (..., c, K) class indicators
        eo = torch.ones_like(w) if o is None else torch.exp(o)
        S = S + mult[..., None] * torch.einsum('...c,...ck,...cg->...gk', w, onehot, x)
        W = W + mult[..., None] * torch.einsum('...c,...ck->...k', w * eo, onehot)[..., None, :]
    with np.errstate(all='ignore'):
        log_rate = torch.where((S > 0) & (W > 0), torch.log(S) - torch.log(W), torch.full_like(S, float('nan')))
    return torch.cat([log_rate[..., :1], log_rate[..., 1:] - log_rate[..., :1]], -1)

# %% ../nbs/40_ppi_de.ipynb #566818f4
def _objective(p, theta, lam, family, phi, order=2):
    "L_lambda and, for order 2, its gradient (..., G, K) and Hessian (..., G, K, K)."
    L = g = H = 0
    for z, x, o, w, mult in _lam_terms(p, lam):
        loss, s, h = glm_terms(x, z, theta, o, family, phi)
        L = L + mult * torch.einsum('...c,...cg->...g', w, loss)
        if order == 2:
            g = g + mult[..., None] * torch.einsum('...c,...ck,...cg->...gk', w, z, s)
            H = H + mult[..., None, None] * _cell_sum(z, z, w, h)
    return L, g, H

def _newton(p, lam, family, phi, theta, max_iter=50, tol=1e-10):
    "Batched damped Newton on L_lambda for all genes (and replicates) at once."
    for _ in range(max_iter):
        L, g, H = _objective(p, theta, lam, family, phi)
        step = torch.linalg.solve(H, g[..., None])[..., 0]
        step = torch.where(torch.isfinite(step), step, torch.zeros_like(step))
        t = torch.ones_like(L)
        for _ in range(20):   # halve the step for genes whose objective went up
            new = theta - t[..., None] * step
            worse = _objective(p, new, lam, family, phi, order=0)[0] > L + 1e-12 * L.abs()
            if not worse.any(): break
            t = torch.where(worse, t / 2, t)
        theta = new
        if (t[..., None] * step).abs().max() < tol: break
    return theta

# %% ../nbs/40_ppi_de.ipynb #ccc0b7aa
def estimate_inv_dispersion(counts, # (..., c, G) counts
                            design, # (..., c, K) design of the labels used
                            theta,  # (..., G, K) fitted coefficients (offset-free part)
                            offset=None, # (..., c) log size factors
                            bounds=(1e-2, 1e6), # clip range for theta
                           ) -> torch.Tensor:   # (..., G) NB2 inverse dispersion
    "Method-of-moments NB2 inverse dispersion: sum m^2 / sum((x - m)^2 - x)."
    lin = torch.einsum('...ck,...gk->...cg', design, theta) + (0 if offset is None else offset[..., None])
    m = torch.exp(lin)
    excess = ((counts - m)**2 - counts).sum(-2)
    phi = (m**2).sum(-2) / excess.clamp_min(1e-12)
    return torch.where(excess > 0, phi, torch.full_like(phi, bounds[1])).clamp(*bounds)

# %% ../nbs/40_ppi_de.ipynb #b3fcf30b
def ppi_glm_pointestimate(counts, labels, # (..., n, G) curated counts; (..., n) true labels
                          labels_hat=None, # (..., n) automated labels of the curated cells (None: classical)
                          counts_unlabeled=None, labels_hat_unlabeled=None, # (..., N, G), (..., N)
                          lam=1.0,          # scalar or (..., G) power-tuning; 0 = classical, 1 = PPI
                          weights=None,     # (..., n) importance weights (normalised to sum n)
                          offset=None, offset_unlabeled=None, # (..., n), (..., N) log size factors
                          family:str='poisson', inv_dispersion=None, # NB2 theta (..., G); None: estimate
                          n_classes:int=3, method:str='auto', # 'closed' (Poisson), 'newton' or 'auto'
                         ) -> torch.Tensor: # (..., G, K) theta = (mu0, mu1, mu2); beta = theta[..., 1]
    "Minimise the PPI++ objective L_lambda for every gene at once."
    p = _ppi_parts(counts, labels, labels_hat, counts_unlabeled, labels_hat_unlabeled, weights, offset,
                   offset_unlabeled, n_classes)
    return _fit(p, lam, family, inv_dispersion, method)[0]

def _fit(p, lam, family, phi, method):
    theta = _closed_form(p, lam)
    if family == 'nb' and phi is None: phi = _auto_dispersion(p)
    if method == 'newton' or (method == 'auto' and family != 'poisson'):
        theta = _newton(p, lam, family, phi, torch.nan_to_num(theta))
    return theta, phi

def _auto_dispersion(p):
    "Moment NB2 dispersion at the naive fit (automated cells) or the classical fit (curated only)."
    key = ('xu', 'zu', 'ou') if 'zu' in p else ('x', 'z', 'o')
    q = {'x': p[key[0]], 'z': p[key[1]], 'o': p[key[2]], 'w': torch.ones(p[key[0]].shape[:-1], dtype=torch.float64),
         'n': p[key[0]].shape[-2]}
    return estimate_inv_dispersion(q['x'], q['z'], torch.nan_to_num(_closed_form(q, 0.)), q['o'])

# %% ../nbs/40_ppi_de.ipynb #afb20827
def _cov(a, b, s, t, w, n):
    "Cov over cells of the per-cell gradients w a s and w b t (divisor n): (..., G, K, K)."
    ma = torch.einsum('...c,...ck,...cg->...gk', w, a, s) / n
    mb = torch.einsum('...c,...ck,...cg->...gk', w, b, t) / n
    return _cell_sum(a, b, w * w, s * t) / n - ma[..., :, None] * mb[..., None, :]

def ppi_glm_stats(p:dict, theta, family='poisson', phi=None) -> dict:
    "Hessian and gradient covariances at theta (the pieces of the sandwich and of lambda*)."
    n = p['n']
    _, s, h = glm_terms(p['x'], p['z'], theta, p['o'], family, phi, with_loss=False)
    st = {'n': n, 'H': _cell_sum(p['z'], p['z'], p['w'], h) / n, 'GG': _cov(p['z'], p['z'], s, s, p['w'], n)}
    if 'zu' in p:
        N, ones = p['N'], torch.ones(p['xu'].shape[:-1], dtype=torch.float64)
        _, sh, _ = glm_terms(p['x'], p['zh'], theta, p['o'], family, phi, with_loss=False)
        _, su, _ = glm_terms(p['xu'], p['zu'], theta, p['ou'], family, phi, with_loss=False)
        st.update(N=N, GF=_cov(p['z'], p['zh'], s, sh, p['w'], n), FF=_cov(p['zh'], p['zh'], sh, sh, p['w'], n),
                  FuFu=_cov(p['zu'], p['zu'], su, su, ones, N))
        sum_f = (torch.einsum('...c,...ck,...cg->...gk', p['w'], p['zh'], sh) + torch.einsum('...ck,...cg->...gk', p['zu'], su))
        sq = _cell_sum(p['zh'], p['zh'], p['w']**2, sh * sh) + _cell_sum(p['zu'], p['zu'], ones, su * su)
        mean = sum_f / (n + N)
        st['F_pooled'] = (sq - (n + N) * mean[..., :, None] * mean[..., None, :]) / (n + N - 1)
    return st

# %% ../nbs/40_ppi_de.ipynb #65b5eee8
def ppi_glm_lambda(stats:dict,     # from `ppi_glm_stats`
                   coord:int=1,    # coefficient whose variance is minimised (1 = beta)
                   clip:bool=True, # clip to [0, 1]
                  ) -> torch.Tensor: # (..., G) lambda*_g
    "Per-gene PPI++ power-tuning parameter minimising Var(theta_coord) (ppi-python's 'element' mode)."
    v = torch.linalg.inv(stats['H'])[..., coord, :]
    quad = lambda M: torch.einsum('...k,...kl,...l->...', v, M, v)
    lam = quad(stats['GF'] + stats['GF'].transpose(-1, -2)) / (2 * (1 + stats['n'] / stats['N']) * quad(stats['F_pooled']))
    lam = torch.nan_to_num(lam, nan=0.0)
    return lam.clamp(0, 1) if clip else lam

# %% ../nbs/40_ppi_de.ipynb #e67099cf
def ppi_glm_cov(stats:dict, lam) -> torch.Tensor: # (..., G, K, K) covariance of theta-hat
    "Sandwich H^-1 [Cov(G - lam F) + (n/N) lam^2 Cov(F~)] H^-1 / n."
    V = stats['GG']
    if 'GF' in stats:
        l = torch.as_tensor(lam, dtype=torch.float64)[..., None, None]
        V = V - l * (stats['GF'] + stats['GF'].transpose(-1, -2)) + l**2 * (stats['FF'] + stats['n'] / stats['N'] * stats['FuFu'])
    Hinv = torch.linalg.inv(stats['H'])
    return Hinv @ V @ Hinv.transpose(-1, -2) / stats['n']

# %% ../nbs/40_ppi_de.ipynb #51754753
def ppi_glm_fit(counts, labels, labels_hat=None, counts_unlabeled=None, labels_hat_unlabeled=None,
                lam=None,        # None: PPI++ (per-gene lambda*); 1: PPI; 0: classical; or (..., G)
                coord:int=1, clip:bool=True, weights=None, offset=None, offset_unlabeled=None,
                family:str='poisson', inv_dispersion=None, n_classes:int=3, method:str='auto',
               ) -> dict: # theta (..., G, K), cov (..., G, K, K), lam (..., G), beta and se (..., G)
    "Fit the PPI++ GLM for all genes: point estimate, per-gene lambda and sandwich covariance."
    p = _ppi_parts(counts, labels, labels_hat, counts_unlabeled, labels_hat_unlabeled, weights, offset,
                   offset_unlabeled, n_classes)
    if 'zu' not in p: lam = 0.0
    if lam is None:
        theta1, phi = _fit(p, 1.0, family, inv_dispersion, method)
        lam = ppi_glm_lambda(ppi_glm_stats(p, theta1, family, phi), coord, clip)
        theta, phi = _fit(p, lam, family, phi, method)
    else:
        theta, phi = _fit(p, lam, family, inv_dispersion, method)
    cov = ppi_glm_cov(ppi_glm_stats(p, theta, family, phi), lam)
    lam = torch.as_tensor(lam, dtype=torch.float64).expand(theta.shape[:-1])
    return {'theta': theta, 'cov': cov, 'lam': lam, 'beta': theta[..., coord],
            'se': cov[..., coord, coord].clamp_min(0).sqrt(), 'inv_dispersion': phi}

# %% ../nbs/40_ppi_de.ipynb #387a38ec
def classical_glm_fit(counts, labels, weights=None, offset=None, family='poisson', inv_dispersion=None,
                      n_classes=3, method='auto') -> dict:
    "Classical estimator: curated cells and their true labels only (lambda = 0)."
    return ppi_glm_fit(counts, labels, weights=weights, offset=offset, family=family,
                       inv_dispersion=inv_dispersion, n_classes=n_classes, method=method)

def naive_glm_fit(counts_unlabeled, labels_hat_unlabeled, offset_unlabeled=None, family='poisson',
                  inv_dispersion=None, n_classes=3, method='auto') -> dict:
    "Naive estimator: the automated labels taken as true, on the automated cells."
    return classical_glm_fit(counts_unlabeled, labels_hat_unlabeled, offset=offset_unlabeled, family=family,
                             inv_dispersion=inv_dispersion, n_classes=n_classes, method=method)

# %% ../nbs/40_ppi_de.ipynb #4cdbee67
def glm_ci(fit:dict, alpha:float=0.05) -> tuple: # (lower, upper), each (..., G)
    "Two-sided z interval for beta at level 1 - alpha."
    q = norm.ppf(1 - alpha / 2)
    return fit['beta'] - q * fit['se'], fit['beta'] + q * fit['se']

def ppi_glm_ci(*args, alpha=0.05, **kwargs) -> tuple:
    "PPI++ interval for beta (lower, upper); `lam=1` gives PPI, `lam=0` classical."
    return glm_ci(ppi_glm_fit(*args, **kwargs), alpha)

def classical_glm_ci(*args, alpha=0.05, **kwargs) -> tuple:
    "Classical interval for beta from the curated cells only."
    return glm_ci(classical_glm_fit(*args, **kwargs), alpha)

# %% ../nbs/40_ppi_de.ipynb #bdf5f77f
def bh_adjust(p_values, # (G,) p-values; NaN entries are left out of the family and stay NaN
             ) -> np.ndarray: # (G,) Benjamini-Hochberg adjusted p-values
    "Benjamini-Hochberg step-up adjusted p-values (statsmodels `fdr_bh` on the finite entries)."
    from statsmodels.stats.multitest import multipletests
    p = np.asarray(p_values, dtype=float); out = np.full_like(p, np.nan); ok = np.isfinite(p)
    if ok.any(): out[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return out

# %% ../nbs/40_ppi_de.ipynb #b7a915b1
def de_table(fit:dict,        # from `ppi_glm_fit` / `classical_glm_fit` / `naive_glm_fit` (no batch axis)
             genes=None,      # (G,) gene names for the index
             alpha:float=0.05,
            ) -> pd.DataFrame: # per gene: beta (log fold change), se, ci_low, ci_high, z, p_value, p_adj, lam, ok
    "Per-gene DE results as a DataFrame indexed by gene."
    beta, se = fit['beta'].numpy(), fit['se'].numpy()
    if beta.ndim != 1: raise ValueError(f"de_table expects one fit (G,), got shape {beta.shape}")
    lo, hi = (t.numpy() for t in glm_ci(fit, alpha))
    ok = np.isfinite(beta) & np.isfinite(se) & (se > 0)
    with np.errstate(all='ignore'): z = np.where(ok, beta / se, np.nan)
    p = np.where(ok, 2 * norm.sf(np.abs(z)), np.nan)
    genes = pd.Index(genes if genes is not None else [f'gene_{g}' for g in range(len(beta))], name='gene')
    return pd.DataFrame({'beta': np.where(ok, beta, np.nan), 'se': np.where(ok, se, np.nan), 'ci_low': np.where(ok, lo, np.nan),
                         'ci_high': np.where(ok, hi, np.nan), 'z': z, 'p_value': p, 'p_adj': bh_adjust(p),
                         'lam': fit['lam'].numpy(), 'ok': ok}, index=genes)

# %% ../nbs/40_ppi_de.ipynb #ea2833fa
def sample_curation(labels_hat,             # (..., P) automated labels of the pool to curate from
                    n:int,                  # cells to curate
                    target:int=1,           # the label that is oversampled
                    target_fraction:float=1/3, # share of the n cells drawn among predicted targets
                    seed:int|torch.Generator=0,
                   ) -> tuple:  # index (..., n) into the pool, inclusion prob pi (..., n), weights eta (..., n)
    "Stratified curation sample with a fixed share of predicted-target cells, and its importance weights."
    yh = _as_tensor(labels_hat, torch.long)
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    is_t = yh == target
    n_t = int(round(target_fraction * n)); n_o = n - n_t
    N_t = is_t.sum(-1, keepdim=True); N_o = yh.shape[-1] - N_t
    if (N_t < n_t).any() or (N_o < n_o).any():
        raise ValueError(f"pool too small: need {n_t} predicted-target and {n_o} other cells, have {int(N_t.min())} and {int(N_o.min())}")
    keys = torch.rand(yh.shape, generator=gen, dtype=torch.float64)
    idx_t = torch.where(is_t, keys, torch.inf).topk(n_t, dim=-1, largest=False).indices
    idx_o = torch.where(~is_t, keys, torch.inf).topk(n_o, dim=-1, largest=False).indices
    idx = torch.cat([idx_t, idx_o], -1)
    prob = torch.cat([(n_t / N_t.double()).expand(idx_t.shape), (n_o / N_o.double()).expand(idx_o.shape)], -1)
    eta = 1 / prob
    return idx, prob, eta / eta.sum(-1, keepdim=True) * n

# %% ../nbs/40_ppi_de.ipynb #2ef5268c
def simulate_de_genes(seed:int=0) -> pd.DataFrame:
    "The simulation's 20 genes: kind, reference rate, true LFC (target vs reference) and the 'other' class LFC."
    rng = np.random.default_rng(seed)
    kinds = ['marker'] * 4 + ['up'] * 4 + ['down'] * 4 + ['null'] * 8
    lfc = np.array([3.0] * 4 + [math.log(2)] * 4 + [-math.log(2)] * 4 + [0.0] * 8)
    base = np.where(np.array(kinds) == 'marker', 0.3, rng.uniform(1.0, 6.0, 20))
    return pd.DataFrame({'kind': kinds, 'base_rate': base, 'lfc': lfc, 'other_lfc': rng.normal(0, 0.5, 20)},
                        index=pd.Index([f'{k}_{i}' for i, k in enumerate(kinds)], name='gene'))

# %% ../nbs/40_ppi_de.ipynb #b7798d50
def simulate_cells(genes:pd.DataFrame, # from `simulate_de_genes`
                   shape:tuple,        # (R, M): replicates x cells
                   gen:torch.Generator,
                   p_types=(0.5, 0.2, 0.3), p_doublet=0.05, p_low=0.3, low_depth=0.3, p_missed=0.7,
                   p_random=0.05, inv_dispersion=5.0,
                  ) -> tuple: # counts (R, M, G), true labels (R, M), automated labels (R, M)
    "Cells with true labels, NB counts and automated labels biased by missed low-RNA cells and doublets."
    rand = lambda: torch.rand(shape, generator=gen, dtype=torch.float64)
    y = torch.multinomial(torch.tensor(p_types, dtype=torch.float64), math.prod(shape), True, generator=gen).view(shape)
    doublet = rand() < p_doublet
    low = (rand() < p_low) & ~doublet
    depth = torch.where(low, low_depth, 1.0) * torch.exp(0.2 * torch.randn(shape, generator=gen, dtype=torch.float64))
    log_base = torch.tensor(np.log(genes['base_rate'].to_numpy()))
    rates = torch.exp(torch.stack([log_base, log_base + torch.tensor(genes['lfc'].to_numpy()),
                                   log_base + torch.tensor(genes['other_lfc'].to_numpy())]))       # (3, G)
    mean = depth[..., None] * torch.where(doublet[..., None], rates[0] + rates[1], rates[y])
    gamma = torch._standard_gamma(torch.full_like(mean, inv_dispersion), generator=gen) / inv_dispersion
    counts = torch.poisson(mean * gamma, generator=gen)
    y = torch.where(doublet, 2, y)
    y_hat = torch.where(doublet, 1, y)
    y_hat = torch.where((y == 1) & low & (rand() < p_missed), 2, y_hat)
    y_hat = torch.where(rand() < p_random, torch.randint(0, 3, shape, generator=gen), y_hat)
    return counts, y, y_hat

# %% ../nbs/40_ppi_de.ipynb #2b929704
SIM_ARMS = ('naive', 'classical', 'ppi', 'ppi++')

def ppi_sim_replicates(n_reps:int=100, n_unlabeled:int=20_000, n_curated:int=500, seed:int=0,
                       genes:pd.DataFrame|None=None, target_fraction:float=1/3, chunk:int=20,
                       arms=SIM_ARMS, # also: 'classical_unweighted', 'classical_pi_weights' (wrong on purpose)
                       family:str='poisson', **sim_kwargs,
                      ) -> dict: # arm -> {'beta', 'se', 'lam'}, each (n_reps, G) numpy
    "Simulate replicates and fit each arm to all of them, `chunk` replicates per vectorised call."
    genes = simulate_de_genes(seed) if genes is None else genes
    gen = torch.Generator().manual_seed(seed)
    out = {a: {'beta': [], 'se': [], 'lam': []} for a in arms}
    for start in range(0, n_reps, chunk):
        r = min(chunk, n_reps - start)
        xu, _, yhu = simulate_cells(genes, (r, n_unlabeled), gen, **sim_kwargs)
        xp, yp, yhp = simulate_cells(genes, (r, 4 * n_curated), gen, **sim_kwargs)
        idx, pi, eta = sample_curation(yhp, n_curated, target_fraction=target_fraction, seed=gen)
        xc, yc, yhc = xp.gather(1, idx[..., None].expand(-1, -1, xp.shape[-1])), yp.gather(1, idx), yhp.gather(1, idx)
        fits = {'naive': lambda: naive_glm_fit(xu, yhu, family=family),
                'classical': lambda: classical_glm_fit(xc, yc, weights=eta, family=family),
                'classical_unweighted': lambda: classical_glm_fit(xc, yc, family=family),
                'classical_pi_weights': lambda: classical_glm_fit(xc, yc, weights=pi, family=family),
                'ppi': lambda: ppi_glm_fit(xc, yc, yhc, xu, yhu, lam=1.0, weights=eta, family=family),
                'ppi++': lambda: ppi_glm_fit(xc, yc, yhc, xu, yhu, weights=eta, family=family)}
        for a in arms:
            f = fits[a]()
            for k in out[a]: out[a][k].append(f[k].numpy())
    return {a: {k: np.concatenate(v) for k, v in d.items()} for a, d in out.items()}

# %% ../nbs/40_ppi_de.ipynb #6b4f0b9a
def ppi_sim_summary(reps:dict,            # from `ppi_sim_replicates`
                    genes:pd.DataFrame,   # the simulated genes (true `lfc`, `kind`)
                    alpha:float=0.05,
                   ) -> tuple: # (per-arm table, per-arm-and-gene table)
    "Coverage, type-I error, power, width and bias per arm (undefined fits counted, not dropped)."
    q, truth, null = norm.ppf(1 - alpha / 2), genes['lfc'].to_numpy(), (genes['kind'] == 'null').to_numpy()
    rows, per_gene = [], []
    ref_width = np.nanmedian(2 * q * reps['classical']['se']) if 'classical' in reps else np.nan
    for arm, r in reps.items():
        beta, se = r['beta'], r['se']
        ok = np.isfinite(beta) & np.isfinite(se)
        cover = np.where(ok, np.abs(beta - truth) <= q * se, False)
        reject = np.where(ok, np.abs(beta) > q * se, False)
        width = np.where(ok, 2 * q * se, np.nan)
        bias = np.nanmean(np.where(ok, beta, np.nan), 0) - truth
        rows.append({'arm': arm, 'coverage': cover[ok].mean(), 'coverage_null': cover[:, null][ok[:, null]].mean(),
                     'type1_error': reject[:, null][ok[:, null]].mean(), 'power': reject[:, ~null][ok[:, ~null]].mean(),
                     'median_width': np.nanmedian(width), 'width_vs_classical': np.nanmedian(width) / ref_width,
                     'mean_abs_bias': np.abs(bias).mean(), 'rmse': np.sqrt(np.nanmean((beta - truth)**2)),
                     'mean_lambda': np.nanmean(r['lam']), 'n_undefined': int((~ok).sum()), 'n_intervals': int(ok.sum())})
        per_gene.append(pd.DataFrame({'arm': arm, 'gene': genes.index, 'kind': genes['kind'].to_numpy(), 'lfc': truth,
                                      'coverage': cover.sum(0) / ok.sum(0).clip(1), 'bias': bias,
                                      'median_width': np.nanmedian(width, 0), 'mean_lambda': np.nanmean(r['lam'], 0)}))
    return pd.DataFrame(rows), pd.concat(per_gene, ignore_index=True)

# %% ../nbs/40_ppi_de.ipynb #3dfcc49a
def plot_sim_coverage(table:pd.DataFrame, # from `ppi_sim_summary`
                      n_reps:int,         # replicates behind each rate (for the binomial error bars)
                      alpha:float=0.05, ax=None):
    "Coverage of 1-alpha intervals per arm, with +-2 binomial standard errors, and type-I error on null genes."
    if ax is None: import matplotlib.pyplot as plt; _, ax = plt.subplots(figsize=(6, 3.2))
    x = np.arange(len(table))
    se = np.sqrt((1 - alpha) * alpha / n_reps)
    ax.bar(x - 0.2, table['coverage'], 0.4, yerr=2 * se, capsize=3, color='tab:blue', label='coverage (all genes)')
    ax.bar(x + 0.2, table['type1_error'], 0.4, yerr=2 * np.sqrt(alpha * (1 - alpha) / n_reps), capsize=3,
           color='tab:orange', label='type-I error (null genes)')
    ax.axhline(1 - alpha, color='k', ls='--', lw=1); ax.axhline(alpha, color='k', ls=':', lw=1)
    ax.set_xticks(x, table['arm']); ax.set_ylim(0, 1.05); ax.set_ylabel('rate')
    ax.legend(fontsize=8, loc='center right'); ax.set_title(f'{n_reps} replicates, nominal {1-alpha:.0%}')
    return ax

# %% ../nbs/40_ppi_de.ipynb #33a0e350
def plot_sim_width(per_gene:pd.DataFrame, arms=('classical', 'ppi', 'ppi++'), ax=None):
    "Median interval width per gene (log fold change units) for the unbiased arms."
    if ax is None: import matplotlib.pyplot as plt; _, ax = plt.subplots(figsize=(7, 3.2))
    for arm in arms:
        d = per_gene[per_gene['arm'] == arm]
        ax.plot(np.arange(len(d)), d['median_width'], 'o-', ms=4, label=arm)
    d = per_gene[per_gene['arm'] == arms[0]]
    ax.set_xticks(np.arange(len(d)), d['gene'], rotation=90, fontsize=7)
    ax.set_ylabel('median 95% CI width (log FC)'); ax.legend(fontsize=8)
    return ax

# %% ../nbs/40_ppi_de.ipynb #c9f0906e
class CurationLog:
    "Curation decisions for a list of cells, written to a CSV after every decision (atomic replace), resumable."
    DECISIONS = ('accept', 'relabel', 'reject')
    def __init__(self, path:str|Path,  # CSV file; read back if it exists
                 cell_ids,              # (n,) cells to curate, in order
                 auto_labels,           # (n,) automated label codes (0..K-1)
                 class_names=('reference', 'target', 'other')):
        self.path, self.class_names = Path(path), tuple(class_names)
        self.auto = pd.Series(np.asarray(auto_labels, dtype=int), index=pd.Index(np.asarray(cell_ids).astype(str), name='cell_id'))
        cols = ['cell_id', 'auto_label', 'decision', 'label', 'time']
        self.table = pd.read_csv(self.path, dtype={'cell_id': str}) if self.path.exists() else pd.DataFrame(columns=cols)
        unknown = set(self.table['cell_id']) - set(self.auto.index)
        if unknown: raise ValueError(f"{len(unknown)} cells in {self.path.name} are not in this curation set: {sorted(unknown)[:5]}")

    def record(self, cell_id, decision:str, label:int|None=None):
        "Store one decision (a repeated cell overrides its earlier decision) and write the log to disk."
        cell_id = str(cell_id)
        if cell_id not in self.auto.index: raise KeyError(f"cell {cell_id!r} is not in the curation set")
        if decision not in self.DECISIONS: raise ValueError(f"decision must be one of {self.DECISIONS}, got {decision!r}")
        auto = int(self.auto[cell_id])
        if decision == 'relabel' and (label is None or not 0 <= int(label) < len(self.class_names)):
            raise ValueError(f"relabel needs a label in 0..{len(self.class_names)-1}")
        final = {'accept': auto, 'relabel': None if label is None else int(label), 'reject': len(self.class_names) - 1}[decision]
        row = pd.DataFrame([{'cell_id': cell_id, 'auto_label': auto, 'decision': decision, 'label': final,
                             'time': pd.Timestamp.now(tz='UTC').isoformat()}])
        new = pd.concat([self.table[self.table['cell_id'] != cell_id], row], ignore_index=True)
        self._write(new); self.table = new

    def _write(self, table:pd.DataFrame):
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f'.{self.path.name}.', suffix='.tmp')
        try:
            with os.fdopen(fd, 'w') as f:
                table.to_csv(f, index=False); f.flush(); os.fsync(f.fileno())
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp): os.remove(tmp)

# %% ../nbs/40_ppi_de.ipynb #0c71ea45
from fastcore.basics import patch

@patch(as_prop=True)
def pending(self:CurationLog) -> list:
    "Cells without a decision yet, in curation order."
    return [c for c in self.auto.index if c not in set(self.table['cell_id'])]

@patch
def curated_labels(self:CurationLog) -> pd.Series:
    "True label per decided cell (accept: automated, relabel: the new label, reject: the last class)."
    return self.table.set_index('cell_id')['label'].astype(int).reindex([c for c in self.auto.index if c in set(self.table['cell_id'])])

# %% ../nbs/40_ppi_de.ipynb #7dfbbf7b
def curation_widget(log:CurationLog,  # where decisions go
                    describe=None,    # cell_id -> str/HTML or a matplotlib Figure shown for the cell
                   ):
    "An ipywidgets panel: the next undecided cell, its automated label, Accept / Relabel / Reject."
    import ipywidgets as w
    from IPython.display import display
    out, status = w.Output(), w.HTML()
    new_label = w.Dropdown(options=[(n, i) for i, n in enumerate(log.class_names)], description='relabel to')
    buttons = {d: w.Button(description=d.capitalize(), button_style=s)
               for d, s in zip(log.DECISIONS, ('success', 'warning', 'danger'))}
    def show():
        out.clear_output(wait=True)
        todo = log.pending
        status.value = f"<b>{len(log.auto) - len(todo)}/{len(log.auto)} decided</b>; log: {log.path}"
        for b in buttons.values(): b.disabled = not todo
        if not todo: return
        cell = todo[0]
        with out:
            print(f"cell {cell}: automated label = {log.class_names[int(log.auto[cell])]}")
            if describe is not None: display(describe(cell))
    def click(decision):
        def handler(_):
            log.record(log.pending[0], decision, new_label.value if decision == 'relabel' else None); show()
        return handler
    for d, b in buttons.items(): b.on_click(click(d))
    show()
    return w.VBox([status, out, w.HBox([buttons['accept'], new_label, buttons['relabel'], buttons['reject']])])

# %% ../nbs/40_ppi_de.ipynb #7e5d07d8
def _codes(values, reference, target) -> np.ndarray:
    v = np.asarray(values).astype(str)
    return np.where(v == str(reference), 0, np.where(v == str(target), 1, 2))

def ppi_de(adata_unlabeled,            # AnnData, automated-only cells (N, G)
           adata_curated,              # AnnData, curated cells (n, G)
           label_key:str,              # .obs column with the automated label (both objects)
           curated_key:str,            # .obs column of `adata_curated` with the curated label
           reference:str, target:str,  # the two groups; beta = log(target / reference)
           layer:str|None='counts',    # raw counts layer (None: .X)
           weights_key:str|None=None,  # .obs column of importance weights on curated cells
           size_factor_key:str|None=None, # .obs column of size factors (log used as offset)
           method:str='ppi++',         # 'ppi++', 'ppi', 'classical' or 'naive'
           family:str='poisson', alpha:float=0.05, clip:bool=True,
          ) -> pd.DataFrame:           # per gene: beta, se, ci_low, ci_high, z, p_value, p_adj, lam, ok
    "Differential expression target vs reference with PPI++ (or the classical / naive / PPI baselines)."
    if list(adata_unlabeled.var_names) != list(adata_curated.var_names): raise ValueError("the two AnnData objects have different genes")
    get = lambda a: a.layers[layer] if layer is not None else a.X
    off = lambda a: None if size_factor_key is None else np.log(a.obs[size_factor_key].to_numpy(float))
    xc, xu = get(adata_curated), get(adata_unlabeled)
    yc = _codes(adata_curated.obs[curated_key], reference, target)
    yhc, yhu = _codes(adata_curated.obs[label_key], reference, target), _codes(adata_unlabeled.obs[label_key], reference, target)
    w = None if weights_key is None else adata_curated.obs[weights_key].to_numpy(float)
    if method == 'naive': fit = naive_glm_fit(xu, yhu, off(adata_unlabeled), family)
    elif method == 'classical': fit = classical_glm_fit(xc, yc, w, off(adata_curated), family)
    elif method in ('ppi', 'ppi++'):
        fit = ppi_glm_fit(xc, yc, yhc, xu, yhu, lam=1.0 if method == 'ppi' else None, clip=clip, weights=w,
                          offset=off(adata_curated), offset_unlabeled=off(adata_unlabeled), family=family)
    else: raise ValueError(f"method must be 'ppi++', 'ppi', 'classical' or 'naive', got {method!r}")
    return de_table(fit, adata_curated.var_names, alpha)

# %% ../nbs/40_ppi_de.ipynb #cf2dcda4
def plot_volcano(table:pd.DataFrame, # from `de_table` / `ppi_de`
                 alpha:float=0.05, n_labels:int=8, ax=None):
    "Volcano plot: log fold change vs -log10 p, BH-significant genes in colour, the strongest labelled."
    if ax is None: import matplotlib.pyplot as plt; _, ax = plt.subplots(figsize=(5, 4))
    t = table[table['ok']]
    sig = t['p_adj'] < alpha
    ax.scatter(t['beta'], -np.log10(t['p_value'].clip(lower=1e-300)), s=10, c=np.where(sig, 'tab:red', 'lightgrey'))
    for g, r in t[sig].nsmallest(n_labels, 'p_value').iterrows():
        ax.annotate(str(g), (r['beta'], -np.log10(max(r['p_value'], 1e-300))), fontsize=7)
    ax.set_xlabel('log fold change (target / reference)'); ax.set_ylabel('-log10 p')
    ax.set_title(f"{int(sig.sum())} genes at BH {alpha:.0%}")
    return ax

# %% ../nbs/40_ppi_de.ipynb #4490fd7a
def plot_forest(tables:dict,   # name -> per-gene table with beta, ci_low, ci_high
                genes,         # genes to show, top to bottom
                reference:pd.Series|None=None, # optional per-gene reference value (drawn as a cross)
                ax=None):
    "Forest plot: each estimator's interval per gene, side by side."
    if ax is None: import matplotlib.pyplot as plt; _, ax = plt.subplots(figsize=(6, 0.35 * len(genes) + 1))
    genes = list(genes); y = np.arange(len(genes))[::-1]
    for j, (name, t) in enumerate(tables.items()):
        off = (j - (len(tables) - 1) / 2) * 0.18
        r = t.loc[genes]
        ax.errorbar(r['beta'], y + off, xerr=[r['beta'] - r['ci_low'], r['ci_high'] - r['beta']], fmt='o', ms=3, label=name)
    if reference is not None: ax.scatter(reference.loc[genes], y, marker='x', c='k', zorder=3, label='full curation')
    ax.axvline(0, c='grey', lw=0.8); ax.set_yticks(y, genes); ax.set_xlabel('log fold change (95% CI)')
    ax.legend(fontsize=7, loc='best')
    return ax

# %% ../nbs/40_ppi_de.ipynb #4d7bac7b
def run_ppi_sim(quick:bool=False, seed:int=0, data_dir=None, # data_dir unused (simulation only)
                n_reps:int|None=None, n_unlabeled:int=20_000, n_curated:int=500, alpha:float=0.05,
                target_fraction:float=1/3, chunk:int=20, family:str='poisson') -> Experiment:
    "PPI++ DE simulation: coverage, type-I error, width and bias of naive / classical / PPI / PPI++."
    import matplotlib.pyplot as plt
    seed_everything(seed)
    n_reps = n_reps or (40 if quick else 1000)
    genes = simulate_de_genes(seed)
    t0 = time.perf_counter()
    reps = ppi_sim_replicates(n_reps, n_unlabeled, n_curated, seed, genes, target_fraction, chunk, family=family)
    table, per_gene = ppi_sim_summary(reps, genes, alpha)
    seconds = time.perf_counter() - t0
    fig, axs = plt.subplots(1, 2, figsize=(13, 3.6), gridspec_kw={'width_ratios': [1, 1.3]})
    plot_sim_coverage(table, n_reps, alpha, ax=axs[0]); plot_sim_width(per_gene, ax=axs[1]); fig.tight_layout()
    se = math.sqrt(alpha * (1 - alpha) / n_reps)
    notes = (f"{n_reps} replicates, N={n_unlabeled}, n={n_curated}, target fraction {target_fraction:.2f}, family {family}, "
             f"seed {seed}; {seconds:.0f} s. Binomial SE of a coverage rate over {n_reps} replicates: {se:.4f} "
             f"(per gene; rates pooled over 20 genes are more precise). Coverage expected in [0.93, 0.97] for classical "
             f"and PPI++; width_vs_classical is the ratio of median CI widths.")
    return Experiment(table=table, tables={'per_gene': per_gene}, figures={'ppi_sim': fig}, notes=notes)
