#!/usr/bin/env python
"""Run notebooks the way a student does: a fresh Jupyter kernel per notebook, Run All, the inline backend.

No MPLBACKEND, no PYTHONWARNINGS, no STLEARN_NB_CPU from the caller's environment: what the student would see is
what we check. A notebook fails on a cell error, on text written to stderr, and on any `...Warning:` line in its
outputs, unless an entry of `.ci/notebook_output_allowlist.txt` (notebook regex | text regex | reason) covers it.

    python .ci/run_notebooks.py                       # every notebook in nbs/, with ../shared/data
    python .ci/run_notebooks.py --no-data             # notebooks that read ../shared/data, with it hidden
    python .ci/run_notebooks.py nbs/00_core.ipynb --json timings.json
    python .ci/run_notebooks.py --write && nbdev_clean     # refresh the outputs kept in the notebooks
"""
from __future__ import annotations
import argparse, json, os, re, sys, time, warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALLOWLIST = ROOT / '.ci' / 'notebook_output_allowlist.txt'
WARNING_LINE = re.compile(r'\b\w*(Warning|Deprecat\w*)\b:')


def read_allowlist(path: Path = ALLOWLIST) -> list[tuple[re.Pattern, re.Pattern, str]]:
    "Entries `notebook regex | text regex | reason`; a line without a reason is an error."
    entries = []
    for n, line in enumerate(path.read_text().splitlines(), 1) if path.exists() else []:
        if not line.strip() or line.lstrip().startswith('#'): continue
        parts = [p.strip() for p in line.split(' | ')]
        if len(parts) != 3 or not all(parts): sys.exit(f'{path}:{n}: expected "notebook regex | text regex | reason"')
        entries.append((re.compile(parts[0]), re.compile(parts[1]), parts[2]))
    return entries


def student_env(no_data: bool, jobs: int = 1) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ('MPLBACKEND', 'PYTHONWARNINGS', 'STLEARN_NB_CPU')}
    if jobs > 1 and 'OMP_NUM_THREADS' not in env:   # kernels side by side share the cores: without this, two torch thread
        env['OMP_NUM_THREADS'] = str(max(1, (os.cpu_count() or 1) // jobs))   # pools spin against each other (8 s -> 190 s)
    env['PYTHONPATH'] = os.pathsep.join([str(ROOT)] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])  # this checkout's library
    if no_data: env['STLEARN_NB_DATA'] = str(ROOT / '.ci' / 'no_shared_data_here')   # a folder that does not exist
    return env


def output_problems(nb, allow) -> list[str]:
    "Stderr streams and warning lines in the executed notebook's outputs that the allow-list does not cover."
    name, found = Path(nb.metadata.get('path', '')).name, []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != 'code': continue
        for out in cell.get('outputs', []):
            texts = []
            if out.output_type == 'stream': texts = [(out.name, out.text)]
            elif out.output_type in ('execute_result', 'display_data'):
                texts = [('text', out.get('data', {}).get('text/plain', ''))]
            for kind, text in texts:
                for line in text.splitlines():
                    bad = kind == 'stderr' and line.strip() or WARNING_LINE.search(line)
                    if bad and not any(nbre.search(name) and txre.search(line) for nbre, txre, _ in allow):
                        found.append(f'cell {i} ({kind}): {line.strip()[:200]}')
    return found


def run_one(path: str, no_data: bool, timeout: int, write: bool = False, jobs: int = 1) -> dict:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    warnings.filterwarnings('ignore', module='nbformat')      # cell ids missing in old notebooks: not the student's concern
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        nb = nbformat.read(path, as_version=4)
    nb.metadata['path'] = str(path)
    env = student_env(no_data, jobs)
    client = NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(path.parent)}})
    t0, error = time.perf_counter(), None
    devnull = open(os.devnull, 'w')
    try: client.execute(env=env, stderr=devnull, stdout=devnull)   # the kernel's own log (not cell output) goes nowhere
    except CellExecutionError as e: error = str(e).strip().splitlines()[-1][:300] if str(e).strip() else repr(e)
    except Exception as e: error = f'{type(e).__name__}: {e}'[:300]
    finally: devnull.close()
    wall = time.perf_counter() - t0
    problems = output_problems(nb, read_allowlist())
    slowest = sorted(((cell_seconds(c), i) for i, c in enumerate(nb.cells) if c.cell_type == 'code'), reverse=True)[:3]
    if write and error is None:                                  # keep the outputs that teach (figures, tables)
        del nb.metadata['path']
        for c in nb.cells: c.get('metadata', {}).pop('execution', None)
        nbformat.write(nb, path)
    return dict(notebook=path.name, wall_s=round(wall, 1), error=error, problems=problems, ok=error is None and not problems,
                slowest_cells=[dict(cell=i, seconds=round(t, 1)) for t, i in slowest if t > 0])


def cell_seconds(cell) -> float:
    "Wall time of one executed cell, from the timestamps nbclient records (0 when it did not run)."
    from datetime import datetime
    ex = cell.get('metadata', {}).get('execution', {})
    try: return (datetime.fromisoformat(ex['shell.execute_reply'].replace('Z', '+00:00'))
                 - datetime.fromisoformat(ex['iopub.execute_input'].replace('Z', '+00:00'))).total_seconds()
    except (KeyError, ValueError): return 0.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('notebooks', nargs='*', help='default: every nbs/*.ipynb (with --no-data: those that read ../shared/data)')
    p.add_argument('--no-data', action='store_true', help='hide ../shared/data (STLEARN_NB_DATA names a missing folder)')
    p.add_argument('--jobs', type=int, default=2)
    p.add_argument('--timeout', type=int, default=600, help='seconds per cell')
    p.add_argument('--json', help='write per-notebook results here')
    p.add_argument('--write', action='store_true', help='save the executed notebooks (then run nbdev_clean)')
    a = p.parse_args(argv)
    nbs = [Path(n) for n in a.notebooks] or sorted((ROOT / 'nbs').glob('*.ipynb'))
    if a.no_data and not a.notebooks: nbs = [n for n in nbs if 'shared_data_dir' in n.read_text()]
    label = 'without ../shared/data' if a.no_data else 'as a student runs them'
    print(f'Run All in a fresh python3 kernel, {label}: {" ".join(n.stem for n in nbs)}', flush=True)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(a.jobs) as ex:
        futs = [ex.submit(run_one, str(n), a.no_data, a.timeout, a.write, a.jobs) for n in nbs]
        results = []
        for f in futs:
            r = f.result(); results.append(r)
            print(f"  {'ok  ' if r['ok'] else 'FAIL'} {r['notebook']:<28} {r['wall_s']:7.1f} s", flush=True)
            if r['error']: print(f"       error: {r['error']}")
            for pr in r['problems']: print(f'       {pr}')
    total = time.perf_counter() - t0
    print(f'  {sum(r["ok"] for r in results)}/{len(results)} notebooks clean, {total:.0f} s wall', flush=True)
    if a.json: Path(a.json).write_text(json.dumps(dict(no_data=a.no_data, total_s=round(total, 1), notebooks=results), indent=1))
    return 0 if all(r['ok'] for r in results) else 1


if __name__ == '__main__': sys.exit(main())
