"""Seconds from a user's command-line mistake to its one-line error, against `python -c pass` and `--help`, same run.

Each mistake runs as the user runs it: a fresh interpreter (`python -m stlearn_nb.cli ...`), so the time includes
Python's start and every import the CLI makes before it refuses. The goal: every mistake <= 2 s on a busy
2-core machine, one line on stderr, exit status 2, nothing imported beyond the standard library (torch, pandas and
the concept modules cost 10-30 s there). Inputs are small files written into a temporary folder.
Run: python benchmarks/cli_errors.py [--repeats 3] [--limit 2]
"""
import argparse, os, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def mistakes(d:Path) -> list:
    "(name, argv, words the error line must contain)."
    png = d/'x.png'; png.write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(64))
    csv = d/'counts.csv'; csv.write_text('cell,g1\nc1,3\n')
    h5 = d/'a.h5ad'; h5.write_bytes(b'\x89HDF\r\n\x1a\n' + bytes(64))
    h5b = d/'b.h5ad'; h5b.write_bytes(h5.read_bytes())
    import zipfile
    with zipfile.ZipFile(d/'m.pt', 'w') as z: z.writestr('m/data.pkl', b'')   # what file_kind calls a torch file (never loaded: refused before)
    her2st = d/'data'/'her2st'; (her2st/'counts').mkdir(parents=True)
    (d/'hest'/'patches').mkdir(parents=True); (d/'hest'/'patches'/'S1.h5').write_bytes(b'\x89HDF\r\n\x1a\n')
    out = str(d/'out')
    de = ['--curated', str(h5), '--label-key', 'y', '--curated-key', 'y', '--reference', 'A', '--target', 'B', '--out', out]
    return [
        ('unknown experiment', ['strank-tyo', '--quick'], "did you mean 'strank-toy'"),
        ('typo in --set', ['strank-toy', '--quick', '--set', 'epoch=2', '--out', out], "did you mean 'epochs'"),
        ('--set value of the wrong type', ['cpnn-synth', '--set', 'n_slides=2.5', '--out', out], 'expected int'),
        ('--set value out of range', ['ppi-sim', '--set', 'alpha=1.5', '--out', out], 'in (0, 1)'),
        ('--data-dir one level too deep', ['strank-her2st', '--quick', '--data-dir', str(her2st), '--out', out], f'--data-dir {her2st.parent}'),
        ('--data-dir absent', ['features-her2st', '--data-dir', str(d/'nowhere'), '--out', out], 'is not a folder'),
        ('--out is a file', ['hestseg-synth', '--quick', '--out', str(png)], 'is a file, not a folder'),
        ('de: missing file', ['de', '--automated', str(d/'none.h5ad'), *de], 'not found'),
        ('de: wrong file kind (CSV for .h5ad)', ['de', '--automated', str(csv), *de], 'found text'),
        ('de: same file twice', ['de', '--automated', str(h5), *de], 'same file'),
        ('de: --alpha out of (0, 1)', ['de', '--automated', str(h5b), *de, '--alpha', '1.5'], 'must be in (0, 1)'),
        ('segment: model is a PNG', ['segment', str(png), '--model', str(png), '--mpp', '0.5', '--out', out], 'found a PNG image'),
        ('segment: image is a CSV', ['segment', str(csv), '--model', str(png), '--mpp', '0.5', '--out', out], 'found text'),
        ('segment: --mpp 0', ['segment', str(png), '--model', str(png), '--mpp', '0', '--out', out], 'the pixel size must be > 0 um/px'),
        ('segment: --mpp 0.5um', ['segment', str(png), '--model', str(png), '--mpp', '0.5um', '--out', out], 'write the number without its unit'),
        ('segment: no --mpp, image states none', ['segment', str(png), '--model', str(d/'m.pt'), '--out', out], '--mpp is needed: 1 of 1 images'),
        ('segment: unknown flag', ['segment', str(png), '--model', str(png), '--microns', '0.5', '--out', out], 'did you mean --mpp'),
        ('encode: unknown flag', ['encode', '--hest', str(d/'hest'), '--out', out, '--batch-size', '8'], 'did you mean --bs'),
        ('encode: weights are a PNG', ['encode', '--hest', str(d/'hest'), '--out', out, '--arch', 'resnet18', '--weights', str(png)], 'found a PNG image'),
        ('encode: --hest is patches/', ['encode', '--hest', str(d/'hest'/'patches'), '--out', out], f'--hest {d/"hest"}'),
        ('--seed -1', ['ppi-sim', '--quick', '--seed', '-1', '--out', out], '--seed -1: must be an integer in [0,'),
        ('--seed 4294967296', ['ppi-sim', '--quick', '--seed', '4294967296', '--out', out], '--seed 4294967296: must be an integer in [0,'),
        ('--set family=nbinom', ['ppi-sim', '--quick', '--set', 'family=nbinom', '--out', out], "must be one of 'poisson', 'nb'"),
        ('--set arch=resnet99', ['features-her2st', '--quick', '--set', 'arch=resnet99', '--out', out], "did you mean 'resnet50'"),
        ('--set configs=bogus', ['strank-toy', '--quick', '--set', 'configs=bogus', '--out', out], "must be one of 'reference 1-16-1'"),
    ]

def timed(argv:list, env:dict) -> tuple:
    t0 = time.perf_counter(); r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    return time.perf_counter() - t0, r

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--repeats', type=int, default=3); ap.add_argument('--limit', type=float, default=2.0)
    args = ap.parse_args()
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')])}
    cli = [sys.executable, '-m', 'stlearn_nb.cli']
    best = lambda argv: min((timed(argv, env) for _ in range(args.repeats)), key=lambda t: t[0])
    base, _ = best([sys.executable, '-c', 'pass'])
    help_s, _ = best(cli + ['--help'])
    print(f"python -c pass: {base:.3f} s; stlearn-nb --help: {help_s:.3f} s (best of {args.repeats}, load {os.getloadavg()[0]:.1f})")
    print(f"{'mistake':40s} {'s':>6s} {'/pass':>6s} {'/help':>6s}  exit  lines  error")
    failures, n = 0, 0
    with tempfile.TemporaryDirectory() as d:
        for name, argv, words in mistakes(Path(d)):
            n += 1
            s, r = best(cli + argv)
            lines = r.stderr.strip().splitlines()
            ok = r.returncode == 2 and len(lines) == 1 and words in r.stderr and s <= args.limit
            failures += not ok
            print(f"{name:40s} {s:6.2f} {s / base:6.1f} {s / help_s:6.1f}  {r.returncode:4d}  {len(lines):5d}  "
                  f"{'' if ok else 'FAIL '}{lines[-1][:150] if lines else '(no stderr)'}")
    print(f"{failures} of {n} mistakes missed the goal (exit 2, one line naming the problem, <= {args.limit:g} s)")
    sys.exit(1 if failures else 0)

if __name__ == '__main__': main()
