"""Patches per second of `features.encode_patches` against a bare `model(x)` loop on the same tensors, same run.

The bare loop gets tensors that are already normalised float (B, 3, H, W) on the device: it is the floor,
the network alone. The ratio encode_patches / bare is the price of what encode_patches adds (uint8 -> float,
ImageNet normalisation, host -> device copy, output to numpy). Also the 8-view TTA cost. CPU always, GPU when present.
Run: python benchmarks/features.py [--n 128] [--px 224] [--bs 32]
"""
import argparse, time
import numpy as np, torch
from stlearn_nb.features import load_encoder, encode_patches, shared_weights, IMAGENET_MEAN, IMAGENET_STD

def best_of(fn, repeats=3):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return min(times)

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--n', type=int, default=128); ap.add_argument('--px', type=int, default=224)
    ap.add_argument('--bs', type=int, default=32); args = ap.parse_args()
    weights = shared_weights('mobilenet_v2') or 'random'
    patches = np.random.default_rng(0).integers(0, 256, (args.n, args.px, args.px, 3), dtype=np.uint8)
    devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    print(f"mobilenet_v2 ({'shared ImageNet weights' if weights != 'random' else 'random weights'}), {args.n} patches of "
          f"{args.px} px, batch {args.bs}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    for dev in devices:
        enc = load_encoder('mobilenet_v2', weights).to(dev)
        mean, sd = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        x = ((torch.from_numpy(patches).permute(0, 3, 1, 2).float() / 255 - mean) / sd).to(dev)
        sync = torch.cuda.synchronize if dev == 'cuda' else (lambda: None)
        @torch.no_grad()
        def bare():
            for s in range(0, args.n, args.bs): enc(x[s:s + args.bs])
            sync()
        ours = lambda: (encode_patches(patches, enc, bs=args.bs, device=dev, progress=False), sync())
        m = max(args.bs, args.n // 8)   # TTA on a subset (8 forwards per patch), scaled to n
        tta = lambda: (encode_patches(patches[:m], enc, bs=args.bs, device=dev, tta=True, progress=False), sync())
        bare(); ours(); tta()   # warm-up (the rotated views build their own kernels on first use)
        t_bare, t_ours, t_tta = best_of(bare), best_of(ours), best_of(tta) * args.n / m
        print(f"{dev:>4}: bare model(x) {args.n / t_bare:8.1f} patches/s | encode_patches {args.n / t_ours:8.1f} patches/s "
              f"| overhead ratio {t_ours / t_bare:.3f} | tta=True {args.n / t_tta:8.1f} patches/s ({t_tta / t_ours:.1f}x the time)")

if __name__ == '__main__': main()
