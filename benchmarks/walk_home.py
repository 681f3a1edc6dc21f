"""The walk of ``home``: follow the home path from the pipeline flow through the code, statically.

Usage: ``python benchmarks/walk_home.py [--write] [--against COMMIT] [--list]``.

Why: issue 24 counted how many places the home passes through from ``clinfuse pipeline`` (each one
a chance to rebuild the study, re-read settings or resolve another path). This script makes that
count reproducible: it parses the project's modules (AST only; nothing is imported or run), starts
at the ``@flow`` functions of ``flows/flows/pipeline*.py`` with their ``home`` parameter, and follows
every call that passes a value carrying the home (``home``, ``settings``, a layout, a config built
from them, ...) into a project function, mapping the argument to the callee's parameter. Counted:

* places: distinct project functions reached; calls: distinct caller -> callee edges followed;
* modules entered, and those entered more than once (from more than one calling module);
* returns across a module boundary (every edge into another module returns to its caller's);
* climbs back up a floor: a call from a lower layer to a higher one (floors: ``flows.flows`` and
  ``dashboard`` 0, other ``flows`` 1, the stage modules of ``models`` 2, other ``models`` 3,
  ``ingestion`` 4).

Method calls on objects whose class the AST cannot know (``settings.resolved_device()``) are not
followed; constructors of config dataclasses are not places, but the object they build carries the home.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: ``benchmarks.markdown_section`` for --write
PACKAGES = ("flows", "models", "ingestion", "dashboard")
START_GLOB = "flows/flows/pipeline*.py"
CARRIERS = ("home",)
"""the start functions' parameters that carry the home"""
SETTINGS_READ = "flows.prefect_env.settings_for"
STUDY_BUILDS = ("models.study_inputs.define_run_study", "models.study_definition.study_for_home")
STAGE_MODULES = ("models.stages", "models.study_definition", "models.study_inputs", "models.predict_stage")


def floor(module: str) -> int:
    """The layer of ``module``: 0 at the top (flows, dashboard), 4 at the bottom (ingestion)."""
    if module.startswith(("flows.flows", "dashboard")):
        return 0
    if module.startswith("flows"):
        return 1
    if module in STAGE_MODULES:
        return 2
    return 3 if module.startswith("models") else 4


@dataclass
class Module:
    name: str
    tree: ast.Module
    functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = field(default_factory=dict)
    imports: dict[str, str] = field(default_factory=dict)
    """local name -> dotted target (``module`` or ``module.attr``)"""


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(nodes: list[ast.stmt] | ast.AST, package: str) -> dict[str, str]:
    """Import bindings of the given statements (module level) or of a whole function body."""
    found: dict[str, str] = {}
    walk = ast.walk(nodes) if isinstance(nodes, ast.AST) else (n for s in nodes for n in ast.walk(s))
    for node in walk:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                found[alias.asname or alias.name] = f"{base}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                found[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
    return found


def load_modules(root: Path = REPO, packages: tuple[str, ...] = PACKAGES) -> dict[str, Module]:
    """Every module of ``packages`` under ``root``: its functions (and ``Class.method``s) and imports."""
    modules: dict[str, Module] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            name = module_name(path, root)
            tree = ast.parse(path.read_text(), filename=str(path))
            mod = Module(name, tree, imports=_imports([s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))],
                                                     name))
            for stmt in tree.body:
                if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    mod.functions[stmt.name] = stmt
                elif isinstance(stmt, ast.ClassDef):
                    for item in stmt.body:
                        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                            mod.functions[f"{stmt.name}.{item.name}"] = item
            modules[name] = mod
    return modules


def _dotted(node: ast.AST) -> list[str] | None:
    """``a.b.c`` as ["a", "b", "c"]; unwraps ``f.with_options(...)``, ``f.submit`` and ``f.fn``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "with_options":
        return _dotted(node.func.value)
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        if head is None:
            return None
        return head if node.attr in ("submit", "fn", "map") else [*head, node.attr]
    if isinstance(node, ast.Name):
        return [node.id]
    return None


PATH_CALLS = {"str", "Path", "fspath", "replace", "resolve", "expanduser", "with_name", "with_suffix", "joinpath"}
"""library calls whose result still is (or holds) the path they were given"""
CARRIER_RETURNS = ("Settings", "HomeLayout", "Path", "Config")
"""a project function annotated to return one of these hands the home on (``settings_for`` -> Settings)"""
CARRIER_PARAMS = {"home", "settings", "layout", "config", "root"}
"""parameters a ``**kwargs`` dict that holds the home is taken to fill"""


def carries(node: ast.AST | None, tracked: set[str], returns_home=lambda call: False) -> bool:
    """Whether the expression's value is, or holds, the home path.

    ``settings``, ``settings.home``, ``layout / "x"``, ``str(home)``, ``f"{home}"``, ``EncodeConfig(home=...)``
    and ``settings_for(home)`` do; ``stage_features(config.home, ...)`` (data read from the home) does not.
    """
    if node is None:
        return False
    if isinstance(node, ast.Name):
        return node.id in tracked
    if isinstance(node, ast.Starred):
        return carries(node.value, tracked, returns_home)
    if isinstance(node, ast.Attribute):  # ``settings.home``, ``layout.manifest_path``; not ``config.seed``
        return carries(node.value, tracked, returns_home) and (
            node.attr in ("home", "root", "layout") or node.attr.endswith(("dir", "path")))
    if isinstance(node, ast.BinOp):
        return carries(node.left, tracked, returns_home) or carries(node.right, tracked, returns_home)
    if isinstance(node, ast.JoinedStr):
        return any(carries(v.value, tracked, returns_home) for v in node.values if isinstance(v, ast.FormattedValue))
    if isinstance(node, (ast.Dict, ast.Tuple, ast.List)):
        values = node.values if isinstance(node, ast.Dict) else node.elts
        return any(carries(v, tracked, returns_home) for v in values)
    if isinstance(node, ast.Call):
        given = any(carries(a, tracked, returns_home) for a in node.args) or any(
            carries(k.value, tracked, returns_home) for k in node.keywords)
        if isinstance(node.func, ast.Attribute) and node.func.attr in PATH_CALLS:
            given = given or carries(node.func.value, tracked, returns_home)
        name = node.func.id if isinstance(node.func, ast.Name) else (
            node.func.attr if isinstance(node.func, ast.Attribute) else "")
        return given and (name in PATH_CALLS or name[:1].isupper() or name == "at" or returns_home(node))
    return False


class Walk:
    """The home's walk from the start functions; see the module docstring for what is counted."""

    def __init__(self, modules: dict[str, Module]) -> None:
        self.modules = modules
        self.edges: set[tuple[str, str]] = set()
        self.seen: set[tuple[str, frozenset[str]]] = set()

    def resolve(self, module: Module, local: dict[str, str], func: ast.AST) -> tuple[str, str] | None:
        """``(module, function)`` of a project function called as ``func``, or None."""
        parts = _dotted(func)
        if not parts:
            return None
        head, rest = parts[0], parts[1:]
        if head in local or head in module.imports:
            target = (local.get(head) or module.imports[head]).split(".") + rest
        elif not rest and head in module.functions:
            return module.name, head
        elif len(rest) == 1 and f"{head}.{rest[0]}" in module.functions:
            return module.name, f"{head}.{rest[0]}"
        else:
            return None
        return self._find(target)

    def _find(self, target: list[str], hops: int = 0) -> tuple[str, str] | None:
        """A dotted target as ``(module, function)``, following a module's re-export of an imported name."""
        for cut in range(len(target) - 1, 0, -1):  # the longest module prefix, then a function or Class.method
            mod, name = ".".join(target[:cut]), ".".join(target[cut:])
            if mod not in self.modules:
                continue
            if name in self.modules[mod].functions:
                return mod, name
            again = self.modules[mod].imports.get(target[cut])
            if again and hops < 3:  # ``from models.stages import predict`` where stages re-exports it
                return self._find(again.split(".") + target[cut + 1:], hops + 1)
        return None

    def _returns_home(self, module: Module, local: dict[str, str]):
        def check(call: ast.Call) -> bool:
            callee = self.resolve(module, local, call.func)
            if callee is None:
                return False
            returns = self.modules[callee[0]].functions[callee[1]].returns
            return returns is not None and any(c in ast.unparse(returns) for c in CARRIER_RETURNS)
        return check

    def visit(self, module_name: str, function: str, tracked: set[str]) -> None:
        key = (f"{module_name}.{function}", frozenset(tracked))
        if key in self.seen:
            return
        self.seen.add(key)
        module = self.modules[module_name]
        node = module.functions[function]
        local = _imports(node, module_name)
        home = self._returns_home(module, local)
        tracked = set(tracked)
        for _ in range(3):  # names bound from a value that holds the home hold it too (a few rounds: order-free)
            for stmt in ast.walk(node):
                if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and carries(stmt.value, tracked, home):
                    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                    tracked |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
                elif isinstance(stmt, ast.withitem) and stmt.optional_vars is not None and carries(
                        stmt.context_expr, tracked, home):
                    tracked |= {n.id for n in ast.walk(stmt.optional_vars) if isinstance(n, ast.Name)}
        for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
            passed = [i for i, a in enumerate(call.args) if carries(a, tracked, home)]
            named = [k.arg for k in call.keywords if k.arg and carries(k.value, tracked, home)]
            spread = any(k.arg is None and carries(k.value, tracked, home) for k in call.keywords)
            if not (passed or named or spread):
                continue
            callee = self.resolve(module, local, call.func)
            if callee is None or callee == (module_name, function):
                continue
            target = self.modules[callee[0]].functions[callee[1]]
            params = [a.arg for a in (*target.args.posonlyargs, *target.args.args)]
            if "." in callee[1] and params and params[0] in ("self", "cls"):
                params = params[1:]
            accepted = {*params, *(a.arg for a in target.args.kwonlyargs)}
            receives = ({params[i] for i in passed if i < len(params)} | set(named)
                        | (CARRIER_PARAMS if spread else set())) & accepted
            if not receives:
                continue
            self.edges.add((f"{module_name}.{function}", f"{callee[0]}.{callee[1]}"))
            self.visit(callee[0], callee[1], receives)


@dataclass(frozen=True)
class WalkFigures:
    places: int
    calls: int
    modules: tuple[str, ...]
    entered_twice: dict[str, int]
    returns: int
    climbs: tuple[tuple[str, str], ...]
    settings_reads: int = 0
    """functions that resolve the settings from the home again (call ``settings_for``)"""
    study_builds: int = 0
    """functions that build the study from the home again (call ``study_for_home``/``define_run_study``)"""


def _module_of(qualname: str, modules: dict[str, Module]) -> str:
    return max((m for m in modules if qualname.startswith(m + ".")), key=len)


def walk_home(root: Path = REPO, start_glob: str = START_GLOB, packages: tuple[str, ...] = PACKAGES) -> WalkFigures:
    """Walk from every ``@flow`` function of the start files with its home parameter."""
    modules = load_modules(root, packages)
    walk = Walk(modules)
    starts = [module_name(p, root) for p in sorted(root.glob(start_glob))]
    for name in starts:
        for fname, node in modules[name].functions.items():
            is_flow = any("flow" in ast.unparse(d) for d in node.decorator_list)
            params = {a.arg for a in (*node.args.args, *node.args.kwonlyargs)} & set(CARRIERS)
            if is_flow and params:
                walk.visit(name, fname, params)
    places = {q for edge in walk.edges for q in edge}
    entries: dict[str, set[str]] = defaultdict(set)
    returns, climbs = 0, []
    for caller, callee in sorted(walk.edges):
        a, b = _module_of(caller, modules), _module_of(callee, modules)
        if a == b:
            continue
        returns += 1
        entries[b].add(a)
        if floor(b) < floor(a):
            climbs.append((caller, callee))
    entered = tuple(sorted({_module_of(q, modules) for q in places}))
    twice = {m: len(c) for m, c in sorted(entries.items()) if len(c) > 1}
    return WalkFigures(len(places), len(walk.edges), entered, twice, returns, tuple(climbs),
                       sum(callee == SETTINGS_READ for _, callee in walk.edges),
                       sum(callee in STUDY_BUILDS and not caller.startswith(STUDY_BUILDS[0])
                           for caller, callee in walk.edges))


def _rows(f: WalkFigures) -> list[tuple[str, int]]:
    return [("places (project functions the home reaches)", f.places),
            ("calls followed (caller -> callee, distinct)", f.calls),
            ("modules entered", len(f.modules)),
            ("modules entered from more than one module", len(f.entered_twice)),
            ("calls returning across a module boundary", f.returns),
            ("climbs back up a floor", len(f.climbs)),
            ("functions resolving the settings from the home (`settings_for`)", f.settings_reads),
            ("functions building the study from the home (`define_run_study`, `study_for_home`)", f.study_builds)]


def markdown(figures: WalkFigures, before: WalkFigures | None = None, before_label: str = "") -> str:
    """The section's body: the counts (beside an earlier commit's when given), then what is entered twice."""
    lines = ["Produced by `benchmarks/walk_home.py --write`: a static (AST) walk from the `@flow` functions of "
             "`flows/flows/pipeline*.py`, following every call that passes a value carrying the home (`home`, "
             "`settings`, a layout, a config built from them) into a project function. Floors: `flows.flows` 0, "
             "other `flows` 1, the stage modules of `models` 2, other `models` 3, `ingestion` 4.", ""]
    if before is None:
        lines += ["| measure | count |", "|---|---:|", *(f"| {k} | {v} |" for k, v in _rows(figures))]
    else:
        lines += [f"| measure | {before_label} | this commit |", "|---|---:|---:|",
                  *(f"| {k} | {b} | {v} |" for (k, v), (_, b) in zip(_rows(figures), _rows(before)))]
    lines.append("")
    if figures.entered_twice:
        lines += ["Entered from more than one module (number of calling modules): "
                  + ", ".join(f"`{m}` ({n})" for m, n in figures.entered_twice.items()) + ".", ""]
    if figures.climbs:
        lines += ["Climbs: " + ", ".join(f"`{a}` -> `{b}`" for a, b in figures.climbs) + "."]
    return "\n".join(lines).rstrip() + "\n"


def walk_commit(ref: str) -> WalkFigures:
    """The walk of the tree at git ``ref`` (exported to a temporary folder; the working tree is not touched)."""
    import subprocess
    import tarfile
    import tempfile

    with tempfile.TemporaryDirectory(prefix="walk-home-") as tmp:
        archive = Path(tmp) / "tree.tar"
        with archive.open("wb") as out:
            subprocess.run(["git", "archive", ref, *PACKAGES], cwd=REPO, stdout=out, check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        return walk_home(Path(tmp))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write the table into docs/BENCHMARKS.md")
    ap.add_argument("--against", help="also walk this git commit (e.g. the one before a change) for comparison")
    ap.add_argument("--list", action="store_true", help="also print every call followed")
    args = ap.parse_args()
    figures = walk_home()
    before = walk_commit(args.against) if args.against else None
    text = markdown(figures, before, f"commit {args.against}" if args.against else "")
    print(text)
    if args.list:
        modules = load_modules()
        walk = Walk(modules)
        for name in [module_name(p, REPO) for p in sorted(REPO.glob(START_GLOB))]:
            for fname, node in modules[name].functions.items():
                if any("flow" in ast.unparse(d) for d in node.decorator_list):
                    walk.visit(name, fname, {a.arg for a in node.args.args} & set(CARRIERS))
        for caller, callee in sorted(walk.edges):
            print(f"{caller} -> {callee}")
    if args.write:
        from benchmarks.markdown_section import write_section

        write_section("## Walk of home from the pipeline flow", text)


if __name__ == "__main__":
    main()
