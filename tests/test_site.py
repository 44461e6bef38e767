"""The documentation site up to Quarto's input (Quarto cannot be installed on these machines).

nbdev's docs processing (the processors `nbdev_proc_nbs` runs on every notebook, without its Quarto install and
`pip install` steps) turns `nbs/*.ipynb` into the pages Quarto renders. Here every notebook is processed into a
temporary folder, and each page is checked: one title and a description, a sidebar entry, every exported symbol
documented, the source of the `#| exports` (lesson) cells shown, figures kept, no `#| hide` scaffolding or
processing noise on the page, and no warning from the processing; signatures free of markdown (a docments comment
that names a symbol in backticks becomes a link that Quarto prints verbatim inside the code block) and of fastai's
inherited callback keywords, one public function or class per lesson cell (its documentation, then its source), and
prose cells (`Markdown(f"...")`) with their source hidden. `test_each_check_can_fail` processes tiny
notebooks broken on purpose, one per check, and shows that the check catches each."""
import ast, base64, json, os, re, warnings
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
import pytest, yaml

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
NOTEBOOKS = sorted(p.name for p in NBS.glob('*.ipynb'))

# --- nbdev's processing -------------------------------------------------------------------------------------

def process_notebook(src, dst):
    "nbdev's docs processing of one notebook (as `nbdev_proc_nbs` runs it per file): write `dst`, return nbdev's warnings."
    os.chdir(ROOT)                       # nbdev reads settings.ini from the working directory
    os.environ['IN_TEST'] = '1'          # as nbdev.serve_drv
    from execnb.nbio import read_nb, write_nb
    from nbdev.processors import FilterDefaults
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        nb = read_nb(src)
        try: FilterDefaults()(nb)
        except Exception as e: return [f'processing failed: {type(e).__name__}: {e} (cause: {e.__cause__!r})']
        write_nb(nb, dst)
    return [f'{w.category.__name__}: {w.message}' for w in caught if f'{os.sep}nbdev{os.sep}' in w.filename
            and not issubclass(w.category, DeprecationWarning)]   # as `nbdev_proc_nbs` shows them

def process_all(jobs, n_workers=2):
    "Process (src, dst) pairs in fresh processes (nbdev runs each notebook's exported cells), largest first."
    jobs = sorted(jobs, key=lambda j: -Path(j[0]).stat().st_size)
    with ProcessPoolExecutor(n_workers, mp_context=mp.get_context('spawn')) as ex:
        futures = {dst: ex.submit(process_notebook, str(src), str(dst)) for src, dst in jobs}
        return {dst: f.result() for dst, f in futures.items()}

# --- reading notebooks and pages ----------------------------------------------------------------------------

def read(path): return json.loads(Path(path).read_text())
def src(cell): return ''.join(cell.get('source', ''))

def directives(cell) -> dict:
    "nbdev directives at the top of a code cell: {'hide': [], 'exports': [], 'eval:': ['false'], ...}."
    out = {}
    if cell['cell_type'] != 'code': return out
    for line in src(cell).splitlines():
        m = re.match(r'^\s*#\|\s*(\S+)(.*)$', line)
        if not m:
            if line.strip(): break
            continue
        out[m.group(1)] = m.group(2).split()
    return out

def body(cell) -> str:
    "Cell source without directive lines."
    return '\n'.join(l for l in src(cell).splitlines() if not re.match(r'^\s*#\|', l)).strip()

def hidden(cell) -> bool:
    d = directives(cell)
    return bool({'hide', 'export', 'exporti', 'default_exp'} & d.keys()) or d.get('include:') == ['false']

def out_text(o) -> str:
    "All text of one output (stream text, markdown, plain)."
    if 'text' in o: return ''.join(o['text'])
    return ''.join(''.join(v) for k, v in o.get('data', {}).items() if k.startswith('text/'))

def images(cells) -> list:
    "Image payloads in the outputs of `cells` (first 200 characters each)."
    return [''.join(v)[:200] for c in cells for o in c.get('outputs', [])
            for k, v in o.get('data', {}).items() if k.startswith('image/')]

def frontmatter(page) -> dict:
    first = page['cells'][0] if page['cells'] else {}
    if first.get('cell_type') != 'raw': return {}
    m = re.match(r'^---\n(.*?)\n---', src(first), re.S)
    return (yaml.safe_load(m.group(1)) or {}) if m else {}

def markdown_h1s(page) -> list:
    "H1 headings left in markdown cells (outside code blocks): each would be a second title."
    h1 = []
    for c in page['cells']:
        if c['cell_type'] != 'markdown': continue
        text = re.sub(r'```.*?```', '', src(c), flags=re.S)
        h1 += re.findall(r'^#\s+(.+)$', text, re.M)
    return h1

def sidebar_entries(path=NBS/'sidebar.yml') -> list:
    def walk(x):
        if isinstance(x, str): yield x
        elif isinstance(x, list):
            for y in x: yield from walk(y)
        elif isinstance(x, dict):
            for k in ('contents', 'href'):
                if k in x: yield from walk(x[k])
    return list(walk(yaml.safe_load(Path(path).read_text())['website']['sidebar']['contents']))

def module_names(nb) -> dict:
    "{name: 'def' | 'const'} of the `__all__` of the module this notebook exports to (none: {})."
    m = next((re.search(r'^#\|\s*default_exp\s+(\S+)', src(c), re.M) for c in nb['cells']
              if c['cell_type'] == 'code' and re.search(r'^#\|\s*default_exp', src(c), re.M)), None)
    if m is None: return {}
    tree = ast.parse((ROOT/'stlearn_nb'/(m.group(1).replace('.', '/') + '.py')).read_text())
    names = next(ast.literal_eval(n.value) for n in tree.body
                 if isinstance(n, ast.Assign) and getattr(n.targets[0], 'id', None) == '__all__')
    defs = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    return {n: 'def' if n in defs else 'const' for n in names}

# --- the checks: each returns a list of problems ------------------------------------------------------------

def check_title(page) -> list:
    fm, h1 = frontmatter(page), markdown_h1s(page)
    problems = [f'no {k} (the first markdown cell: "# Title" then "> description")' for k in ('title', 'description')
                if not str(fm.get(k) or '').strip()]
    return problems + [f'a second H1 on the page: "# {t}"' for t in h1]

def check_sidebar(name, entries) -> list:
    return [] if name in entries else [f'{name} is not in nbs/sidebar.yml']

def check_documented(page, names) -> list:
    "Functions and classes need their show_doc; constants their defining source (`#| exports`) or a mention on the page."
    shown = {m for c in page['cells'] for o in c.get('outputs', [])
             for m in re.findall(r'^#+\s+([\w.]+)\s*$', out_text(o), re.M)}
    text = '\n'.join([src(c) for c in page['cells']] + [out_text(o) for c in page['cells'] for o in c.get('outputs', [])])
    return [f'{kind} {name} is exported but not documented on the page' for name, kind in names.items()
            if name not in shown and not (kind == 'const' and re.search(rf'\b{name}\b', text))]

def check_lessons(nb, page) -> list:
    "The source of every `#| exports` cell is on the page."
    shown = [body(c) for c in page['cells'] if c['cell_type'] == 'code']
    return [f'lesson cell not on the page: {body(c).splitlines()[0][:80]}' for c in nb['cells']
            if 'exports' in directives(c) and not any(body(c) in s for s in shown)]

def check_figures(nb, page, nbs=NBS) -> list:
    "Figures of visible cells stay in their cell (not hidden by Quarto's `output`/`include: false`); image links resolve."
    shown = {}
    for c in page['cells']:
        if c['cell_type'] == 'code' and not re.search(r'^#\|\s*(output|include):\s*false', src(c), re.M):
            shown.setdefault(body(c), set()).update(images([c]))
    problems = [f'figure of cell {i} lost: {body(c).splitlines()[0][:80] if body(c) else ""}'
                for i, c in enumerate(nb['cells']) if c['cell_type'] == 'code' and not hidden(c)
                for img in images([c]) if img not in shown.get(body(c), ())]
    for c in page['cells']:
        if c['cell_type'] != 'markdown': continue
        for link in re.findall(r'!\[[^\]]*\]\(([^)\s]+)', src(c)) + re.findall(r'<img [^>]*src="([^"]+)"', src(c)):
            if not re.match(r'^(https?:|data:)', link) and not (nbs/link).exists(): problems.append(f'missing image file {link}')
    return problems

def signatures(page) -> list:
    "The ```python signature blocks of the page's show_doc outputs."
    return [sig for c in page['cells'] for o in c.get('outputs', [])
            for sig in re.findall(r'```python\n(.*?)```', ''.join(o.get('data', {}).get('text/markdown', '')), re.S)]

def check_signatures(page) -> list:
    "No markdown link or backtick in a signature (printed verbatim in the code block), no inherited fastai event keywords."
    problems = []
    for sig in signatures(page):
        first = sig.strip().splitlines()[0][:60]
        links = re.findall(r'\[[^\]]*\]\(\S+?\)', sig)
        if links: problems.append(f'markdown link in the signature of {first}: {links}')
        elif '`' in sig: problems.append(f'backticks (printed as they are) in the signature of {first}')
        if 'after_create=None' in sig: problems.append(f"fastai's callback event keywords in the signature of {first}")
    return problems

def public_defs(cell) -> list:
    "Public top-level functions and classes of a code cell."
    tree = ast.parse('\n'.join(l for l in src(cell).splitlines() if not re.match(r'^\s*#\|', l)))
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not n.name.startswith('_')]

def check_one_lesson(nb) -> list:
    "One public function or class per `#| exports` cell (else the page shows both sources, then both docs); exception classes may share."
    return [f'lesson cell defines {", ".join(d)}: one per cell' for c in nb['cells'] if 'exports' in directives(c)
            for d in [public_defs(c)] if len(d) > 1 and not all(n.endswith('Error') for n in d)]

def check_prose(nb) -> list:
    "A visible cell that builds prose with `Markdown(...)` hides its source (`#| echo: false`): else the page shows it twice."
    return [f'prose cell shows its source: {body(c).splitlines()[0][:80]}' for c in nb['cells']
            if c['cell_type'] == 'code' and not hidden(c) and re.search(r'\bMarkdown\(', body(c))
            and not re.search(r'^#\|\s*echo:\s*false', src(c), re.M)]

def check_scaffolding(nb, page) -> list:
    "No hidden cell's source, test/export scaffolding, leftover directives or processing errors on the page."
    code = [src(c) for c in page['cells'] if c['cell_type'] == 'code']
    problems = [f'hidden cell shown: {body(c).splitlines()[0][:80]}' for c in nb['cells']
                if c['cell_type'] == 'code' and hidden(c) and body(c) and any(body(c) in s for s in code)]
    for s in code:
        for pat in (r'^\s*from fastcore\.test import', r'^\s*from nbdev\.showdoc import', r'nbdev_export\(\)', r'^\s*import nbdev\b'):
            if re.search(pat, s, re.M): problems.append(f'scaffolding on the page: {s.splitlines()[0][:80]}')
        for d in re.findall(r'^\s*#\|\s*([\w-]+)\s*$', s, re.M):   # nbdev's directives have no colon; Quarto's do
            problems.append(f'directive #| {d} left on the page')
    stderr_nb = {out_text(o) for c in nb['cells'] for o in c.get('outputs', []) if o.get('name') == 'stderr'}
    for c in page['cells']:
        for o in c.get('outputs', []):
            if o.get('output_type') == 'error': problems.append(f"error on the page: {o.get('ename')}: {o.get('evalue')}")
            elif o.get('name') == 'stderr' and out_text(o) not in stderr_nb:
                problems.append(f'stderr written by the processing: {out_text(o)[:80]}')
    return problems

def check_warnings(caught) -> list:
    "nbdev's warnings (first line and the start of the cell it names) and processing failures."
    return [' / '.join(w.splitlines()[:1] + w.splitlines()[2:4]) for w in caught]

# --- tiny notebooks, each broken on purpose for one check ---------------------------------------------------

PNG = base64.b64encode(bytes.fromhex('89504e470d0a1a0a0000000d4948445200000001000000010806000000'
                                     '1f15c4890000000d49444154789c6360f8ffff3f0005fe02fea7d6a4e00000000049454e44ae426082')).decode()

def md(s): return {'cell_type': 'markdown', 'metadata': {}, 'source': s}
def code(s, outputs=()): return {'cell_type': 'code', 'execution_count': None, 'metadata': {}, 'outputs': list(outputs), 'source': s}
FIGURE = {'output_type': 'display_data', 'metadata': {}, 'data': {'image/png': PNG, 'text/plain': '<Figure>'}}

def tiny(*extra, title=True):
    "A small notebook that passes every check; `extra` cells break one."
    cells = ([md('# Tiny lesson\n> A notebook for the site test.')] if title else []) + [
        code('#| hide\nfrom fastcore.test import test_eq'),
        code('#| exports\ndef lesson(x):\n    "Add one: the lesson."\n    return x + 1'),
        code('#| export\ndef plumbing(x):\n    "Pass through: plumbing."\n    return x'),
        *extra,                                    # (not last: nbdev fails on an `#| exports` cell at the end)
        code('test_eq(lesson(1), 2)'),
        code('lesson(1)', [FIGURE]),
        code('#| hide\nimport nbdev; nbdev.nbdev_export()')]
    return {'cells': cells, 'metadata': {'kernelspec': {'display_name': 'Python 3', 'language': 'python', 'name': 'python3'}},
            'nbformat': 4, 'nbformat_minor': 5}

TINY_NAMES = {'lesson': 'def', 'plumbing': 'def'}
BROKEN = {   # notebook -> (the check that must catch it, the notebook[, names its module would export])
    'no_title': ('title', tiny(title=False)),
    'two_titles': ('title', tiny(md('# A second title'))),
    'undocumented': ('documented', tiny(code('#| export\nghost = lambda x: x')), {'ghost': 'const'}),
    'undocumented_def': ('documented', tiny(code('#| export\n#| hide\ndef secret(x): return x')), {'secret': 'def'}),
    'lesson_hidden': ('lessons', tiny(code('#| exports\n#| hide\ndef hidden_lesson(x): return x'))),
    'figure_hidden': ('figures', tiny(code('#| output: false\nlesson(2)', [FIGURE]))),   # Quarto drops the figure
    'scaffold_typo': ('scaffolding', tiny(code('#| hid\nfrom fastcore.test import test_close'))),
    'stderr': ('scaffolding', tiny(code('#| exports\nimport sys\nsys.stderr.write("a note for developers\\n")'))),
    'warns': ('warnings', tiny(code('import math\nx = math.pi'))),
    'no_sidebar': ('sidebar', tiny()),
    'prose_twice': ('prose', tiny(code('from IPython.display import Markdown\nMarkdown(f"one plus one is {lesson(1)}")'))),
    'two_lessons': ('one_lesson', tiny(code('#| exports\ndef first(x):\n    "One."\n    return x\n\ndef second(x):\n    "Two."\n    return x'))),
}

def all_checks(name, nb, page, caught, names, entries, nbs=NBS) -> dict:
    return {'title': check_title(page), 'sidebar': check_sidebar(name, entries), 'documented': check_documented(page, names),
            'lessons': check_lessons(nb, page), 'figures': check_figures(nb, page, nbs), 'scaffolding': check_scaffolding(nb, page),
            'warnings': check_warnings(caught), 'signatures': check_signatures(page), 'one_lesson': check_one_lesson(nb),
            'prose': check_prose(nb)}

# --- the real notebooks -------------------------------------------------------------------------------------

@pytest.fixture(scope='session')
def pages(tmp_path_factory):
    """Every notebook in nbs/ and the tiny ones, processed by nbdev in one pool: name -> (notebook, page, warnings).
    Under pytest-xdist the first worker processes, the others wait on the lock and read its pages."""
    from filelock import FileLock
    base = tmp_path_factory.getbasetemp()
    if os.environ.get('PYTEST_XDIST_WORKER'): base = base.parent
    tmp = base/'site'
    jobs = [(NBS/n, tmp/'proc'/n) for n in NOTEBOOKS]
    jobs += [(tmp/'nbs'/f'tiny_{k}.ipynb', tmp/'proc'/f'tiny_{k}.ipynb') for k in ['good', *BROKEN]]
    with FileLock(str(base/'site.lock')):
        if not (tmp/'caught.json').exists():
            (tmp/'nbs').mkdir(parents=True, exist_ok=True); (tmp/'proc').mkdir(exist_ok=True)
            for name, nb in [('good', tiny())] + [(k, v[1]) for k, v in BROKEN.items()]:
                (tmp/'nbs'/f'tiny_{name}.ipynb').write_text(json.dumps(nb))
            caught = process_all(jobs)
            (tmp/'caught.json').write_text(json.dumps({dst.name: w for dst, w in caught.items()}))
    caught = json.loads((tmp/'caught.json').read_text())
    return {dst.name: (read(s), read(dst) if dst.exists() else {'cells': []}, caught[dst.name]) for s, dst in jobs}

def test_sidebar_lists_existing_pages():
    entries = sidebar_entries()
    assert [e for e in entries if not (NBS/e).exists()] == [], 'sidebar entries without a notebook'
    assert len(entries) == len(set(entries)), 'a notebook twice in the sidebar'

@pytest.mark.parametrize('name', NOTEBOOKS)
def test_page(pages, name):
    nb, page, caught = pages[name]
    problems = all_checks(name, nb, page, caught, module_names(nb), sidebar_entries())
    assert {k: v for k, v in problems.items() if v} == {}

def test_lessons_on_the_site():
    "Every notebook that exports a module, except the CLI's plumbing, shows some of its code as `#| exports` cells."
    for name in NOTEBOOKS:
        nb = read(NBS/name)
        if name in ('90_cli.ipynb',) or not module_names(nb): continue
        assert any('exports' in directives(c) for c in nb['cells']), f'{name}: no #| exports cell'

def test_each_check_can_fail(pages, tmp_path):
    entries = [f'tiny_{k}.ipynb' for k in ['good', *BROKEN] if k != 'no_sidebar']
    nb, page, caught = pages['tiny_good.ipynb']
    assert {k: v for k, v in all_checks('tiny_good.ipynb', nb, page, caught, TINY_NAMES, entries).items() if v} == {}
    for name, (check, _, *more) in BROKEN.items():
        nb, page, caught = pages[f'tiny_{name}.ipynb']
        names = {**TINY_NAMES, **(more[0] if more else {})}
        problems = all_checks(f'tiny_{name}.ipynb', nb, page, caught, names, entries)
        assert problems[check], f'{name}: check_{check} did not catch it ({problems})'
    # a figure whose image file is missing, a page that lost a show_doc: the same checks fail
    nb, page, caught = pages['tiny_good.ipynb']
    page = json.loads(json.dumps(page))
    page['cells'].append(md('![a figure](images/not_there.png)'))
    assert check_figures(nb, page, tmp_path)
    # a docments comment turned into a link, fastai's event keywords: the signature check fails
    for bad in ('x, # from [`toy_grid`](https://example.org/strank.html#toy_grid)', 'x, # one of `a`, `b`', 'after_create=None, before_fit=None'):
        broken = json.loads(json.dumps(page))
        docs = [o for c in broken['cells'] for o in c.get('outputs', []) if '### lesson' in out_text(o)]
        assert docs and not check_signatures(broken)
        for o in docs: o['data']['text/markdown'] = ''.join(o['data']['text/markdown']).replace('lesson(\n    x\n)', f'lesson(\n    {bad}\n)')
        assert check_signatures(broken), bad
    for c in page['cells']: c['outputs'] = [o for o in c.get('outputs', []) if '### lesson' not in out_text(o)]
    assert check_documented(page, TINY_NAMES)
