"""Write the glossary's links back to the chapters: each entry of nbs/98_glossary.ipynb ends with a "*Used in:*" line
listing the numbered notebooks that link to its anchor (`98_glossary.ipynb#anchor`), in notebook order.

Run it after adding a glossary link to a chapter. With --check, exits 1 when a "*Used in:*" line is out of date
(tests/test_claims.py runs the same comparison)."""
import re, sys
from pathlib import Path
import nbformat

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
GLOSSARY = NBS/'98_glossary.ipynb'
ANCHOR = re.compile(r'^<a id="([\w-]+)"></a>')
USED = re.compile(r'\n\*Used in:\*[^\n]*$')

def index_labels() -> dict:
    "notebook file -> its short name in the index's table (`| [STRank](10_strank.ipynb) |`)."
    text = (NBS/'index.ipynb').read_text()
    return dict((f, label) for label, f in re.findall(r'\| \[([^\]]+)\]\((\d\d_\w+\.ipynb)\)', text))

def title(nb) -> str:
    "The notebook's H1, shortened at its colon (for a notebook the index does not name)."
    h1 = next(re.search(r'^#\s+(.+)$', c.source, re.M).group(1) for c in nb.cells
              if c.cell_type == 'markdown' and re.search(r'^#\s+', c.source, re.M))
    return h1.split(':')[0].strip()

def users() -> dict:
    "anchor -> [(notebook file, title)] of the numbered notebooks (not the glossary) that link to it."
    out, labels = {}, index_labels()
    for path in sorted(NBS.glob('[0-9][0-9]_*.ipynb')):
        if path == GLOSSARY: continue
        nb = nbformat.read(path, as_version=4)
        text = '\n'.join(c.source for c in nb.cells if c.cell_type == 'markdown')
        for anchor in dict.fromkeys(re.findall(r'98_glossary\.ipynb#([\w-]+)', text)):
            out.setdefault(anchor, []).append((path.name, labels.get(path.name) or title(nb)))
    return out

def used_line(entries) -> str:
    return '*Used in:* ' + ', '.join(f'[{f[:2]} {t}]({f})' for f, t in entries) + '.'

def rewrite(nb, used) -> None:
    "Replace or add the *Used in:* line at the end of each entry (a paragraph starting with an anchor)."
    for cell in nb.cells:
        if cell.cell_type != 'markdown' or '<a id=' not in cell.source: continue
        blocks = cell.source.split('\n\n')
        for i, b in enumerate(blocks):
            m = ANCHOR.match(b)
            if not m: continue
            b = USED.sub('', b)
            blocks[i] = b + ('\n' + used_line(used[m.group(1)]) if m.group(1) in used else '')
        cell.source = '\n\n'.join(blocks)

if __name__ == '__main__':
    nb = nbformat.read(GLOSSARY, as_version=4)
    before = [c.source for c in nb.cells]
    rewrite(nb, users())
    if '--check' in sys.argv: sys.exit(0 if before == [c.source for c in nb.cells] else 1)
    nbformat.write(nb, GLOSSARY)
