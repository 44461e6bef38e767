"The console script as a user calls it."
import subprocess, sys, shutil
import pytest
from stlearn_nb.cli import EXPERIMENTS, available_experiments, build_parser

def test_console_script_help_lists_available_experiments():
    exe = shutil.which('stlearn-nb')
    assert exe is not None, "console script stlearn-nb not installed (pip install -e .)"
    out = subprocess.run([exe, '--help'], capture_output=True, text=True, check=True).stdout
    assert 'info' in out
    for name in available_experiments(): assert name in out

def test_info_prints_versions_and_device():
    exe = shutil.which('stlearn-nb')
    out = subprocess.run([exe, 'info'], capture_output=True, text=True, check=True).stdout
    assert 'fastai' in out and 'device' in out and 'torch' in out

def test_cli_does_not_import_concepts_for_help():
    code = "import sys; from stlearn_nb.cli import build_parser; build_parser(); print(sorted(m for m in sys.modules if m.startswith('stlearn_nb.')))"
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    for module, _, _ in EXPERIMENTS.values(): assert module not in out
