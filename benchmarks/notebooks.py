"""Speed a student feels: Run All wall time of every notebook in a fresh Jupyter kernel, as `.ci/run_notebooks.py` runs it.

Budget: each notebook's quick Run All <= 120 s, all notebooks together <= 10 min, on the 2-core CPU machine.
The reference measured in the same run is the floor every notebook pays: a kernel that starts, imports
`stlearn_nb.core` (torch, pandas) and stops. One notebook at a time (`--jobs 1`, the student's case) unless told.

    python benchmarks/notebooks.py                 # all notebooks, with ../shared/data when present
    python benchmarks/notebooks.py --no-data       # the synthetic fallbacks
    python benchmarks/notebooks.py nbs/10_strank.ipynb
"""
import argparse, json, sys, tempfile, time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / '.ci'))
import run_notebooks as rn   # the CI runner: the same kernel, environment and checks
PER_NOTEBOOK_S, TOTAL_S = 120, 600


def floor_notebook(folder: Path) -> Path:
    "A one-cell notebook that imports the package's core: kernel start-up and the heavy imports, nothing else."
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('import stlearn_nb.core')])
    path = folder / 'floor.ipynb'; nbformat.write(nb, path); return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('notebooks', nargs='*')
    p.add_argument('--no-data', action='store_true')
    p.add_argument('--jobs', type=int, default=1, help='notebooks at once (1: what a student waits for)')
    p.add_argument('--json', help='write the table here')
    a = p.parse_args(argv)
    nbs = [Path(n) for n in a.notebooks] or sorted((ROOT / 'nbs').glob('*.ipynb'))
    if a.no_data and not a.notebooks: nbs = [n for n in nbs if 'shared_data_dir' in n.read_text()]
    with tempfile.TemporaryDirectory() as d:
        floor = rn.run_one(str(floor_notebook(Path(d))), a.no_data, 600)['wall_s']
    print(f'reference: kernel start + import stlearn_nb.core = {floor:.1f} s', flush=True)
    from concurrent.futures import ProcessPoolExecutor
    t0 = time.perf_counter()
    with ProcessPoolExecutor(a.jobs) as ex:
        rows = list(ex.map(partial(rn.run_one, no_data=a.no_data, timeout=600, jobs=a.jobs), map(str, nbs)))
    total = time.perf_counter() - t0
    print(f"{'notebook':<26} {'Run All s':>9} {'/ floor':>8} {'/ 120 s':>8}  status")
    for r in sorted(rows, key=lambda r: -r['wall_s']):
        status = 'ok' if r['ok'] else ('error' if r['error'] else f"{len(r['problems'])} output problems")
        cells = ', '.join(f"cell {c['cell']} {c['seconds']:.0f} s" for c in r.get('slowest_cells', []))
        print(f"{r['notebook']:<26} {r['wall_s']:9.1f} {r['wall_s'] / floor:8.1f} {r['wall_s'] / PER_NOTEBOOK_S:8.2f}  {status}; slowest: {cells}")
    summed = sum(r['wall_s'] for r in rows)
    print(f"{'sum of notebooks':<26} {summed:9.1f} {summed / floor:8.1f} {summed / TOTAL_S:8.2f}  (budget {TOTAL_S} s; wall {total:.0f} s with {a.jobs} job(s))")
    over = [r['notebook'] for r in rows if r['wall_s'] > PER_NOTEBOOK_S]
    print('over the 120 s budget: ' + (', '.join(over) if over else 'none'))
    if a.json: Path(a.json).write_text(json.dumps(dict(floor_s=floor, total_s=summed, notebooks=rows), indent=1))
    return 0


if __name__ == '__main__': sys.exit(main())
