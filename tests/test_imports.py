"""The import graph of the repository's own packages: no cycles, and the layers only import downwards.

Pure `ast`: every .py file of `dataflow`, `trainer`, `tools` and `jobs` is parsed, none is imported, so
this runs in well under a second. Every import statement counts (module level, inside functions, under
`if TYPE_CHECKING:`): a function-level import that dodges a cycle still is one. Only edges between
modules of this repository are kept.

Edges:
- `import a.b.c` and `from a.b import c` where `a.b.c` is a module: an edge to `a.b.c`;
  `from a.b import name` otherwise (or `*`): an edge to `a.b`. Relative imports are resolved.
- importing a submodule first executes its parent packages' `__init__.py`, so an edge to each parent
  package whose `__init__.py` holds more than a docstring, unless that package encloses the importing
  module (it is then already in sys.modules).

Layers (dataflow.core at the bottom):
- dataflow.core imports no other dataflow layer ({ingest,stages,trainset,models,pipeline} and any new one);
- dataflow.ingest imports only dataflow.core (and itself);
- dataflow.stages never imports dataflow.pipeline or dataflow.trainset;
- dataflow.models never imports dataflow.stages or dataflow.pipeline;
- trainer imports nothing of dataflow but dataflow.core.

`python tests/test_imports.py` prints the whole report (cycles and violations, with file:line).
"""
from __future__ import annotations

import ast
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("dataflow", "trainer", "tools", "jobs")


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    file: str       # repository-relative path of the importing file
    line: int
    via: str = ""   # "" for the imported module itself, else the submodule whose parent package this is

    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def __str__(self) -> str:
        how = f" (parent package of {self.via})" if self.via else ""
        return f"{self.src} -> {self.dst}{how}  [{self.where()}]"


def _modules(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file, for every .py file of the packages (a package is its __init__.py)."""
    mods: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if any(p.startswith(".") or p == "__pycache__" for p in parts):
                continue
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


def _has_code(path: Path) -> bool:
    """Whether a package's __init__.py does anything beyond its docstring (and `from __future__`)."""
    body = ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body
    for node in body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        return True
    return False


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _targets(node: ast.AST, module: str, is_pkg: bool, mods: dict[str, Path]) -> list[str]:
    """The repository modules one import statement names (before parent packages are added)."""
    def known(name: str) -> str | None:
        # the longest prefix of `name` that is one of our modules (`import a.b.c.attr` is not a thing, but
        # `from a import b` may name a function of a)
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            cand = ".".join(parts[:i])
            if cand in mods:
                return cand
        return None

    out: list[str] = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            if (t := known(alias.name)) is not None:
                out.append(t)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            pkg = module.split(".") if is_pkg else module.split(".")[:-1]
            up = node.level - 1
            if up > len(pkg):
                raise ImportError(f"{module}: relative import beyond the top-level package")
            base_parts = pkg[: len(pkg) - up] + (node.module.split(".") if node.module else [])
            base = ".".join(base_parts)
        else:
            base = node.module or ""
        for alias in node.names:
            full = f"{base}.{alias.name}" if base else alias.name
            if alias.name != "*" and full in mods:
                out.append(full)
            elif (t := known(base)) is not None:
                out.append(t)
    return out


def import_graph(root: Path = ROOT) -> tuple[dict[str, Path], list[Edge]]:
    """Every module of the packages and every import edge between them (one Edge per statement and target)."""
    mods = _modules(root)
    nonempty = {m for m, p in mods.items() if p.name == "__init__.py" and _has_code(p)}
    edges: list[Edge] = []
    for mod, path in mods.items():
        rel = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_pkg = path.name == "__init__.py"
        enclosing = set(_ancestors(mod)) | {mod}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for dst in _targets(node, mod, is_pkg, mods):
                if dst != mod:
                    edges.append(Edge(mod, dst, rel, node.lineno))
                for parent in _ancestors(dst):
                    if parent in nonempty and parent not in enclosing:
                        edges.append(Edge(mod, parent, rel, node.lineno, via=dst))
    edges = sorted(set(edges), key=lambda e: (e.file, e.line, e.dst, e.via))
    return mods, edges


# ----------------------------------------------------------------------------------------------------- cycles

def _sccs(nodes: list[str], adj: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(adj.get(start, ())))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(adj.get(w, ()))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    out.append(sorted(comp))
    return out


def _shortest_cycle_through(v: str, adj: dict[str, list[str]], within: set[str]) -> list[str] | None:
    """The shortest path v -> ... -> v inside one component (BFS), as a node list ending in v."""
    prev: dict[str, str] = {}
    frontier = [v]
    seen = {v}
    while frontier:
        nxt = []
        for u in frontier:
            for w in adj.get(u, ()):
                if w not in within:
                    continue
                if w == v:
                    path = [u]
                    while path[-1] != v:
                        path.append(prev[path[-1]])
                    return list(reversed(path)) + [v]
                if w not in seen:
                    seen.add(w)
                    prev[w] = u
                    nxt.append(w)
        frontier = nxt
    return None


def find_cycles(edges: list[Edge]) -> list[list[str]]:
    """One readable cycle per module that lies on a cycle (the shortest through it), duplicates (the same
    cycle from another starting point) removed. Each is a chain [a, b, ..., a]."""
    adj: dict[str, list[str]] = defaultdict(list)
    for e in edges:
        if e.dst not in adj[e.src]:
            adj[e.src].append(e.dst)
    nodes = sorted({e.src for e in edges} | {e.dst for e in edges})
    cycles: list[list[str]] = []
    seen: set[frozenset[tuple[str, str]]] = set()
    for comp in _sccs(nodes, adj):
        if len(comp) < 2:
            continue
        within = set(comp)
        for v in comp:
            cyc = _shortest_cycle_through(v, adj, within)
            if cyc is None:
                continue
            key = frozenset(zip(cyc, cyc[1:]))
            if key in seen:
                continue
            seen.add(key)
            # start the chain at its smallest module, so the same cycle always reads the same way
            body = cyc[:-1]
            i = body.index(min(body))
            body = body[i:] + body[:i]
            cycles.append(body + [body[0]])
    return sorted(cycles, key=lambda c: (len(c), c))


def describe_cycle(cycle: list[str], edges: list[Edge]) -> str:
    by_pair: dict[tuple[str, str], list[Edge]] = defaultdict(list)
    for e in edges:
        by_pair[(e.src, e.dst)].append(e)
    lines = [" -> ".join(cycle)]
    for a, b in zip(cycle, cycle[1:]):
        where = ", ".join(sorted({e.where() + (f" (via {e.via})" if e.via else "") for e in by_pair[(a, b)]}))
        lines.append(f"    {a} -> {b}: {where}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------- layers

def _layer(mod: str) -> str:
    """`dataflow.<layer>` for a module of dataflow (`dataflow` for the root package itself), else the
    top-level package (`trainer`, `tools`, `jobs`)."""
    parts = mod.split(".")
    return ".".join(parts[:2]) if parts[0] == "dataflow" else parts[0]


def layer_rule(src_layer: str, dst_layer: str) -> str | None:
    """The rule an import from one layer to another breaks, else None."""
    if src_layer == dst_layer or dst_layer == "dataflow":   # the root package is everybody's
        return None
    into_dataflow = dst_layer.split(".")[0] == "dataflow"
    if src_layer == "dataflow.core" and into_dataflow:
        return "dataflow.core imports no other dataflow layer"
    if src_layer == "dataflow.ingest" and into_dataflow and dst_layer != "dataflow.core":
        return "dataflow.ingest imports only dataflow.core"
    if src_layer == "dataflow.stages" and dst_layer in ("dataflow.pipeline", "dataflow.trainset"):
        return "dataflow.stages never imports dataflow.pipeline or dataflow.trainset"
    if src_layer == "dataflow.models" and dst_layer in ("dataflow.stages", "dataflow.pipeline"):
        return "dataflow.models never imports dataflow.stages or dataflow.pipeline"
    if src_layer == "trainer" and into_dataflow and dst_layer != "dataflow.core":
        return "trainer imports nothing of dataflow but dataflow.core"
    return None


def layer_violations(edges: list[Edge]) -> list[tuple[str, Edge]]:
    """(rule, edge) for every direct import that goes against the layering. Parent-package edges are left
    out: they point into the same layer as the import that caused them (or at the `dataflow` root)."""
    out = []
    for e in edges:
        if e.via:
            continue
        rule = layer_rule(_layer(e.src), _layer(e.dst))
        if rule:
            out.append((rule, e))
    return out


# ------------------------------------------------------------------------------------------------------ tests

def test_graph_sees_the_repository():
    mods, edges = import_graph()
    assert {"dataflow.core.config", "dataflow.ingest", "trainer.config", "tools.quality.labelled"} <= set(mods)
    assert any(e.src == "trainer.config" and e.dst == "dataflow.core.overrides" for e in edges)
    # relative imports are resolved: trainer/train.py says `from .config import ...`
    assert any(e.src == "trainer.train" and e.dst == "trainer.config" for e in edges)


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_resolution_rules(tmp_path):
    _tree(tmp_path, {
        "dataflow/__init__.py": '"""doc only"""\nfrom __future__ import annotations\n',
        "dataflow/core/__init__.py": "",
        "dataflow/core/a.py": "import os\nfrom . import b\nfrom .b import thing, other\n\n"
                              "def f():\n    from dataflow.stages.c import x\n",
        "dataflow/core/b.py": "thing = other = 1\nimport dataflow.core.d\n",
        "dataflow/core/d.py": "",
        "dataflow/stages/__init__.py": "from .c import x\n",
        "dataflow/stages/c.py": "x = 1\nfrom .. import core\nfrom ..core.d import *\n",
        "trainer/__init__.py": "",
        "trainer/t.py": "from dataflow.core import d\nfrom .u import y\n",
        "trainer/u.py": "y = 1\n",
    })
    _mods, edges = import_graph(tmp_path)
    got = {(e.src, e.dst, e.line, e.via) for e in edges}
    assert got == {
        ("dataflow.core.a", "dataflow.core.b", 2, ""),
        ("dataflow.core.a", "dataflow.core.b", 3, ""),       # one edge however many names
        ("dataflow.core.a", "dataflow.stages.c", 6, ""),     # function level counts
        ("dataflow.core.a", "dataflow.stages", 6, "dataflow.stages.c"),   # a non-empty parent __init__
        ("dataflow.core.b", "dataflow.core.d", 2, ""),
        ("dataflow.stages", "dataflow.stages.c", 1, ""),     # its own __init__ is no edge of c's
        ("dataflow.stages.c", "dataflow.core", 2, ""),
        ("dataflow.stages.c", "dataflow.core.d", 3, ""),
        ("trainer.t", "dataflow.core.d", 1, ""),             # dataflow/__init__.py is only a docstring
        ("trainer.t", "trainer.u", 2, ""),
    }
    assert find_cycles(edges) == []
    assert [(e.src, e.dst) for _r, e in layer_violations(edges)] == [("dataflow.core.a", "dataflow.stages.c")]


def test_cycles_are_chains_with_their_lines(tmp_path):
    _tree(tmp_path, {
        "tools/__init__.py": "",
        "tools/q/__init__.py": "",
        "tools/q/a.py": "from .b import f\n",
        "tools/q/b.py": "def f():\n    from tools.q.c import g\n",
        "tools/q/c.py": "import tools.q.a\n",
        "tools/q/d.py": "from . import a\n",
    })
    _mods, edges = import_graph(tmp_path)
    cycles = find_cycles(edges)
    assert cycles == [["tools.q.a", "tools.q.b", "tools.q.c", "tools.q.a"]]
    text = describe_cycle(cycles[0], edges)
    assert text.splitlines() == ["tools.q.a -> tools.q.b -> tools.q.c -> tools.q.a",
                                 "    tools.q.a -> tools.q.b: tools/q/a.py:1",
                                 "    tools.q.b -> tools.q.c: tools/q/b.py:2",
                                 "    tools.q.c -> tools.q.a: tools/q/c.py:1"]


def test_no_import_cycles():
    _mods, edges = import_graph()
    cycles = find_cycles(edges)
    assert not cycles, f"{len(cycles)} import cycle(s):\n" + "\n".join(describe_cycle(c, edges) for c in cycles)


def test_layering():
    _mods, edges = import_graph()
    bad = layer_violations(edges)
    assert not bad, f"{len(bad)} import(s) against the layering:\n" + "\n".join(f"{r}: {e}" for r, e in bad)


def report(root: Path = ROOT) -> str:
    mods, edges = import_graph(root)
    cycles = find_cycles(edges)
    bad = layer_violations(edges)
    out = [f"{len(mods)} modules, {len(edges)} edges", f"{len(cycles)} cycle(s):"]
    out += [describe_cycle(c, edges) for c in cycles]
    out.append(f"{len(bad)} layering violation(s):")
    out += [f"  {r}: {e}" for r, e in bad]
    tr = sorted({f"{e.dst}  [{e.where()}]" for e in edges if e.src.startswith("trainer") and e.dst.startswith("dataflow")})
    out.append("trainer -> dataflow:")
    out += [f"  {t}" for t in tr]
    return "\n".join(out)


if __name__ == "__main__":
    print(report())
    sys.exit(0)
