"The console script as a user calls it: argument checks before any work, atomic outputs, exit codes, progress."
import subprocess, sys, shutil, os, textwrap
import pandas as pd, pytest
from pathlib import Path
from stlearn_nb.data import shared_data_dir
from stlearn_nb.cli import (EXPERIMENTS, available_experiments, build_parser, main, experiment_options, check_out_dir, CommandLineError,
                            static_options, experiment_function)

EXE = shutil.which('stlearn-nb')

def _cli(*args, **kw):
    "Run the CLI in a fresh interpreter (the package of this checkout), return (exit code, stdout, stderr)."
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(Path(__file__).parents[1]), *kw.pop('path', [])])}
    code = "import sys; from stlearn_nb.cli import main; sys.exit(main(sys.argv[1:]))"
    r = subprocess.run([sys.executable, '-c', kw.pop('code', code), *args], capture_output=True, text=True, env=env, timeout=300, **kw)
    return r.returncode, r.stdout, r.stderr

def test_console_script_help_lists_available_experiments():
    assert EXE is not None, "console script stlearn-nb not installed (pip install -e .)"
    out = subprocess.run([EXE, '--help'], capture_output=True, text=True, check=True).stdout
    assert 'info' in out
    for name in available_experiments(): assert name in out

def test_info_prints_versions_and_device():
    out = subprocess.run([EXE, 'info'], capture_output=True, text=True, check=True).stdout
    assert 'fastai' in out and 'device' in out and 'torch' in out

def test_cli_does_not_import_concepts_for_help():
    code = "import sys; from stlearn_nb.cli import build_parser; build_parser(); print(sorted(m for m in sys.modules if m.startswith('stlearn_nb.')))"
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    for module, _, _ in EXPERIMENTS.values(): assert module not in out

@pytest.mark.parametrize('cmd', ['strank-toy', 'cpnn-synth'])
def test_typo_key_exits_2_naming_valid_keys(cmd, tmp_path, capsys):
    rc = main([cmd, '--quick', '--set', 'epoch=2', '--out', str(tmp_path/'o')]); err = capsys.readouterr().err
    assert rc == 2 and 'unknown option --set epoch' in err and 'epochs' in err
    assert err.strip().splitlines()[-1].startswith(f'stlearn-nb {cmd}: error:') and 'Traceback' not in err
    assert not (tmp_path/'o').exists()

def test_wrong_values_exit_2(tmp_path, capsys):
    for option, words in [('n_reps=0', 'n_reps=0: must be >= 1'), ('alpha=1.5', 'in (0, 1)'), ('n_curated=2.5', 'expected int'),
                          ('family=3', 'expected str'), ('chunk=True', 'expected int')]:
        assert main(['ppi-sim', '--quick', '--set', option, '--out', str(tmp_path/'o')]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, (option, err)
    assert main(['ppi-sim', '--quick', '--data-dir', str(tmp_path/'nowhere'), '--out', str(tmp_path/'o')]) == 2
    assert 'is not a folder' in capsys.readouterr().err
    assert not (tmp_path/'o').exists()
    rc, out, err = _cli('ppi-sim', '--quick', '--debug', '--set', 'n_reps=0', '--out', str(tmp_path/'o'))
    assert rc == 2 and 'Traceback' in err and 'CommandLineError' in err

def test_help_lists_options_with_defaults():
    rc, out, err = _cli('ppi-sim', '--help')
    assert rc == 0 and 'n_unlabeled=20000  (int, >= 1)' in out and "family='poisson'  (str, one of 'poisson', 'nb')" in out and 'alpha=0.05' in out

def test_options_follow_kwargs():
    "run_cpnn_synth reads epochs/n_slides from **options and forwards the rest to train_slide_models."
    from stlearn_nb.cpnn import run_cpnn_synth, train_slide_models
    import inspect
    opts = experiment_options(run_cpnn_synth)
    assert {'n_seeds', 'epochs', 'n_slides'} <= set(opts)
    forwarded = set(inspect.signature(train_slide_models).parameters) - {'sim', 'epochs', 'quiet', 'seed'}
    assert forwarded <= set(opts) and 'quiet' not in opts and 'seed' not in opts

def test_out_is_a_file_refused_before_any_work(tmp_path):
    (tmp_path/'f').write_text('x')
    code = ("import sys; from stlearn_nb.cli import main; rc = main(sys.argv[1:]); "
            "print('imported' if {'stlearn_nb.ppi_de', 'torch'} & set(sys.modules) else 'not imported'); sys.exit(rc)")
    for out, words in [(tmp_path/'f', 'is a file, not a folder'), (tmp_path/'f'/'sub', 'is a file, not a folder')]:
        rc, stdout, err = _cli('ppi-sim', '--quick', '--out', str(out), code=code)
        assert rc == 2 and words in err and 'not imported' in stdout
    (tmp_path/'mine').mkdir(); (tmp_path/'mine'/'thesis.tex').write_text('precious')
    rc, stdout, err = _cli('ppi-sim', '--quick', '--out', str(tmp_path/'mine'), code=code)
    assert rc == 2 and 'without results.csv' in err and (tmp_path/'mine'/'thesis.tex').read_text() == 'precious'

class _BrokenFigure:
    def savefig(self, path, **kw): Path(path).write_text('half'); raise OSError(28, 'No space left on device')

@pytest.fixture
def demo_experiment(monkeypatch):
    "A stand-in experiment whose run can fail before or while its results are written."
    import types
    from stlearn_nb.core import Experiment
    def run_demo(quick:bool=False, seed:int=0, data_dir=None, value:int=1, fail:str=''):
        if fail == 'run': raise RuntimeError('diverged at epoch 3')
        return Experiment(pd.DataFrame({'value': [value]}), {'extra': pd.DataFrame({'v': [value]})},
                          {'broken': _BrokenFigure()} if fail == 'write' else {})
    mod = types.ModuleType('stlearn_nb_demo_exp'); mod.run_demo = run_demo
    monkeypatch.setitem(sys.modules, 'stlearn_nb_demo_exp', mod)
    monkeypatch.setitem(EXPERIMENTS, 'demo', ('stlearn_nb_demo_exp', 'run_demo', 'stand-in'))

def test_failed_run_leaves_previous_results(tmp_path, demo_experiment, capsys):
    out = tmp_path/'run'
    assert main(['demo', '--out', str(out), '--set', 'value=7']) == 0
    before = sorted(p.name for p in out.iterdir())
    for fail in ('run', 'write'):
        assert main(['demo', '--out', str(out), '--set', 'value=8', '--set', f"fail='{fail}'"]) == 2
        assert pd.read_csv(out/'results.csv')['value'].tolist() == [7] and sorted(p.name for p in out.iterdir()) == before
        assert [p.name for p in tmp_path.iterdir()] == ['run']          # no temporary folder left behind
    err = capsys.readouterr().err
    assert 'RuntimeError: diverged at epoch 3' in err and 'No space left on device' in err
    assert main(['demo', '--out', str(out), '--set', 'value=9']) == 0   # a complete run replaces the folder
    assert pd.read_csv(out/'results.csv')['value'].tolist() == [9]

def test_failed_first_run_leaves_nothing(tmp_path, demo_experiment, capsys):
    assert main(['demo', '--out', str(tmp_path/'new'), '--set', "fail='write'"]) == 2
    assert list(tmp_path.iterdir()) == []

DEMO_FASTAI = textwrap.dedent('''
    import torch, pandas as pd
    from torch.utils.data import TensorDataset, DataLoader
    from fastai.learner import Learner
    from fastai.data.core import DataLoaders
    from stlearn_nb.core import Experiment
    def run_fit(quick=False, seed=0, data_dir=None, epochs:int=3):
        x = torch.linspace(0, 1, 32)[:, None]; ds = TensorDataset(x, 2 * x)
        learn = Learner(DataLoaders(DataLoader(ds, batch_size=8), DataLoader(ds, batch_size=8)), torch.nn.Linear(1, 1), loss_func=torch.nn.MSELoss())
        learn.fit(epochs, 0.1)
        return Experiment(pd.DataFrame({'epochs': [epochs]}))
''')

LAZY_FASTAI = DEMO_FASTAI.replace('\nfrom fastai.learner import Learner\nfrom fastai.data.core import DataLoaders\n', '\n', 1).replace(
    "    x = torch.linspace", "    from fastai.learner import Learner\n    from fastai.data.core import DataLoaders\n    x = torch.linspace")

@pytest.mark.parametrize('quiet,source', [(False, DEMO_FASTAI), (True, DEMO_FASTAI), (False, LAZY_FASTAI)])
def test_log_file_gets_one_line_per_epoch(tmp_path, quiet, source):
    "Also when the experiment imports fastai only inside its function (hestseg_real does)."
    (tmp_path/'demo_fit.py').write_text(source)
    code = ("import sys; import stlearn_nb.cli as c; c.EXPERIMENTS['fit'] = ('demo_fit', 'run_fit', ''); "
            "sys.exit(c.main(sys.argv[1:]))")
    with open(tmp_path/'log.txt', 'w') as log:   # stdout is a file, not a terminal
        r = subprocess.run([sys.executable, '-c', code, 'fit', '--out', str(tmp_path/'o'), '--set', 'epochs=4', *(['--quiet'] if quiet else [])],
                           stdout=log, stderr=subprocess.PIPE, text=True, timeout=300,
                           env={**os.environ, 'PYTHONPATH': os.pathsep.join([str(Path(__file__).parents[1]), str(tmp_path)])})
    assert r.returncode == 0, r.stderr
    text = (tmp_path/'log.txt').read_text()
    epochs = [l for l in text.splitlines() if ' epoch ' in l]
    assert '\r' not in text and '█' not in text
    if quiet: assert epochs == []
    else:   # each line says what trains: experiment, model, loss, epoch i/n
        assert [l.split(':')[0] for l in epochs] == [f'fit Linear MSELoss epoch {i}/4' for i in range(1, 5)] and 'valid_loss' in epochs[0]

def test_check_out_dir(tmp_path):
    assert check_out_dir(tmp_path/'a'/'b') == tmp_path/'a'/'b'
    (tmp_path/'r').mkdir(); (tmp_path/'r'/'results.csv').write_text('a\n1\n')
    assert check_out_dir(tmp_path/'r') == tmp_path/'r'      # a previous results folder may be replaced
    with pytest.raises(CommandLineError, match='without results.csv'): check_out_dir(tmp_path)

def test_check_option_conversions():
    from stlearn_nb.cli import Option, check_option
    assert check_option(Option('progress', True, 'True', (bool,)), 'false') is False
    assert check_option(Option('lr', 0.1, '0.1', (float,)), 1) == 1.0 and isinstance(check_option(Option('lr', 0.1, '0.1', (float,)), 1), float)
    assert check_option(Option('organs', ('a',), "('a',)", (tuple,)), 'breast,colon') == ('breast', 'colon')
    with pytest.raises(CommandLineError, match='expected int'): check_option(Option('n', 1, '1', (int,)), True)
    with pytest.raises(CommandLineError, match='must be >= 1'): check_option(Option('max_epochs', None, 'None', (int, type(None))), -3)
    assert check_option(Option('max_epochs', None, 'None', (int, type(None))), None) is None


# ---------------------------------------------------------------- segment (a tool on the user's images)
def _segment_inputs(tmp_path):
    import numpy as np, torch
    from PIL import Image
    from stlearn_nb.hestseg_real import MobileHoVerNet, save_segmenter
    from stlearn_nb.hestseg import simulate_tile
    save_segmenter(MobileHoVerNet(), tmp_path/'m.pt')
    Image.fromarray(simulate_tile('breast', 64, seed=0)['image']).save(tmp_path/'a.png')
    return tmp_path/'a.png', tmp_path/'m.pt'

def test_segment_writes_mask_and_overlay(tmp_path):
    img, model = _segment_inputs(tmp_path)
    code, out, err = _cli('segment', str(img), '--model', str(model), '--mpp', '0.5', '--out', str(tmp_path/'out'))
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path/'out').iterdir()) == ['a_mask.npy', 'a_overlay.png', 'segment.csv'] and 'nuclei' in out

@pytest.mark.parametrize('change,words', [
    (lambda a, t: a.__setitem__(0, str(t/'absent.png')), '1 of 1 images not found'),
    (lambda a, t: a.__setitem__(a.index('--mpp') + 1, '0'), '--mpp: the pixel size must be > 0 um/px, got 0.0'),
    (lambda a, t: a.__setitem__(a.index('--mpp') + 1, '-0.25'), '--mpp: the pixel size must be > 0 um/px, got -0.25'),
    (lambda a, t: [(t/'bad.pt').write_bytes(b'not torch'), a.__setitem__(a.index('--model') + 1, str(t/'bad.pt'))], 'bad.pt: expected a segmentation model file (the model.pt that `stlearn-nb hestseg-monuseg` writes), found text'),
    (lambda a, t: [__import__('torch').save({'state_dict': {}}, t/'nokeys.pt'), a.__setitem__(a.index('--model') + 1, str(t/'nokeys.pt'))], "keys ['state_dict', 'config']"),
    (lambda a, t: [(t/'file').write_text('x'), a.__setitem__(a.index('--out') + 1, str(t/'file'))], 'is a file, not a folder'),
    (lambda a, t: [(t/'full').mkdir(), (t/'full'/'x.txt').write_text('x'), a.__setitem__(a.index('--out') + 1, str(t/'full'))], 'non-empty folder without segment.csv'),
])
def test_segment_bad_input_one_line_exit_2(tmp_path, change, words):
    img, model = _segment_inputs(tmp_path)
    args = [str(img), '--model', str(model), '--mpp', '0.5', '--out', str(tmp_path/'out')]
    change(args, tmp_path)
    code, out, err = _cli('segment', *args)
    assert code == 2 and words in err and err.strip().count('\n') == 0, err
    assert not (tmp_path/'out').exists()

def test_segment_whole_slide_mode_one_folder_per_slide(tmp_path):
    "--block-px switches to block-wise segmentation: out/<stem>/ with the nuclei table, GeoJSON, AnnData, thumbnails and labels.zarr (--mask)."
    img, model = _segment_inputs(tmp_path)
    code, out, err = _cli('segment', str(img), '--model', str(model), '--mpp', '0.5', '--out', str(tmp_path/'out'), '--block-px', '64', '--mask', '--workers', '1', '--quiet')
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path/'out').iterdir()) == ['a', 'segment.csv']
    assert {'nuclei.csv', 'nuclei.geojson', 'nuclei.h5ad', 'labels.zarr', 'thumbnail_overlay.png'} <= {p.name for p in (tmp_path/'out'/'a').iterdir()}
    import pandas as pd
    assert pd.read_csv(tmp_path/'out'/'segment.csv').n_blocks.tolist() == [1]

@pytest.mark.parametrize('extra,words', [(['--block-px', '10'], '--block-px must be >= 64'), (['--workers', '0'], '--workers must be >= 1'),
                                         (['--mask'], '--mask is for whole slides'), (['--block-px', '64', '--mpp', '0'], 'the pixel size must be > 0 um/px')])
def test_segment_whole_slide_flags_checked_before_heavy_imports(tmp_path, extra, words):
    img, model = _segment_inputs(tmp_path)
    code = "import sys; from stlearn_nb.cli import main; rc = main(sys.argv[1:]); assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    rc, out, err = _cli('segment', str(img), '--model', str(model), '--mpp', '0.5', '--out', str(tmp_path/'out'), *extra, code=code)
    assert rc == 2 and words in err and err.strip().count('\n') == 0, err

def test_hestseg_monuseg_registered_and_options_checked(tmp_path):
    assert 'hestseg-monuseg' in EXPERIMENTS
    code, out, err = _cli('hestseg-monuseg', '--out', str(tmp_path/'o'), '--set', 'epochs=0')
    assert code == 2 and 'must be >= 1' in err and not (tmp_path/'o').exists()

def test_stcontrast_her2st_missing_data_one_line_exit_2(tmp_path):
    (tmp_path/'data').mkdir()
    code, out, err = _cli('stcontrast-her2st', '--quick', '--data-dir', str(tmp_path/'data'), '--out', str(tmp_path/'o'))
    last = err.strip().splitlines()[-1]   # (a dependency's FutureWarning may come before it)
    assert code == 2 and last.startswith('stlearn-nb stcontrast-her2st: error:') and 'her2st data not found' in last and 'Traceback' not in err, err
    assert not (tmp_path/'o').exists()

def test_stcontrast_her2st_quick_writes_tables_and_figures(tmp_path):
    if shared_data_dir('her2st') is None: pytest.skip('../shared/data/her2st not present')
    code, out, err = _cli('stcontrast-her2st', '--quick', '--quiet', '--out', str(tmp_path/'o'))
    assert code == 0, err
    files = {p.name for p in (tmp_path/'o').iterdir()}
    assert {'results.csv', 'per_seed.csv', 'confusion.csv', 'targets.csv', 'patient_mixing.csv', 'bars.png', 'confusion_C6.png', 'confusion_B4.png'} <= files
    table = pd.read_csv(tmp_path/'o'/'results.csv')
    assert len(table) == 10 and set(table.test) == {'C6', 'B4'}   # 5 arms x 2 test sections
    conf = pd.read_csv(tmp_path/'o'/'confusion.csv')
    # the confusion counts of each arm and test section add up to its labelled spots
    n = conf.groupby(['arm', 'test']).n.sum().rename('n').reset_index().merge(table[['arm', 'test', 'n_labelled']])
    assert (n.n == n.n_labelled).all()

@pytest.mark.parametrize('name', list(EXPERIMENTS))
def test_static_options_equal_the_signature(name):
    "The options read from the source (no import) are the ones inspect.signature and the **options walk give."
    static = static_options(*EXPERIMENTS[name][:2])           # raises NotStatic if the source cannot be read exactly
    assert static == experiment_options(experiment_function(name))

def test_static_options_follow_imports_and_refuse_non_literals(tmp_path, monkeypatch):
    (tmp_path/'demo_pkg').mkdir()
    (tmp_path/'demo_pkg'/'__init__.py').write_text('')
    (tmp_path/'demo_pkg'/'low.py').write_text("def fit(data, lr:float=1/3, *, steps:int|None=None, tag='a'): pass\n")
    (tmp_path/'demo_pkg'/'exp.py').write_text(
        "from .low import fit\nfrom pathlib import Path\n"
        "def run_a(quick:bool=False, seed:int=0, data_dir=None, n:int=2, **options):\n"
        "    k = options.pop('k', 5 if quick else 50); return fit(None, tag='b', **options)\n"
        "def run_b(quick=False, seed=0, data_dir=None, where=Path('x')): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    opts = static_options('demo_pkg.exp', 'run_a')
    assert list(opts) == ['n', 'k', 'lr', 'steps'] and opts['lr'].default == 1/3 and opts['steps'].types == (int, type(None))
    assert opts['k'].default_text == '5 if quick else 50' and opts['k'].types == (int,)
    import importlib, sys
    assert 'demo_pkg.exp' not in sys.modules                  # read, not imported
    assert opts == experiment_options(importlib.import_module('demo_pkg.exp').run_a)
    from stlearn_nb.cli import NotStatic
    with pytest.raises(NotStatic, match="Path"): static_options('demo_pkg.exp', 'run_b')

MISTAKES = [   # (argv after the command, words of the one error line); each refused before torch or a concept is imported
    (['strank-tyo'], "unknown command 'strank-tyo' (did you mean 'strank-toy'?)"),
    (['segment', '{png}', '--model', '{png}', '--microns', '0.5'], 'unknown flag --microns (did you mean --mpp?)'),
    (['encode', '--hest', '{d}', '--out', '{d}/o', '--batch-size', '8'], 'unknown flag --batch-size (did you mean --bs?)'),
    (['strank-toy', '--quick', '--set', 'epoch=2', '--out', '{d}/o'], "did you mean 'epochs'?"),
    (['strank-her2st', '--data-dir', '{d}/data/her2st', '--out', '{d}/o'], "is the 'her2st' dataset folder itself; pass the folder that contains it: --data-dir {d}/data"),
    (['segment', '{png}', '--model', '{png}', '--mpp', '0.5', '--out', '{d}/o'], 'x.png: expected a segmentation model file'),
    (['segment', '{png}', '--model', '{png}', '--mpp', 'nan', '--out', '{d}/o'], '--mpp: the pixel size must be > 0 um/px, got nan'),
    (['encode', '--hest', '{d}/hest', '--out', '{d}/o', '--arch', 'resnet18', '--weights', '{png}'], 'x.png: expected a resnet18 state-dict file written by torch.save (.pth/.pt), found a PNG image'),
    (['de', '--automated', '{csv}', '--curated', '{csv}', '--label-key', 'y', '--curated-key', 'y', '--reference', 'A', '--target', 'B', '--out', '{d}/o'], 'c.csv: expected an AnnData file (.h5ad) for --automated, found text'),
]

def test_mistakes_refused_before_heavy_imports(tmp_path):
    "One subprocess runs every mistake through main(): exit 2, one line, and torch / pandas / the concept modules never imported."
    (tmp_path/'x.png').write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(32)); (tmp_path/'c.csv').write_text('a,b\n1,2\n')
    (tmp_path/'data'/'her2st'/'counts').mkdir(parents=True); (tmp_path/'hest'/'patches').mkdir(parents=True)
    (tmp_path/'hest'/'patches'/'S.h5').write_bytes(b'\x89HDF\r\n\x1a\n')
    fill = lambda a: [x.format(d=tmp_path, png=tmp_path/'x.png', csv=tmp_path/'c.csv') for x in a]
    code = textwrap.dedent(f"""
        import sys, io, contextlib, json
        from stlearn_nb.cli import main
        out = []
        for argv in {[fill(a) for a, _ in MISTAKES]!r}:
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                try: rc = main(argv)
                except SystemExit as e: rc = e.code
            out.append([rc, err.getvalue()])
        heavy = sorted(m for m in ('torch', 'pandas', 'numpy', 'anndata', 'fastai') if m in sys.modules)
        print(json.dumps([out, heavy]))""")
    rc, stdout, err = _cli(code=code)
    assert rc == 0, err
    import json
    results, heavy = json.loads(stdout)
    assert heavy == []
    for (rc, text), (_, words) in zip(results, MISTAKES):
        assert rc == 2 and len(text.strip().splitlines()) == 1 and words.format(d=tmp_path) in text, (rc, text, words)

def test_epoch_lines_name_the_learner_label(capsys):
    "An experiment that names its Learner (`learn.label`, as strank's learners do) gets that name in each epoch line."
    import torch
    from torch.utils.data import TensorDataset, DataLoader
    from fastai.learner import Learner
    from fastai.data.core import DataLoaders
    from stlearn_nb.cli import progress_mode
    x = torch.linspace(0, 1, 16)[:, None]; ds = TensorDataset(x, 2 * x)
    with progress_mode(terminal=False, prefix='demo'):
        learn = Learner(DataLoaders(DataLoader(ds, batch_size=8), DataLoader(ds, batch_size=8)), torch.nn.Linear(1, 1), loss_func=torch.nn.MSELoss())
        learn.label = 'arm B seed 3'; learn.fit(2, 0.1)
    lines = [l for l in capsys.readouterr().out.splitlines() if ' epoch ' in l]
    assert [l.split(':')[0] for l in lines] == ['demo arm B seed 3 epoch 1/2', 'demo arm B seed 3 epoch 2/2']

def test_segment_whole_slide_out_locked_by_another_run(tmp_path):
    "While another run holds --out (its lock taken here), `segment --block-px` exits 2 with one line naming the holder and writes nothing; once released the same command runs."
    from stlearn_nb.hestseg_wsi import output_lock
    img, model = _segment_inputs(tmp_path)
    argv = ['segment', str(img), '--model', str(model), '--mpp', '0.5', '--out', str(tmp_path/'out'), '--block-px', '64', '--workers', '1', '--quiet']
    with output_lock(tmp_path/'out'):
        code, out, err = _cli(*argv)
    assert code == 2 and 'OutputInUseError' in err and f'(pid {os.getpid()} on ' in err and err.strip().count('\n') == 0, err
    assert not (tmp_path/'out').exists()
    code, out, err = _cli(*argv)
    assert code == 0 and (tmp_path/'out'/'a'/'nuclei.csv').exists() and (tmp_path/'out'/'segment.csv').exists(), err
