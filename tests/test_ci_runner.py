"The CI step that runs notebooks as a student does (.ci/run_notebooks.py) catches what a student would see."
import importlib.util, os, re
from pathlib import Path
import nbformat, pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location('run_notebooks', ROOT / '.ci' / 'run_notebooks.py')
rn = importlib.util.module_from_spec(spec); spec.loader.exec_module(rn)


def executed(*outputs_per_cell, name='demo.ipynb'):
    "A notebook whose code cells already carry the given outputs (no kernel needed)."
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('x', outputs=list(outs)) for outs in outputs_per_cell])
    nb.metadata['path'] = f'nbs/{name}'
    return nb


def stream(name, text): return nbformat.v4.new_output('stream', name=name, text=text)


def test_output_problems_flags_stderr_and_warnings_only():
    nb = executed([stream('stdout', 'fine\n')],
                  [stream('stderr', 'something on stderr\n')],
                  [stream('stdout', '/x.py:3: FutureWarning: `torch.jit.script` is deprecated\n')],
                  [nbformat.v4.new_output('execute_result', data={'text/plain': 'DeprecationWarning: old api'})],
                  [stream('stdout', 'the word Warning alone is prose\n')])
    problems = rn.output_problems(nb, [])
    assert [p.split(' ')[1] for p in problems] == ['1', '2', '3'], problems


def test_allowlist_needs_a_reason_and_matches_notebook_and_text(tmp_path):
    nb = executed([stream('stderr', 'rank 0/1: encoded\n')], name='90_cli.ipynb')
    good = tmp_path / 'allow.txt'
    good.write_text('# comment\n90_cli | rank \\d+/\\d+ | the tool logs progress on stderr by design\n')
    assert rn.output_problems(nb, rn.read_allowlist(good)) == []
    other = executed([stream('stderr', 'rank 0/1: encoded\n')], name='10_strank.ipynb')
    assert len(rn.output_problems(other, rn.read_allowlist(good))) == 1     # the entry names another notebook
    bad = tmp_path / 'bad.txt'; bad.write_text('90_cli | rank\n')
    with pytest.raises(SystemExit, match='reason'): rn.read_allowlist(bad)


def test_repository_allowlist_entries_have_reasons():
    for nb_re, text_re, reason in rn.read_allowlist():
        assert len(reason.split()) >= 3, (nb_re.pattern, text_re.pattern, reason)


def test_student_env_drops_ci_settings(monkeypatch):
    for k in ('MPLBACKEND', 'PYTHONWARNINGS', 'STLEARN_NB_CPU'): monkeypatch.setenv(k, 'x')
    env = rn.student_env(no_data=True)
    assert not {'MPLBACKEND', 'PYTHONWARNINGS', 'STLEARN_NB_CPU'} & set(env)
    assert not Path(env['STLEARN_NB_DATA']).exists()
    assert env['PYTHONPATH'].split(':')[0] == str(ROOT)


def test_side_by_side_kernels_share_the_cores(monkeypatch):
    "Two kernels at once get half the cores each (torch thread pools spinning against each other cost 20x); one kernel is left alone."
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    assert 'OMP_NUM_THREADS' not in rn.student_env(no_data=False, jobs=1)
    assert rn.student_env(no_data=False, jobs=2)['OMP_NUM_THREADS'] == str(max(1, os.cpu_count() // 2))
    monkeypatch.setenv('OMP_NUM_THREADS', '3')
    assert rn.student_env(no_data=False, jobs=2)['OMP_NUM_THREADS'] == '3'   # the user's own setting wins


def test_a_real_kernel_run_reports_errors_and_warnings(tmp_path):
    "One kernel: a warning from a late cell is caught, a failing cell is reported and stops the run."
    cells = ["import warnings", "warnings.warn('careful', UserWarning)", "print('ok')", "1/0", "print('never')"]
    path = tmp_path / 'student.ipynb'
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), path)
    r = rn.run_one(str(path), no_data=False, timeout=120)
    assert not r['ok'] and 'ZeroDivisionError' in r['error'], r
    assert any('UserWarning: careful' in p for p in r['problems']), r['problems']
