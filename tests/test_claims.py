"""What the index (and so README) and the glossary say about the notebooks, checked against the notebooks.

The index claims: its table lists every notebook, each with the module it exports; the subtitle counts the methods and
chapters; every notebook from 00 to 90 links the glossary at a term's first use and ends with questions; the
chapters that share a method are named; the notebook a newcomer opens first exists and is a chapter; every chapter has
a quick setting. The glossary claims each entry ends with the chapters that use it, and that theta is the inverse
dispersion. Each check returns its problems; `test_checks_can_fail` feeds each a case it must refuse."""
import importlib.util, re, subprocess, sys
from pathlib import Path
import nbformat, pytest

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
NUMBERS = {w: i for i, w in enumerate('zero one two three four five six seven eight nine ten eleven twelve'.split())}
QUESTIONS_END = {'Check your understanding', 'Try next', 'Summary', 'References'}   # what may follow the questions
FIRST_USE = {'negative-binomial': r'negative[ -]binomial', 'kriging': r'kriging', 'gaussian-process': r'Gaussian[ -]process',
             'balanced-accuracy': r'balanced accuracy', 'infonce': r'InfoNCE', 'stereoscope': r'stereoscope',
             'library-size': r'library size', 'batch-effect': r'batch effect'}

def read(path): return nbformat.read(path, as_version=4)
def markdown(nb) -> list: return [c.source for c in nb.cells if c.cell_type == 'markdown']
def numbered() -> list: return sorted(NBS.glob('[0-9][0-9]_*.ipynb'))
def chapters() -> list: return [p for p in numbered() if 10 <= int(p.name[:2]) < 90]
def index() -> nbformat.NotebookNode: return read(NBS/'index.ipynb')

def default_exp(nb):
    m = next((re.search(r'^#\|\s*default_exp\s+(\S+)', c.source, re.M) for c in nb.cells
              if c.cell_type == 'code' and re.search(r'^#\|\s*default_exp', c.source, re.M)), None)
    return m.group(1) if m else None

def glossary_anchors() -> set:
    return set(re.findall(r'<a id="([\w-]+)"></a>', '\n'.join(markdown(read(NBS/'98_glossary.ipynb')))))

# --- the checks ---------------------------------------------------------------------------------------------

def table_problems(index_text:str, files:list) -> list:
    "The index table lists each notebook once, each existing, with its module (`stlearn_nb.x` or (none))."
    rows = re.findall(r'^\| \[[^\]]+\]\((\d\d_\w+\.ipynb)\) \| ([^|]+) \|', index_text, re.M)
    listed = [f for f, _ in rows]
    problems = [f'{f} is in the table but not in nbs/' for f in listed if not (NBS/f).exists()]
    problems += [f'{p.name} is not in the table' for p in files if p.name not in listed]
    problems += [f'{f} is listed {listed.count(f)} times' for f in set(listed) if listed.count(f) > 1]
    for f, module in rows:
        if not (NBS/f).exists(): continue
        exp = default_exp(read(NBS/f)); said = module.strip().strip('`')
        if said != (f'stlearn_nb.{exp}' if exp else '(none)'): problems.append(f'{f}: the table says {said}, the notebook exports {exp}')
    return problems

def count_problems(subtitle:str, chapter_files:list) -> list:
    "'N research methods in M chapters': M chapters (10-89), N methods (their distinct tens)."
    m = re.search(r'(\w+) research methods in (\w+) chapters', subtitle)
    if not m: return [f'the subtitle does not count methods and chapters: {subtitle}']
    methods, n_chapters = (NUMBERS.get(w, -1) for w in m.groups())
    tens = {p.name[0] for p in chapter_files}
    return ([f'the subtitle says {methods} methods, the chapters have {len(tens)}'] if methods != len(tens) else []) + \
           ([f'the subtitle says {n_chapters} chapters, nbs/ has {len(chapter_files)}'] if n_chapters != len(chapter_files) else [])

def shared_method_problems(index_text:str, chapter_files:list) -> list:
    "The index's '(20, 21, 22)' lists are exactly the methods that span several chapters."
    said = {tuple(int(x) for x in re.findall(r'\d\d', g)) for g in re.findall(r'\((\d\d(?:, \d\d)+)\)', index_text)}
    tens = {}
    for p in chapter_files: tens.setdefault(p.name[0], []).append(int(p.name[:2]))
    real = {tuple(v) for v in tens.values() if len(v) > 1}
    return [] if said == real else [f'the index names {sorted(said)} as multi-chapter methods; the notebooks give {sorted(real)}']

def glossary_link_problems(nb, name:str, anchors:set) -> list:
    "At least one glossary link, every link to an existing anchor, and the listed terms linked at their first use."
    body = re.sub(r'`[^`\n]*`', '', '\n'.join(markdown(nb)[1:]))   # the title's subtitle cannot hold a link; code is not a link
    links = re.findall(r'98_glossary\.ipynb#([\w-]+)', body)
    problems = [] if links or name == '98_glossary.ipynb' else [f'{name}: no link to the glossary']
    problems += [f'{name}: link to a missing glossary anchor #{a}' for a in links if a not in anchors]
    for anchor, pattern in FIRST_USE.items():
        link = re.search(r'\[[^\]]*\]\(98_glossary\.ipynb#' + anchor + r'\)', body)
        first = re.search(pattern, body, re.I)
        if link and first and first.start() < link.start():
            problems.append(f'{name}: "{first.group(0)}" is used before its glossary link')
    return problems

def questions_problems(nb, name:str) -> list:
    "A '## Check your understanding' section with at least 5 numbered questions, followed only by Try next/Summary/References."
    cells = markdown(nb)
    at = [i for i, s in enumerate(cells) if re.search(r'^##\s+Check your understanding', s, re.M)]
    if not at: return [f'{name}: no "Check your understanding" section']
    text = '\n'.join(cells[at[-1]:]); text = text[re.search(r'^##\s+Check your understanding', text, re.M).start():]
    section = re.split(r'^##\s+', text.split('Check your understanding', 1)[1], flags=re.M)[0]
    problems = [] if len(re.findall(r'^\d+\.\s', section, re.M)) >= 5 else [f'{name}: fewer than 5 questions']
    later = re.findall(r'^##\s+(.+?)\s*$', text, re.M)
    return problems + [f'{name}: section "{h}" after the questions' for h in later if h not in QUESTIONS_END]

def theta_problems(texts:dict) -> list:
    "theta is the inverse dispersion everywhere: no 'dispersion theta' without 'inverse'."
    return [f'{name}: "{m.group(0)}"' for name, t in texts.items()
            for m in re.finditer(r'(?<!inverse )(?<!inverse\n)\bdispersion\b[^.\n]{0,25}\$\\theta', t)]

# --- the tests ----------------------------------------------------------------------------------------------

def test_index_table_lists_every_notebook_with_its_module():
    text = '\n'.join(markdown(index()))
    assert table_problems(text, numbered()) == []

def test_subtitle_counts_methods_and_chapters():
    assert chapters(), 'no chapters found'
    assert count_problems(markdown(index())[0], chapters()) == []
    assert shared_method_problems('\n'.join(markdown(index())), chapters()) == []

@pytest.mark.parametrize('path', numbered(), ids=lambda p: p.name)
def test_notebook_links_glossary_and_ends_with_questions(path):
    nb = read(path)
    assert glossary_link_problems(nb, path.name, glossary_anchors()) + questions_problems(nb, path.name) == []

def test_index_links_resolve():
    text = '\n'.join(markdown(index()))
    assert [f for f in re.findall(r'\]\(([\w.]+\.ipynb)', text) if not (NBS/f).exists()] == []
    assert [a for a in re.findall(r'98_glossary\.ipynb#([\w-]+)', text) if a not in glossary_anchors()] == []

def test_where_to_start():
    "The first notebook the index tells a newcomer to open is a chapter; every chapter has a quick setting."
    section = '\n'.join(markdown(index())).split('## Where to start', 1)[1]
    first = re.search(r'\]\((\d\d_\w+\.ipynb)\)', section).group(1)
    assert (NBS/first) in chapters()
    assert [p.name for p in chapters() if not any(re.search(r'^QUICK\s*=\s*True', c.source, re.M)
                                                   for c in read(p).cells if c.cell_type == 'code')] == []

def test_glossary_used_in_lines_are_current():
    spec = importlib.util.spec_from_file_location('glossary_links', ROOT/'.ci'/'glossary_links.py')
    gl = importlib.util.module_from_spec(spec); spec.loader.exec_module(gl)
    nb = read(gl.GLOSSARY); before = [c.source for c in nb.cells]
    used = gl.users()
    gl.rewrite(nb, used)
    assert [c.source for c in nb.cells] == before, 'run python .ci/glossary_links.py'
    assert set(used) <= glossary_anchors()
    missing = sorted(glossary_anchors() - set(used))
    assert missing == [], f'glossary entries no chapter links to: {missing}'

def test_theta_is_the_inverse_dispersion():
    texts = {p.name: '\n'.join(markdown(read(p))) for p in numbered()}
    assert theta_problems(texts) == []

def readme_link_problems(text:str, root=ROOT) -> list:
    "Relative links of README (it sits above nbs/) that name no file."
    links = re.findall(r'\]\(([^)\s:]+?)(?:#[\w-]*)?\)', text)
    return [l for l in links if not (root/l).exists()]

def test_readme_is_current():
    assert subprocess.run([sys.executable, str(ROOT/'.ci'/'readme.py'), '--check']).returncode == 0, 'run python .ci/readme.py'
    text = (ROOT/'README.md').read_text()
    assert readme_link_problems(text) == []
    assert readme_link_problems('[glossary](98_glossary.ipynb#kriging)')   # a link left relative to nbs/

def test_checks_can_fail():
    files = numbered()
    text = '\n'.join(markdown(index()))
    assert table_problems(text.replace('| [CPNN](30_cpnn.ipynb) |', '| [CPNN](31_cpnn.ipynb) |'), files)   # renamed
    assert table_problems(text.replace('`stlearn_nb.cpnn`', '`stlearn_nb.strank`'), files)              # wrong module
    assert count_problems('> four research methods in nine chapters.', chapters())
    assert count_problems('> six research methods in eight chapters.', chapters())
    assert shared_method_problems('(20, 21)', chapters())
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell('# T\n> s'),
        nbformat.v4.new_markdown_cell('A negative binomial loss, then the [negative binomial](98_glossary.ipynb#negative-binomial) '
                                      'and [a typo](98_glossary.ipynb#negativ-binomial).'),
        nbformat.v4.new_markdown_cell('## Check your understanding\n\n1. a\n2. b'),
        nbformat.v4.new_markdown_cell('## Speed\n\nmore')])
    link_problems = glossary_link_problems(nb, 'x.ipynb', glossary_anchors())
    assert len(link_problems) == 2 and 'missing' in link_problems[0] and 'before' in link_problems[1], link_problems
    q = questions_problems(nb, 'x.ipynb')
    assert len(q) == 2 and 'fewer' in q[0] and 'Speed' in q[1], q
    assert theta_problems({'x': 'the dispersion parameter $\\theta$'}) and not theta_problems({'x': 'the inverse dispersion $\\theta$'})
