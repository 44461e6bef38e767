"""Benchmark: stlearn_nb.hestseg metrics (one bincount of label pairs) vs a plain per-pair IoU loop, and model inference.

Run: python benchmarks/hestseg_metrics.py [--repeats 3]
Prints the time of PQ and AJI on 1000x1000 maps with ~800 nuclei for both implementations, their ratio and
whether they agree, then HoVerNetLite inference tiles/s on CPU (and on CUDA when present). Timings on a shared
machine are noisy: compare the ratio, measured in the same run.
"""
import argparse, time
import numpy as np, torch
from stlearn_nb.hestseg import (ORGAN_STYLES, _place_nuclei, _draw_nuclei, pq_stats, aji_score, HoVerNetLite,
                                hover_postprocess, POST_SYNTH)

def maps(seed=0, size=1000):
    "A 1000x1000 truth with ~800 nuclei and a prediction: shifted, one in 20 missed, one in 20 merged with a neighbour."
    rng = np.random.default_rng(seed)
    nuc = _place_nuclei(size, dict(ORGAN_STYLES['colon'], density=1.0), rng, spacing=35.)
    true, _ = _draw_nuclei(nuc, size)
    pred = np.roll(true, (1, 2), (0, 1)).copy()
    ids = np.unique(pred)[1:]
    lut = np.arange(true.max() + 1); drop = rng.random(len(ids)) < 0.05; lut[ids[drop]] = 0
    merge = rng.random(len(ids)) < 0.05; lut[ids[merge]] = np.maximum(ids[merge] - 1, 0)
    return true, lut[pred]

def loop_tables(true, pred):
    "Reference: per true nucleus, the overlapping predictions and their IoU from boolean masks (HoVer-Net's way)."
    t_ids = [i for i in np.unique(true) if i]; p_ids = [i for i in np.unique(pred) if i]
    p_index = {p: k for k, p in enumerate(p_ids)}
    inter = np.zeros((len(t_ids), len(p_ids))); union = np.zeros_like(inter)
    p_masks = {p: pred == p for p in p_ids}
    for a, t in enumerate(t_ids):
        tm = true == t
        for p in np.unique(pred[tm]):
            if p == 0: continue
            pm = p_masks[p]; inter[a, p_index[p]] = (tm & pm).sum(); union[a, p_index[p]] = (tm | pm).sum()
    return inter, union, np.array([(true == t).sum() for t in t_ids]), np.array([m.sum() for m in p_masks.values()])

def loop_pq_aji(true, pred):
    inter, union, ta, pa = loop_tables(true, pred)
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0)
    tp = (iou > 0.5).sum(); fp, fn = len(pa) - tp, len(ta) - tp
    dq = tp / (tp + 0.5 * fp + 0.5 * fn); sq = iou[iou > 0.5].sum() / max(tp, 1)
    best = iou.argmax(1); has = iou.max(1) > 0
    used = np.zeros(len(pa), bool); used[best[has]] = True
    aji = inter[has, best[has]].sum() / (union[has, best[has]].sum() + ta[~has].sum() + pa[~used].sum())
    return dq * sq, aji

def timed(f, repeats):
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter(); out = f(); best = min(best, time.perf_counter() - t)
    return out, best

def main(repeats=3):
    true, pred = maps()
    print(f"maps: {true.shape}, {len(np.unique(true)) - 1} true and {len(np.unique(pred)) - 1} predicted nuclei")
    (pq_v, aji_v), t_fast = timed(lambda: (pq_stats(true, pred)['pq'], aji_score(true, pred)), repeats)
    (pq_l, aji_l), t_loop = timed(lambda: loop_pq_aji(true, pred), 1)
    agree = abs(pq_v - pq_l) < 1e-9 and abs(aji_v - aji_l) < 1e-9
    print(f"PQ+AJI  bincount table: {t_fast * 1e3:8.1f} ms   per-pair loop: {t_loop * 1e3:8.1f} ms   "
          f"ratio {t_loop / t_fast:6.1f}x   agree: {agree} (PQ {pq_v:.6f} vs {pq_l:.6f}, AJI {aji_v:.6f} vs {aji_l:.6f})")
    devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    for dev in devices:
        model = HoVerNetLite(width=16).to(dev).eval(); x = torch.rand(16, 3, 256, 256, device=dev)
        with torch.no_grad():
            model(x[:2])
            if dev == 'cuda': torch.cuda.synchronize()
            _, t = timed(lambda: (model(x), torch.cuda.synchronize() if dev == 'cuda' else None), repeats)
        print(f"HoVerNetLite(width=16) forward, {dev} ({torch.get_num_threads()} threads): {len(x) / t:7.1f} tiles/s of 256x256")
    out = model(x[:1].to(dev)).detach().float().cpu()[0]
    _, t_post = timed(lambda: hover_postprocess(out[:2].softmax(0)[1].numpy(), out[2:4].numpy(), **POST_SYNTH), repeats)
    print(f"post-processing (one 256x256 tile, CPU): {t_post * 1e3:.1f} ms")
    if not torch.cuda.is_available(): print("no CUDA device here: GPU inference not measured")

if __name__ == '__main__':
    p = argparse.ArgumentParser(); p.add_argument('--repeats', type=int, default=3)
    main(p.parse_args().repeats)
