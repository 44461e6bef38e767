"""Benchmark: `hestseg_real.segment_nuclei` seconds per 1000x1000 H&E tile, split into network and post-processing.

Run: python benchmarks/hestseg_infer.py [--model results/hestseg_monuseg/model.pt] [--repeats 3] [--threads 1]
Times one 1000x1000 tile at 0.5 um/px (1000 x 1000 working pixels, 500 um) and one MoNuSeg-like 1000x1000 tile at
0.25 um/px (resampled to 500 x 500), on CPU and on CUDA when present. The parts: resampling, network (`predict_maps`,
tiled with overlap), post-processing (`hover_postprocess`), back-resampling. Printed as ratios measured in the same run:
post-processing / network, and the whole call / the classical baseline (`classical_segment`) on the same tile.
Without --model it uses an untrained MobileHoVerNet (same cost; the post-processing time depends a little on how many
nuclei the maps hold, so pass a trained model for realistic post-processing numbers).
"""
import argparse, time
import numpy as np, torch
from stlearn_nb.data import resample_tile, shared_data_dir
from stlearn_nb.hestseg import simulate_tile, hover_postprocess
from stlearn_nb.hestseg_real import (MobileHoVerNet, load_segmenter, predict_maps, segment_nuclei, classical_segment,
                                     POST_REAL, read_he_image)

def tile_image(size=1000):
    "A real MoNuSeg test tile when ../shared/data/monuseg is present, else a synthetic one of the same size."
    mon = shared_data_dir('monuseg')
    if mon is not None: return read_he_image(sorted((mon/'test').glob('*.tif'))[0])[0], 'MoNuSeg test tile'
    return np.tile(simulate_tile('colon', 250, seed=0)['image'], (4, 4, 1))[:size, :size], 'synthetic tile'

def best_of(f, repeats):
    best, out = np.inf, None
    for _ in range(repeats):
        t = time.perf_counter(); out = f(); best = min(best, time.perf_counter() - t)
    return out, best

def main(model=None, repeats=3, threads=1):
    torch.set_num_threads(threads)
    image, what = tile_image()
    devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    print(f"{what}: {image.shape}, torch threads {threads}, devices {devices}")
    for dev in devices:
        net = (load_segmenter(model) if model else MobileHoVerNet()).to(dev).eval()
        post = {**POST_REAL, **net.config.get('post', {})}
        for mpp in (0.5, 0.25):
            small, t_resample = best_of(lambda: resample_tile(image, np.zeros(image.shape[:2], np.int32), mpp, net.mpp)[0], repeats)
            maps, t_net = best_of(lambda: predict_maps(net, small), repeats)
            if dev == 'cuda': torch.cuda.synchronize()
            inst, t_post = best_of(lambda: hover_postprocess(maps[0], maps[1:3], **post), repeats)
            _, t_all = best_of(lambda: segment_nuclei(image, net, mpp), repeats)
            _, t_classical = best_of(lambda: classical_segment(small, net.mpp), repeats)
            print(f"[{dev}] 1000x1000 tile at {mpp} um/px -> {small.shape[0]}x{small.shape[1]} working px: "
                  f"network {t_net:.3f} s, post-processing {t_post:.3f} s ({inst.max()} nuclei), resampling {t_resample:.3f} s; "
                  f"segment_nuclei {t_all:.3f} s per tile. post-processing / network = {t_post / t_net:.2f}; "
                  f"segment_nuclei / classical baseline ({t_classical:.3f} s) = {t_all / t_classical:.1f}x")

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--model', default=None); p.add_argument('--repeats', type=int, default=3); p.add_argument('--threads', type=int, default=1)
    a = p.parse_args(); main(a.model, a.repeats, a.threads)
