"""Benchmark: whole-slide nuclei segmentation, block-wise (`hestseg_wsi.segment_slide`) vs today's one pass (`segment_nuclei`).

Run:
  python benchmarks/segment_wsi.py --model model.pt c6                  # her2st C6 (92 Mpx JPEG), block-wise
  python benchmarks/segment_wsi.py --model model.pt c6 --one-pass       # ... and the one pass (needs ~11 GB RAM)
  python benchmarks/segment_wsi.py --model model.pt big [--side 20000]  # a >= 400 Mpx pyramidal BigTIFF tiled from the her2st sections
Each measurement runs in its own subprocess, which reports its wall time, Mpx/s (slide pixels) and peak RSS (ru_maxrss), so the
ratios printed at the end (block-wise / one pass) come from the same run on the same machine. `--model` is a file from
`stlearn-nb hestseg-monuseg` (an untrained MobileHoVerNet costs the same in the network, not in post-processing).
The work folder of a block-wise run is resumable: rerunning the same command continues an interrupted run.
"""
import argparse, json, resource, subprocess, sys, time
from pathlib import Path

HER2ST_MPP = 0.69

def child(kind, slide, model, mpp, out, block_px, threads):
    "Runs in a subprocess: one measurement, printed as one JSON line."
    import numpy as np, torch
    torch.set_num_threads(threads)
    start = time.perf_counter()
    if kind == 'blockwise':
        from stlearn_nb.hestseg_wsi import segment_slide
        s = segment_slide(slide, model, mpp, out, block_px=block_px, progress=True, log_every=20)
        n, shape = s['n_nuclei'], (s['height'], s['width'])
    else:
        from stlearn_nb.data import SlideReader
        from stlearn_nb.hestseg_real import segment_nuclei
        with SlideReader(slide) as r: img = r.read(0, 0, *r.shape)
        inst = segment_nuclei(img, model, mpp); ids = np.unique(inst); ids = ids[ids > 0]; n, shape = len(ids), img.shape[:2]
    sec = time.perf_counter() - start
    print(json.dumps(dict(kind=kind, slide=str(slide), n_nuclei=n, mpx=shape[0] * shape[1] / 1e6, seconds=round(sec, 1),
                          mpx_per_s=round(shape[0] * shape[1] / 1e6 / sec, 3), peak_rss_gb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2))), flush=True)
    if kind == 'onepass':   # after the measurement: centroids (x, y) in slide px, for the one-to-one comparison in the parent
        from scipy import ndimage
        Path(out).mkdir(parents=True, exist_ok=True)
        np.save(Path(out)/'centroids.npy', np.array(ndimage.center_of_mass(inst > 0, inst, ids))[:, ::-1])

def measure(kind, slide, args, out):
    cmd = [sys.executable, __file__, '--child', kind, '--model', str(args.model), '--block-px', str(args.block_px), '--threads', str(args.threads),
           '--mpp', str(args.mpp), '--slide', str(slide), '--out', str(out), 'c6']
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode: raise RuntimeError(f"{kind} failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])

def build_bigtiff(path, side, her2st):
    "A side x side pyramidal BigTIFF whose tissue is the her2st sections laid side by side (each decoded once, kept while needed)."
    import numpy as np
    from stlearn_nb.data import SlideReader, write_pyramid_tiff
    sections = [SlideReader(p) for p in sorted((her2st/'images').glob('*.jpg'))]
    sh, sw = min(s.shape[0] for s in sections), min(s.shape[1] for s in sections)
    def tile_fn(y, x, h, w):
        out = np.empty((h, w, 3), np.uint8)
        rows, cols = np.arange(y, y + h), np.arange(x, x + w)   # section k of a grid of sh x sw cells, cycling through the sections
        k = (rows[:, None] // sh * (side // sw + 1) + cols[None] // sw) % len(sections)
        for s in np.unique(k):
            m = k == s; r, c = np.nonzero(m)
            reg = sections[s]._arr   # decoded JPEG (PIL): index directly
            out[r, c] = reg[rows[r] % sh, cols[c] % sw]
        return out
    write_pyramid_tiff(path, (side, side), tile_fn, tile=512, levels=3)
    for s in sections: s.close()
    return path

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('which', choices=['c6', 'big']); p.add_argument('--model', required=True)
    p.add_argument('--one-pass', action='store_true'); p.add_argument('--block-px', type=int, default=2048)
    p.add_argument('--threads', type=int, default=2); p.add_argument('--mpp', type=float, default=HER2ST_MPP)
    p.add_argument('--side', type=int, default=20000); p.add_argument('--work', default='/tmp/segment_wsi_bench')
    p.add_argument('--csv', help='append the measurements to this CSV'); p.add_argument('--child'); p.add_argument('--slide'); p.add_argument('--out')
    args = p.parse_args()
    if args.child: return child(args.child, args.slide, args.model, args.mpp, args.out, args.block_px, args.threads)
    from stlearn_nb.data import shared_data_dir
    her2st, work = shared_data_dir('her2st'), Path(args.work); work.mkdir(parents=True, exist_ok=True)
    if her2st is None: sys.exit("needs ../shared/data/her2st")
    if args.which == 'c6': slide = her2st/'images'/'C6.jpg'
    else:
        slide = work/f'her2st_{args.side}.tif'
        if not slide.exists(): t = time.perf_counter(); build_bigtiff(slide, args.side, her2st); print(f"built {slide} in {time.perf_counter() - t:.0f} s", flush=True)
    rows = [measure('blockwise', slide, args, work/f'{slide.stem}_blockwise')]
    print(json.dumps(rows[-1]), flush=True)
    if args.one_pass: rows.append(measure('onepass', slide, args, work/'onepass')); print(json.dumps(rows[-1]), flush=True)
    if len(rows) == 2:
        b, o = rows
        print(f"block-wise / one pass: time {b['seconds'] / o['seconds']:.2f}x, peak RSS {b['peak_rss_gb'] / o['peak_rss_gb']:.2f}x, nuclei {b['n_nuclei']} vs {o['n_nuclei']}")
        b.update(match_centroids(work/f'{slide.stem}_blockwise'/'nuclei.csv', work/'onepass'/'centroids.npy'))
        print(f"one-to-one: {b['matched_1px']} block-wise nuclei within 1 slide px of a one-pass centroid "
              f"({b['matched_1px'] / max(o['n_nuclei'], 1):.4f} of one pass), {b['matched_3px']} within 3 px")
    if args.csv:
        import pandas as pd
        table = pd.DataFrame(rows).assign(block_px=args.block_px, threads=args.threads, slide=lambda d: d.slide.map(lambda x: Path(x).name))
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        if Path(args.csv).exists(): table = pd.concat([pd.read_csv(args.csv), table], ignore_index=True)   # rows of other runs, columns aligned
        table.to_csv(args.csv, index=False); print(f"appended to {args.csv}")

def match_centroids(table_csv, onepass_npy) -> dict:
    "Block-wise nuclei with a one-pass centroid within 1 (3) slide px, matched one to one (maximum bipartite matching)."
    import numpy as np, pandas as pd
    from scipy.sparse.csgraph import maximum_bipartite_matching
    from scipy.spatial import cKDTree
    b, o = pd.read_csv(table_csv)[['x_px', 'y_px']].to_numpy(), np.load(onepass_npy)
    out = {}
    for r in (1, 3):
        close = cKDTree(b).sparse_distance_matrix(cKDTree(o), r, output_type='coo_matrix').tocsr()
        close.data[:] = 1   # a pair at distance 0 is still a pair
        out[f'matched_{r}px'] = int((maximum_bipartite_matching(close, perm_type='column') >= 0).sum())
    return out

if __name__ == '__main__': main()
