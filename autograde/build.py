"""One source, two products: generate learner stubs and learner notebooks from `solutions/`.

    attnlab build            regenerate src/attnlab/*.py and notebooks/*.ipynb
    attnlab build --check    exit 1 (listing the files) when a fresh generation differs from disk

Markers and cell tags are documented in CONTRIBUTING.md.
"""
import json
import re
from pathlib import Path

from .course import notebook_for_module

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HINTS, END_HINTS = "### BEGIN HINTS", "### END HINTS"
_DEF = re.compile(r"^(\s*)def\s+(\w+)\s*\(")


class BuildError(Exception):
    """A solution source is malformed (unbalanced markers, unknown tag)."""


# --------------------------------------------------------------------------------------- stubs
def make_stub(source, module, where="<source>"):
    """Return the learner stub of one solution module's text."""
    out, func_stack, in_solution, in_hints = [], [], False, False
    notebook = notebook_for_module(module).name
    for lineno, line in enumerate(source.splitlines(), 1):
        stripped = line.strip()
        m = _DEF.match(line)
        if m and not in_solution:
            indent = len(m.group(1))
            func_stack = [f for f in func_stack if f[0] < indent] + [(indent, m.group(2))]
        if stripped == BEGIN_SOLUTION:
            if in_solution or in_hints:
                raise BuildError(f"{where}:{lineno}: nested {BEGIN_SOLUTION}")
            in_solution = True
            indent = line[: len(line) - len(line.lstrip())]
            if indent:  # inside a function: the stub raises
                name = func_stack[-1][1] if func_stack else "?"
                out.append(f'{indent}raise NotImplementedError(')
                out.append(f'{indent}    "{module}.{name} is not implemented yet: see notebooks/{notebook}.ipynb"')
                out.append(f"{indent})")
            continue
        if stripped == END_SOLUTION:
            if not in_solution:
                raise BuildError(f"{where}:{lineno}: {END_SOLUTION} without {BEGIN_SOLUTION}")
            in_solution = False
            continue
        if stripped in (BEGIN_HINTS, END_HINTS):
            if (stripped == BEGIN_HINTS) == in_hints or in_solution:
                raise BuildError(f"{where}:{lineno}: misplaced {stripped}")
            in_hints = stripped == BEGIN_HINTS
            continue
        if not in_solution:
            out.append(line)
    if in_solution or in_hints:
        raise BuildError(f"{where}: a marker region is not closed")
    return "\n".join(out) + "\n"


def solution_lines(source):
    """The stripped lines inside SOLUTION regions (what must never reach a learner)."""
    lines, inside = [], False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped in (BEGIN_SOLUTION, END_SOLUTION):
            inside = stripped == BEGIN_SOLUTION
        elif inside:
            lines.append(stripped)
    return lines


def solution_only(source):
    """The solution text with marker lines removed (what the instructor's package runs)."""
    keep = (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HINTS, END_HINTS)
    return "\n".join(l for l in source.splitlines() if l.strip() not in keep) + "\n"


def generated_stubs():
    files = {}
    for path in sorted((SOLUTIONS / "attnlab").glob("*.py")):
        text = path.read_text()
        if path.name == "__init__.py":
            files[f"src/attnlab/{path.name}"] = text
        else:
            files[f"src/attnlab/{path.name}"] = make_stub(text, path.stem, str(path.relative_to(ROOT)))
    return files


# ------------------------------------------------------------------------------------ notebooks
SETUP_SOURCE = '''\
# Setup: run this cell first. Your code in src/attnlab is reloaded each time you save it.
%load_ext autoreload
%autoreload 2
import numpy as np
from autograde.notebook import check, use_package
attnlab = use_package()'''

ANSWER_PROMPT = "**Your answer** (write it here, in your own words; a model answer is in `solutions/notebooks/`):"

_TAG_OK = re.compile(r"^(setup|check|answer|points:\d+(\.\d+)?|question:(qa|theory)-\d+)$")


def cell_tags(cell):
    return list(cell.get("metadata", {}).get("tags", []))


def load_source_notebook(path):
    import jupytext

    nb = jupytext.read(path)
    for i, cell in enumerate(nb.cells):
        for tag in cell_tags(cell):
            if not _TAG_OK.match(tag):
                raise BuildError(f"{path.name}: cell {i}: unknown tag {tag!r} (see CONTRIBUTING.md)")
    return nb


def learner_notebook(path):
    """The self-paced learner notebook (nbformat node) built from one jupytext source."""
    import nbformat

    nb = load_source_notebook(path)
    cells = []
    for cell in nb.cells:
        tags = cell_tags(cell)
        meta = {"tags": tags} if tags else {}
        if "setup" in tags:
            cells.append(nbformat.v4.new_code_cell(SETUP_SOURCE, metadata=meta))
        elif "answer" in tags:
            cells.append(nbformat.v4.new_markdown_cell(ANSWER_PROMPT + "\n\n", metadata=meta))
        elif cell.cell_type == "code":
            cells.append(nbformat.v4.new_code_cell(cell.source, metadata=meta))
        else:
            cells.append(nbformat.v4.new_markdown_cell(cell.source, metadata=meta))
    out = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    })
    for i, cell in enumerate(out.cells):  # stable ids keep diffs and the sync check quiet
        cell["id"] = f"{path.stem[:2]}-{i:03d}"
    return out


def notebook_text(nb):
    import nbformat

    return nbformat.writes(nb) + "\n"


def generated_notebooks():
    return {f"notebooks/{p.stem}.ipynb": notebook_text(learner_notebook(p))
            for p in sorted((SOLUTIONS / "notebooks").glob("[0-9][0-9]_*.py"))}


def generate():
    """Every generated file: {path relative to the repo root: text}."""
    files = generated_stubs()
    files.update(generated_notebooks())
    return files


def build(check=False, out=print):
    """Write (or, with check=True, compare) every generated file. Returns the exit status."""
    files = generate()
    stale = [rel for rel, text in files.items()
             if not (ROOT / rel).exists() or (ROOT / rel).read_text() != text]
    expected_dirs = {"src/attnlab": ".py", "notebooks": ".ipynb"}
    orphans = [str(p.relative_to(ROOT)) for d, ext in expected_dirs.items()
               for p in sorted((ROOT / d).glob(f"*{ext}")) if str(p.relative_to(ROOT)) not in files]
    if check:
        for rel in stale:
            out(f"out of date: {rel}")
        for rel in orphans:
            out(f"not generated from solutions/: {rel}")
        if stale or orphans:
            out("run `attnlab build` and commit the result")
            return 1
        out(f"generated files are in sync with solutions/ ({len(files)} files)")
        return 0
    for rel in stale:
        target = ROOT / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(files[rel])
        out(f"wrote {rel}")
    for rel in orphans:
        out(f"warning: {rel} is not generated from solutions/ (delete it if it is stale)")
    out(f"{len(files)} generated files, {len(stale)} updated")
    return 0
