"""Print aufer's import graph as the code has it: modules, import arrows, circles, upward imports, delayed imports.

Reads every ``src/aufer/**/*.py`` with :mod:`ast` (nothing is imported), resolves each ``import aufer…`` /
``from aufer… import …`` / relative import to the aufer module it names, and sorts it into

* **top**: at module level (outside functions and outside ``if TYPE_CHECKING:``);
* **delayed**: inside a function or method (runs when called);
* **typing**: under ``if TYPE_CHECKING:`` (never runs; not an arrow).

An arrow to a package means its ``__init__``; ``from aufer.models import contract`` names the submodule. A
**circle** is a strongly connected component of more than one module in the graph of top + delayed arrows (each
arrow is a real dependency, whenever it runs). A module also depends on the ``__init__`` of every package above it
(Python runs it first); ``--parents`` adds those arrows to the circle search. An **upward** import goes from a layer
to a higher one in :data:`LAYERS` (first matching prefix wins), e.g. a method importing the engine. Deprecated
shims listed in :data:`SHIMS` are reported apart: they exist to forward old import paths upwards for one release.

Usage::

    python tools/import_graph.py            # summary
    python tools/import_graph.py --arrows   # every arrow, module by module
    python tools/import_graph.py --dot graph.dot
    python tools/import_graph.py --src /tmp/old/src   # another checkout (e.g. `git archive REV src | tar -x -C /tmp/old`)
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

#: layers from bottom (0) to top; a module's layer is that of the longest matching prefix
LAYERS: dict[str, int] = {
    "aufer": 0, "aufer._runtime": 0, "aufer.vocab": 0, "aufer.schema": 0, "aufer.bundled": 0, "aufer.registry": 0,
    "aufer.media": 1, "aufer.metrics": 1, "aufer.protocols": 1, "aufer.faces": 1, "aufer.readers": 1,
    "aufer.synth": 1, "aufer.store": 1, "aufer.datasets": 1,
    "aufer.models": 2,
    "aufer.training": 3,
    "aufer.methods": 4,
    "aufer.engine": 5, "aufer.predict": 5, "aufer.demo": 6,
    "aufer.cli": 7, "aufer.__main__": 7,
    # the modules of the layout before issue 22, by their role, so that the same table measures both layouts
    # (aufer.models.ssm / aufer.models.mdhr were the methods' models; they are now deprecated forwarding shims)
    "aufer.losses": 3, "aufer.engine.steps": 3, "aufer.losses_mtl": 4, "aufer.losses_ssm": 4, "aufer.losses_mdhr": 4,
    "aufer.losses_au_dfer": 4, "aufer.mal": 4, "aufer.au_pseudo": 4, "aufer.engine.released": 4,
    "aufer.models.ssm": 4, "aufer.models.ssm_modules": 4, "aufer.models.ssm_text": 4, "aufer.models.ssm_official": 4,
    "aufer.models.mdhr": 4, "aufer.models.mdhr_hsr": 4, "aufer.models.mdhr_official": 4,
    "aufer.models.former_dfer": 4, "aufer.jobs": 5, "aufer.overlay": 5, "aufer.report": 5, "aufer.report_html": 5,
    "aufer.predict_cli": 5, "aufer.predict_windows": 5,
}
LAYER_NAMES = {0: "base", 1: "data", 2: "models", 3: "training", 4: "methods", 5: "engine/predict", 6: "demo",
               7: "cli"}
#: deprecated forwarding modules (old import paths kept for one release)
SHIMS = ("aufer.models.ssm", "aufer.models.mdhr")


def module_name(path: Path, src: Path = SRC) -> str:
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def layer_of(mod: str) -> int:
    best, depth = 0, -1
    for prefix, layer in LAYERS.items():
        if (mod == prefix or mod.startswith(prefix + ".")) and prefix.count(".") > depth:
            best, depth = layer, prefix.count(".")
    return best


class _Visitor(ast.NodeVisitor):
    def __init__(self, mod: str, package: bool, modules: set[str]):
        self.mod, self.package, self.modules = mod, package, modules
        self.func_depth = 0
        self.typing_depth = 0
        self.found: list[tuple[str, str, int]] = []  # (target, kind, line)

    def _kind(self) -> str:
        return "typing" if self.typing_depth else "delayed" if self.func_depth else "top"

    def visit_FunctionDef(self, node):
        self.func_depth += 1
        self.generic_visit(node)
        self.func_depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node):
        test = ast.unparse(node.test)
        if test in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            self.typing_depth += 1
            for n in node.body:
                self.visit(n)
            self.typing_depth -= 1
            for n in node.orelse:
                self.visit(n)
        else:
            self.generic_visit(node)

    def _resolve(self, name: str) -> str | None:
        """The longest aufer module that ``name`` names (``aufer.models.contract.JointModel`` → the module)."""
        parts = name.split(".")
        while parts:
            cand = ".".join(parts)
            if cand in self.modules:
                return cand
            parts.pop()
        return None

    def visit_Import(self, node):
        for a in node.names:
            if a.name == "aufer" or a.name.startswith("aufer."):
                t = self._resolve(a.name)
                if t:
                    self.found.append((t, self._kind(), node.lineno))

    def visit_ImportFrom(self, node):
        if node.level:
            base = self.mod.split(".") if self.package else self.mod.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            src = ".".join(base + ([node.module] if node.module else []))
        else:
            src = node.module or ""
        if not (src == "aufer" or src.startswith("aufer.")):
            return
        for a in node.names:
            t = self._resolve(f"{src}.{a.name}") if a.name != "*" else None
            t = t or self._resolve(src)
            if t:
                self.found.append((t, self._kind(), node.lineno))


def scan(src: Path = SRC) -> tuple[dict[str, Path], dict[str, list[tuple[str, str, int]]], dict[str, str]]:
    """``(module → file, module → [(imported module, kind, line)], module → source text)`` of the tree under
    ``src``."""
    files = {module_name(p, src): p for p in sorted((src / "aufer").rglob("*.py"))}
    modules = set(files)
    arrows: dict[str, list[tuple[str, str, int]]] = {}
    texts: dict[str, str] = {}
    for mod, path in files.items():
        text = path.read_text()
        texts[mod] = text
        v = _Visitor(mod, is_package(path), modules)
        v.visit(ast.parse(text))
        arrows[mod] = [(t, k, ln) for t, k, ln in v.found if t != mod]
    return files, arrows, texts


def sccs(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one node."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def parents(mod: str, modules: set[str]) -> list[str]:
    parts = mod.split(".")
    return [p for p in (".".join(parts[:i]) for i in range(1, len(parts))) if p in modules]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arrows", action="store_true", help="list every arrow")
    ap.add_argument("--parents", action="store_true", help="count the implicit arrows to parent packages in circles")
    ap.add_argument("--dot", type=Path, help="write a Graphviz file of the top + delayed arrows")
    ap.add_argument("--src", type=Path, default=SRC, help="the src/ folder to read (default: this checkout's)")
    args = ap.parse_args(argv)

    files, arrows, texts = scan(args.src.resolve())
    modules = set(files)
    graph: dict[str, set[str]] = defaultdict(set)
    kinds = defaultdict(int)
    for mod, found in arrows.items():
        graph[mod]
        for t, k, _ in found:
            kinds[k] += 1
            if k != "typing":
                graph[mod].add(t)
        if args.parents:
            graph[mod].update(p for p in parents(mod, modules) if p != mod)
    n_arrows = sum(len(v) for v in graph.values())
    noqa = sum(t.count("PLC0415") for t in texts.values())
    e402 = sum(t.count("noqa: E402") for t in texts.values())
    lines = {m: t.count("\n") for m, t in texts.items()}

    print(f"modules: {len(files)}   lines: {sum(lines.values())}   largest: "
          + ", ".join(f"{m} {n}" for m, n in sorted(lines.items(), key=lambda x: -x[1])[:3]))
    print(f"import arrows (distinct module pairs, top + delayed): {n_arrows}")
    print(f"import statements of aufer modules: top {kinds['top']}, delayed (in a function) {kinds['delayed']}, "
          f"TYPE_CHECKING {kinds['typing']}")
    print(f"'noqa: PLC0415' comments: {noqa}   'noqa: E402' comments: {e402}")

    circles = sccs(graph)
    print(f"\ncircles (strongly connected components{', parent packages included' if args.parents else ''}): "
          f"{len(circles)}")
    for c in circles:
        print(f"  {len(c)} modules: {', '.join(c)}")

    ups = []
    for mod, found in sorted(arrows.items()):
        for t, k, ln in found:
            if k != "typing" and layer_of(t) > layer_of(mod) and (mod, t, k, ln) not in ups:
                ups.append((mod, t, k, ln))
    shim_ups = [u for u in ups if u[0] in SHIMS]
    real_ups = [u for u in ups if u[0] not in SHIMS]
    print(f"\nupward imports (a lower layer importing a higher one; layers {', '.join(LAYER_NAMES.values())}): "
          f"{len(real_ups)}" + (f"  (+ {len(shim_ups)} in deprecated shims)" if shim_ups else ""))
    for mod, t, k, ln in real_ups:
        print(f"  {mod}:{ln} -> {t} ({k}; {LAYER_NAMES[layer_of(mod)]} -> {LAYER_NAMES[layer_of(t)]})")

    delayed = sorted({(m, t, ln) for m, found in arrows.items() for t, k, ln in found if k == "delayed"})
    print(f"\ndelayed imports of aufer modules: {len(delayed)}")
    for m, t, ln in delayed:
        print(f"  {m}:{ln} -> {t}")

    if args.arrows:
        print("\narrows:")
        for mod in sorted(graph):
            if graph[mod]:
                print(f"  {mod} -> {', '.join(sorted(graph[mod]))}")
    if args.dot:
        with open(args.dot, "w") as f:
            f.write("digraph aufer {\n  rankdir=BT;\n")
            for mod in sorted(graph):
                for t in sorted(graph[mod]):
                    f.write(f'  "{mod}" -> "{t}";\n')
            f.write("}\n")
        print(f"\nwrote {args.dot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
