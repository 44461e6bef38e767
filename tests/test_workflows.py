"""The GitHub Actions workflows: `.github/workflows/test.yaml` (README's test command) and `deploy.yaml` (the site,
built by `nbdev_docs`, published to the gh-pages branch). GitHub cannot be reached here, so the checks are what can go
wrong on our side: both files parse as workflows, every command they run exists (a script of this repository, a
console script of a pinned dependency, or a tool of GitHub's Ubuntu runner), the test job runs exactly README's
install and test commands, and the folder the deploy publishes is the one `nbdev_docs` writes."""
import configparser, re, shlex
from importlib.metadata import entry_points
from pathlib import Path
import pytest, yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT/'.github'/'workflows'
RUNNER_TOOLS = {'python', 'pip', 'wget', 'sudo', 'dpkg'}   # on GitHub's ubuntu-latest image before our install step

def settings() -> configparser.SectionProxy:
    cfg = configparser.ConfigParser(delimiters=['=']); cfg.read(ROOT/'settings.ini'); return cfg['DEFAULT']

def load(path) -> dict:
    wf = yaml.safe_load(Path(path).read_text())
    if True in wf: wf['on'] = wf.pop(True)        # YAML 1.1 reads the key `on` as a boolean
    return wf

def run_commands(wf:dict) -> list:
    "Every shell command of every `run:` step, one per line, in order."
    return [line.strip() for job in wf.get('jobs', {}).values() for step in job.get('steps', []) if 'run' in step
            for line in step['run'].splitlines() if line.strip() and not line.strip().startswith('#')]

def console_scripts() -> set:
    return {e.name for e in entry_points(group='console_scripts')}

def requirement_names() -> set:
    s = settings()
    return {re.split(r'[<>=!\[; ]', r)[0].lower() for r in (s['requirements'] + ' ' + s['dev_requirements']).split()}

def command_problems(command:str, root=ROOT) -> list:
    "Why `command` would not run on a runner after `pip install -e .[dev]`; [] when it would."
    words = shlex.split(command)
    if words[0] == 'sudo': words = words[1:]
    tool = words[0]
    if tool == 'bash':
        return [] if (root/words[1]).is_file() else [f'{command}: {words[1]} is not in the repository']
    if tool == 'pip' and words[1:3] == ['install', '-e']:
        extra = re.search(r'\[(\w+)\]', words[3])
        if not (root/'setup.py').is_file(): return [f'{command}: no setup.py']
        if extra and not settings().get(f'{extra.group(1)}_requirements'): return [f'{command}: no {extra.group(1)}_requirements in settings.ini']
        return []
    if tool in RUNNER_TOOLS: return []
    if tool not in console_scripts(): return [f'{command}: {tool} is not a console script of any installed package']
    owner = next(e.dist.name.lower() for e in entry_points(group='console_scripts') if e.name == tool)
    return [] if owner in requirement_names() else [f'{command}: {tool} comes from {owner}, not a requirement in settings.ini']

def workflow_problems(wf:dict, root=ROOT) -> list:
    problems = [f'no {k}' for k in ('name', 'on', 'jobs') if k not in wf]
    for name, job in wf.get('jobs', {}).items():
        if 'runs-on' not in job or not job.get('steps'): problems.append(f'job {name}: no runs-on or no steps')
    return problems + [p for c in run_commands(wf) for p in command_problems(c, root)]

def readme_commands() -> list:
    "The commands of README's Install block (install, then the test command)."
    text = (ROOT/'README.md').read_text()
    block = re.search(r'## Install\n.*?```sh\n(.*?)```', text, re.S).group(1)
    return [l.strip() for l in block.splitlines() if l.strip()]

@pytest.mark.parametrize('name', ['test.yaml', 'deploy.yaml'])
def test_workflow_parses_and_commands_exist(name):
    wf = load(WORKFLOWS/name)
    assert workflow_problems(wf) == []

def test_ci_runs_readme_test_command():
    wf = load(WORKFLOWS/'test.yaml')
    assert {'push', 'pull_request'} <= set(wf['on'])
    commands, readme = run_commands(wf), readme_commands()
    assert readme == ['pip install -e ".[dev]"', 'bash .ci/test'], readme
    assert [c for c in commands if c in readme] == readme      # both, in README's order

def test_deploy_publishes_what_nbdev_docs_builds():
    wf = load(WORKFLOWS/'deploy.yaml')
    assert 'push' in wf['on'] and 'main' in wf['on']['push']['branches'] and settings()['branch'] == 'main'
    steps = [s for job in wf['jobs'].values() for s in job['steps']]
    assert 'nbdev_docs' in run_commands(wf)
    assert any(re.match(r'^\s*(sudo )?dpkg -i quarto', c) for c in run_commands(wf)), 'Quarto is not installed'
    publish = [s for s in steps if s.get('uses', '').startswith('peaceiris/actions-gh-pages')]
    assert len(publish) == 1
    doc_path = settings()['doc_path']
    assert Path(publish[0]['with']['publish_dir']) == Path(doc_path)
    assert yaml.safe_load((ROOT/'nbs'/'nbdev.yml').read_text())['project']['output-dir'] == doc_path
    assert wf['permissions']['contents'] == 'write'             # the action pushes the gh-pages branch
    order = [i for i, s in enumerate(steps) for c in [s.get('run', '')] if 'pip install -e' in c or c.strip() == 'nbdev_docs']
    assert len(order) == 2 and order[0] < order[1]              # installed before it builds

def test_site_address_follows_user_and_repo():
    "README tells a teacher to set `user` and `repo`: the site's address and git_url must follow them, the package name not."
    cfg = configparser.ConfigParser(delimiters=['=']); cfg.read(ROOT/'settings.ini')
    cfg['DEFAULT']['user'], cfg['DEFAULT']['repo'] = 'a-teacher', 'course-site'
    s = cfg['DEFAULT']
    assert (s['doc_host'], s['doc_baseurl'], s['git_url']) == ('https://a-teacher.github.io', '/course-site',
                                                                'https://github.com/a-teacher/course-site')
    assert s['lib_name'] == s['lib_path'] == 'stlearn_nb'
    text = (ROOT/'README.md').read_text()
    assert re.search(r'`user`.*`repo`', text) and 'settings.ini' in text and 'gh-pages' in text

def test_checks_can_fail(tmp_path):
    "A workflow naming a missing script, a mistyped command and no jobs is refused, each for its reason."
    broken = {'name': 'x', 'on': ['push'], 'jobs': {'t': {'runs-on': 'ubuntu-latest', 'steps': [
        {'run': 'bash .ci/no_such_script\nnbdev_doc\npip install -e ".[nope]"'}]}}}
    problems = workflow_problems(broken)
    assert len(problems) == 3 and '.ci/no_such_script' in problems[0] and 'nbdev_doc' in problems[1] and 'nope' in problems[2], problems
    assert workflow_problems({'name': 'x', 'on': ['push']}) == ['no jobs']
    assert command_problems('bash .ci/test', tmp_path)           # the same command in an empty folder
