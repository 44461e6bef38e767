"Tests for stlearn_nb.ppi_curation: the curation log survives crashes, keeps one writer, round-trips ids; the panel is bound to its log."
import os, subprocess, sys, time
import numpy as np, pandas as pd, pytest
from stlearn_nb import ppi_curation as C


def test_curation_log_resumes_after_crash(tmp_path, monkeypatch):
    "A kernel death while a decision is appended leaves at most a cut last line, never read as a decision."
    path = tmp_path / 'curation.csv'
    log = C.CurationLog(path, ['a', 'b', 'c'], [1, 0, 2])
    log.record('a', 'relabel', 0)
    real_write = open
    def cut_write(file, mode='r', *args, **kw):   # write half the line, then die
        f = real_write(file, mode, *args, **kw)
        if 'a' in mode:
            w = f.write; f.write = lambda text: (w(text[:len(text) // 2]), f.flush(), (_ for _ in ()).throw(KeyboardInterrupt('kernel died')))
        return f
    monkeypatch.setattr('builtins.open', cut_write)
    with pytest.raises(KeyboardInterrupt): log.record('b', 'accept')
    monkeypatch.setattr('builtins.open', real_write)
    log.close()
    with pytest.warns(UserWarning, match='cut or damaged'): log2 = C.CurationLog(path, ['a', 'b', 'c'], [1, 0, 2])
    assert log2.pending == ['b', 'c'] and log2.curated_labels().to_dict() == {'a': 0}
    assert len(list(tmp_path.glob('curation.csv.damaged-*'))) == 1
    log2.record('b', 'accept'); log2.record('c', 'reject'); log2.record('a', 'accept')   # re-deciding overrides
    log2.close()
    with C.CurationLog(path, ['a', 'b', 'c'], [1, 0, 2]) as log3:
        assert log3.curated_labels().to_dict() == {'b': 0, 'c': 2, 'a': 1}
        with pytest.raises(ValueError, match='relabel needs a label'): log3.record('a', 'relabel')
    with pytest.raises(ValueError, match='not in this curation set'): C.CurationLog(path, ['a'], [1])
    assert not (tmp_path / 'curation.csv.lock').exists()    # refused opens leave no lock behind


def test_curation_log_cut_last_line_is_not_a_decision(tmp_path):
    "Today's log reads 'cell4,1,rej' as a decision; it must be moved aside with a warning."
    path = tmp_path / 'c.csv'
    with C.CurationLog(path, ['cell1', 'cell4'], [1, 1]) as log: log.record('cell1', 'accept')
    with open(path, 'a') as f: f.write('cell4,1,rej')
    with pytest.warns(UserWarning, match=r'last line \(3\)'):
        with C.CurationLog(path, ['cell1', 'cell4'], [1, 1]) as log: assert log.pending == ['cell4']
    # a complete-looking line without its newline is cut too (the time stamp may be partial)
    with open(path, 'a') as f: f.write('cell4,1,reject,2,2026-12-01T10:0')
    with pytest.warns(UserWarning):
        with C.CurationLog(path, ['cell1', 'cell4'], [1, 1]) as log: assert log.pending == ['cell4']
    # damage before the last line is refused, not repaired
    path.write_text('cell_id,auto_label,decision,label,time\ncell1,1,acc\ncell4,1,accept,1,t\n')
    with pytest.raises(C.CurationLogError, match='damaged lines'): C.CurationLog(path, ['cell1', 'cell4'], [1, 1])


def test_curation_log_ids_round_trip_as_strings(tmp_path):
    ids = ['NA', 'nan', '', 'None', 'null', '007']
    with C.CurationLog(tmp_path / 'c.csv', ids, [0, 1, 2, 0, 1, 2]) as log:
        for c in ids[:4]: log.record(c, 'accept')
    with C.CurationLog(tmp_path / 'c.csv', ids, [0, 1, 2, 0, 1, 2]) as log:
        assert log.pending == ['null', '007'] and list(log.curated_labels().index) == ids[:4]


def test_curation_log_one_writer_at_a_time(tmp_path):
    "A second process gets a named error; a second object in this process closes the first, which cannot write."
    path = tmp_path / 'c.csv'
    log = C.CurationLog(path, ['a', 'b'], [0, 1])
    code = ("import sys; from stlearn_nb import ppi_curation as C\n"
            "try: C.CurationLog(sys.argv[1], ['a', 'b'], [0, 1])\n"
            "except C.CurationLogLockedError as e: print('LOCKED', e); sys.exit(3)\n")
    r = subprocess.run([sys.executable, '-c', code, str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3 and 'LOCKED' in r.stdout and 'being written by process' in r.stdout, r.stdout + r.stderr
    log2 = C.CurationLog(path, ['a', 'b'], [0, 1])
    with pytest.raises(C.CurationLogError, match='reopened'): log.record('a', 'accept')
    log2.record('b', 'reject')
    path.write_text(path.read_text() + 'a,0,accept,0,t\n')   # someone else appended behind its back
    with pytest.raises(C.CurationLogError, match='changed by another writer'): log2.record('a', 'accept')
    log2.close()
    # a lock left by a dead process is taken over with a warning
    (tmp_path / 'c.csv.lock').write_text(f'999999999 {__import__("socket").gethostname()} deadbeef')
    with pytest.warns(UserWarning, match='stale lock'):
        with C.CurationLog(path, ['a', 'b'], [0, 1]) as log3: assert log3.pending == []


def test_curation_log_next_pending_is_constant_time(tmp_path):
    "pending() took 1.15 s at 2,500 of 5,000 decided and ran on every click; next_pending is O(1) amortised."
    import time
    ids = [f'c{i}' for i in range(5000)]
    with C.CurationLog(tmp_path / 'c.csv', ids, np.zeros(5000, int)) as log:
        log.decisions.update({c: {'label': 0} for c in ids[:2500]})   # 2,500 decided (without 2,500 fsyncs)
        t = time.perf_counter()
        for _ in range(2000): assert log.next_pending() == 'c2500'
        assert time.perf_counter() - t < 0.05


def test_curation_widget_builds_headless(tmp_path):
    pytest.importorskip('ipywidgets')
    log = C.CurationLog(tmp_path / 'c.csv', ['a', 'b'], [1, 0])
    panel = C.curation_widget(log, describe=lambda c: f'cell {c}')
    buttons = panel.children[2].children
    buttons[1].value = 2           # relabel dropdown -> 'other'
    buttons[2].click()
    assert log.curated_labels().to_dict() == {'a': 2} and log.pending == ['b']
    new_log = C.CurationLog(tmp_path / 'c.csv', ['a', 'b'], [1, 0])   # the widget cell re-run
    buttons[0].click()                                                # the old panel: refused, nothing written
    assert 'not recorded' in panel.children[0].value and new_log.pending == ['b']
    new_log.close()
