"""A judge-side reading of a submission's source: does the graded module reach PyTorch's own attention?

This is one of three independent lines for exercises that must not call it (the others run in the worker:
a profile hook on Python callables and a dispatch mode on PyTorch operators). Reading the copied source in
the judge's process cannot be tampered with by the submission; it flags

* any name, attribute or imported name containing a forbidden name (``scaled_dot_product_attention``,
  an alias ``from torch.nn.functional import scaled_dot_product_attention as f`` included);
* a string naming it used as an argument or a subscript (``getattr(F, "scaled_dot_product_attention")``,
  ``vars(F)["..."]``); docstrings and comments are not read;
* ``getattr``/``attrgetter`` on a PyTorch object with a computed name, ``vars()``/``__dict__`` of one,
  ``torch.ops`` and ``torch._C`` (the operator namespaces), and ``eval``, ``exec``, ``compile``,
  ``__import__`` or ``importlib`` anywhere in the graded modules.

The graded module and every ``attnlab`` module it imports (transitively) are read.
"""
import ast
import threading
from pathlib import Path

# ast.parse is not safe in concurrent threads on CPython 3.11 ("AST constructor recursion depth mismatch"),
# and grade-batch grades submissions in threads.
_PARSE_LOCK = threading.Lock()


def _parse(text, filename="<unknown>"):
    with _PARSE_LOCK:
        return ast.parse(text, filename)

DYNAMIC = ("eval", "exec", "compile", "__import__")


def _imports(tree, module):
    """attnlab module names (without the package) that `module`'s tree imports."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 1:
                found |= {base.split(".")[0]} if base else {a.name for a in node.names}
            elif base == "attnlab":
                found |= {a.name for a in node.names}
            elif base.startswith("attnlab."):
                found.add(base.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("attnlab."):
                    found.add(alias.name.split(".")[1])
    found.discard(module)
    return found


def _docstrings(tree):
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _root(node):
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.value if not isinstance(node, ast.Call) else node.func
    return node.id if isinstance(node, ast.Name) else None


def scan_source(text, filename, names):
    """Findings ('file:line: what') in one module's source."""
    try:
        tree = _parse(text, filename)
    except SyntaxError:
        return []  # it will fail to import, and be graded as such
    torch_names = set()
    for node in ast.walk(tree):  # names bound to torch (import torch; import torch.nn.functional as F; ...)
        if isinstance(node, ast.Import):
            torch_names |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] == "torch"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch":
            torch_names |= {a.asname or a.name for a in node.names}
    changed = True
    while changed:  # simple aliases: f = F; fn = torch.nn.functional
        changed = False
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and _root(node.value) in torch_names:
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id not in torch_names:
                        torch_names.add(target.id)
                        changed = True
    docs = _docstrings(tree)
    findings = []

    def flag(node, what):
        findings.append(f"{filename}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):
        ident = None
        if isinstance(node, ast.Name):
            ident = node.id
        elif isinstance(node, ast.Attribute):
            ident = node.attr
            if node.attr in ("ops", "_C") and _root(node) in torch_names:
                flag(node, f"uses torch.{node.attr} (PyTorch's operator namespace)")
            if node.attr == "__dict__" and _root(node) in torch_names:
                flag(node, "reads the __dict__ of a PyTorch module")
        elif isinstance(node, ast.alias):
            ident = node.asname or node.name
            if any(n in node.name for n in names):
                flag(node, f"imports {node.name}")
                continue
            if node.name.split(".")[0] == "importlib":
                flag(node, "imports importlib (dynamic imports are not allowed here)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if any(n in node.value for n in names):
                flag(node, f"names {node.value!r}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            fname = node.func.id
            if fname in DYNAMIC:
                flag(node, f"calls {fname}() (dynamic code is not allowed here)")
            elif fname in ("getattr", "attrgetter", "vars") and node.args and _root(node.args[0]) in torch_names:
                if fname == "vars":
                    flag(node, "reads vars() of a PyTorch module")
                elif len(node.args) < 2 or not isinstance(node.args[1], ast.Constant):
                    flag(node, "looks up a PyTorch attribute by a computed name")
        if ident and any(n in ident for n in names):
            flag(node, f"uses {ident}")
    return sorted(set(findings), key=lambda f: (int(f.split(":")[1]) if f.split(":")[1].isdigit() else 0, f))


def scan_package(package_dir, module, names):
    """Findings in attnlab/<module>.py and every attnlab module it imports."""
    package_dir = Path(package_dir)
    todo, seen, findings = [module], set(), []
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        path = package_dir / f"{mod}.py"
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        findings += scan_source(text, path.name, names)
        try:
            todo += sorted(_imports(_parse(text), mod))
        except SyntaxError:
            pass
    return findings
