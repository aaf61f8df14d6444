"""Measuring the house from the code: import circles, module and function sizes, private reach.

Shared by ``tests/test_layout.py`` (which keeps the limits true) and by a person who wants the
figures: ``python -m tests.layout_measure`` prints them. Everything is read with ``ast`` and
plain text, nothing is imported, so a module that fails to import is still measured.
"""

from __future__ import annotations

import ast
import re
import statistics
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BACKEND = ROOT / "backend"
STATIC = BACKEND / "web" / "static"

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    """``backend/git/refs.py`` → ``backend.git.refs``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def python_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(BACKEND.rglob("*.py")) if "static" not in p.parts}


def _resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def python_imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Every backend module each module imports, at any depth (``TYPE_CHECKING`` and in-function
    imports count: a circle that only works because an import is deferred is still a circle)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, path.name == "__init__.py", node)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


_JS_IMPORT = re.compile(r"""(?:import|export)\s[^'"]*?from\s*['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]""")


def js_modules() -> dict[str, Path]:
    return {str(p.relative_to(STATIC)): p for p in sorted(STATIC.rglob("*.js"))}


def js_imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for match in _JS_IMPORT.finditer(path.read_text()):
            spec = match.group(1) or match.group(2)
            target = (path.parent / spec).resolve()
            targets.add(str(target.relative_to(STATIC.resolve())))
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@dataclass
class Function:
    where: str
    lines: int


def functions(modules: dict[str, Path]) -> list[Function]:
    found = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                found.append(Function(f"{name}:{node.lineno} {node.name}", lines))
    return found


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _own_names(tree: ast.Module) -> set[str]:
    """Private names this module itself defines: functions, classes, assigned attributes."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if _is_private(n)}


# ``os._exit`` is the standard library's public way to leave without clean-up.
_STDLIB_PRIVATE_OK = {"os", "sys"}


@dataclass
class PrivateReach:
    where: str
    name: str


def private_reaches(modules: dict[str, Path]) -> list[PrivateReach]:
    """Private names taken from another module: ``from x import _y``, and ``obj._y`` where this
    module does not define ``_y`` itself (so it must belong to someone else's object)."""
    found = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        own = _own_names(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if _is_private(alias.name):
                        found.append(PrivateReach(f"{name}:{node.lineno}", alias.name))
            elif isinstance(node, ast.Attribute) and _is_private(node.attr) and node.attr not in own:
                stdlib = isinstance(node.value, ast.Name) and node.value.id in _STDLIB_PRIVATE_OK
                if not stdlib:
                    found.append(PrivateReach(f"{name}:{node.lineno}", node.attr))
    return found


def line_count(path: Path) -> int:
    return len(path.read_text().splitlines())


def long_modules() -> list[tuple[str, int]]:
    paths = [p for p in BACKEND.rglob("*") if p.suffix in {".py", ".js", ".css"}]
    return sorted(
        ((str(p.relative_to(ROOT)), line_count(p)) for p in paths if line_count(p) > MAX_MODULE_LINES),
        key=lambda item: -item[1],
    )


def report() -> Iterator[str]:
    modules = python_modules()
    graph = python_imports(modules)
    per_package: dict[str, int] = {}
    for name in modules:
        package = name.rsplit(".", 1)[0] if name.count(".") > 1 else "backend"
        per_package[package] = per_package.get(package, 0) + 1
    yield "modules per package: " + ", ".join(f"{k} {v}" for k, v in sorted(per_package.items()))
    sizes = sorted(((line_count(p), n) for n, p in modules.items()), reverse=True)
    yield f"longest python module: {sizes[0][1]} ({sizes[0][0]} lines)"
    js = js_modules()
    js_sizes = sorted(((line_count(p), n) for n, p in js.items()), reverse=True)
    yield f"javascript modules: {len(js)}; longest {js_sizes[0][1]} ({js_sizes[0][0]} lines)"
    css = sorted(((line_count(p), str(p.relative_to(STATIC))) for p in STATIC.rglob("*.css")), reverse=True)
    yield f"css files: {len(css)}; longest {css[0][1]} ({css[0][0]} lines)"
    funcs = functions(modules)
    longest = max(funcs, key=lambda f: f.lines)
    median = statistics.median(f.lines for f in funcs)
    yield f"functions: {len(funcs)}; longest {longest.where} ({longest.lines} lines); median {median}"
    for f in sorted(funcs, key=lambda f: -f.lines):
        if f.lines > MAX_FUNCTION_LINES:
            yield f"  over {MAX_FUNCTION_LINES}: {f.where} ({f.lines})"
    for label, circle in [("python", c) for c in cycles(graph)] + [("js", c) for c in cycles(js_imports(js))]:
        yield f"circle ({label}, {len(circle)} modules): " + " ".join(circle)
    reaches = private_reaches(modules)
    yield f"private names crossing modules: {len(reaches)} uses of {len({r.name for r in reaches})} names"
    for r in reaches:
        yield f"  {r.where} {r.name}"
    for path, lines in long_modules():
        yield f"over {MAX_MODULE_LINES} lines: {path} ({lines})"


if __name__ == "__main__":
    for line in report():
        print(line)
