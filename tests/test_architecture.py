"""The package's shape: stages importing only downwards, no import circles, short modules.

Every `import` and `from ... import` in every module under specbuild/ is read with `ast`,
including those inside functions (lazy, but still a dependency), relative ones resolved to
absolute module names.  An import names the most specific specbuild module it reaches:
`from .. import registry` depends on specbuild.registry, `from .catalog import DATASETS` on
specbuild.data.catalog.  The implicit import of a module's parent packages is not counted
(it would make every module depend on the public face).  docs/architecture.md explains the
stages; the tests at the bottom make sure each checker can fail.
"""
from __future__ import annotations

import ast
import importlib.util
import itertools
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "specbuild"
MAX_LINES = 400

# stage -> (level, the modules it holds; a package holds everything under it).
# A module may import from its own stage and from stages of a lower level only; two stages
# on the same level are peers and must not import each other.  A module in no stage fails
# the test: place a new folder here first.
STAGES = {
    "ground": (0, ("specbuild.errors", "specbuild.registry", "specbuild.resolve", "specbuild.inputs",
                   "specbuild.catalog_gen", "specbuild.atomic")),
    "shapes": (1, ("specbuild.shapes",)),
    "spec": (2, ("specbuild.spec",)),
    "compiler": (3, ("specbuild.compiler",)),
    "data": (3, ("specbuild.data",)),
    "report": (4, ("specbuild.report",)),        # reads run and tune folders; each run writes one at its end
    "training": (5, ("specbuild.training",)),
    "export": (5, ("specbuild.export",)),        # beside training, a peer of it
    "tune": (6, ("specbuild.tune",)),            # runs trials through training
    "cli": (7, ("specbuild.cli",)),
    # The public face (specbuild/__init__.py, whose lazy attributes import compiler/ and
    # training/) and `python -m specbuild` sit above every stage: they may import any of
    # them, and no stage may import them.
    "face": (8, ("specbuild", "specbuild.__main__")),
}
FACE = {"specbuild", "specbuild.__main__"}         # exact modules, not packages

# Files that may call importlib.import_module / __import__ with a string the test cannot
# check, and why.  Any other such call that may name a specbuild module fails.
ALLOWED_IMPORTLIB = {
    "specbuild/__init__.py": "the lazy public attributes (_LAZY); the test counts their targets as imports",
    "specbuild/resolve.py": "resolves registry targets inside torch and operator (_ROOTS, checked below)",
}

# Package __init__ modules allowed to bind names equal to their submodules.
SHADOW_EXEMPT = {"specbuild", "specbuild.shapes"}


@dataclass(frozen=True)
class Module:
    name: str            # specbuild.spec.infer
    path: Path
    is_package: bool

    @property
    def rel(self) -> str:
        return self.path.relative_to(ROOT).as_posix() if self.path.is_relative_to(ROOT) else str(self.path)


@dataclass(frozen=True)
class Import:
    importer: str        # module name
    target: str          # the specbuild module imported
    file: str
    line: int
    text: str            # the statement, as written

    def where(self) -> str:
        return f"{self.file}:{self.line} ({self.text})"


def find_modules(package_dir: Path = PACKAGE) -> dict[str, Module]:
    modules = {}
    base = package_dir.parent
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(base).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        modules[name] = Module(name, path, is_package)
    return modules


def _parse(module: Module) -> ast.Module:
    return ast.parse(module.path.read_text(), filename=str(module.path))


def _imports_in(module: Module, tree: ast.Module, known: set[str]) -> tuple[list[Import], list[str]]:
    """The specbuild modules `module` imports, and the problems met (unknown specbuild modules)."""
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    found, problems = [], []

    def add(target, node):
        text = ast.unparse(node)
        if target in known:
            found.append(Import(module.name, target, module.rel, node.lineno, text))
        elif target == "specbuild" or target.startswith("specbuild."):
            problems.append(f"{module.rel}:{node.lineno}: {text!r} names {target}, which is no module of the package")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = importlib.util.resolve_name("." * node.level + base, package)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in known else base, node)
    return found, problems


def _lazy_targets(module: Module, tree: ast.Module) -> list[Import]:
    """specbuild/__init__.py's `_LAZY = {public name: ".module"}`: imports made on first use."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets):
            table = ast.literal_eval(node.value)
            return [Import(module.name, importlib.util.resolve_name("." + target, module.name), module.rel,
                           node.lineno, f"_LAZY[{name!r}]") for name, target in table.items()]
    raise AssertionError(f"{module.rel} has no _LAZY table; update ALLOWED_IMPORTLIB and this test")


def collect_imports(modules: dict[str, Module]) -> tuple[list[Import], list[str]]:
    known = set(modules)
    imports, problems = [], []
    for module in modules.values():
        tree = _parse(module)
        found, bad = _imports_in(module, tree, known)
        imports += found
        problems += bad
        if module.name == "specbuild":
            imports += _lazy_targets(module, tree)
    return imports, problems


def import_graph(imports: list[Import], modules=()) -> nx.DiGraph:
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for imp in imports:
        if imp.importer != imp.target:
            graph.add_edge(imp.importer, imp.target)
            graph.edges[imp.importer, imp.target].setdefault("at", []).append(imp)
    return graph


def stage_of(module: str) -> str | None:
    if module in FACE:
        return "face"
    best, best_len = None, -1
    for stage, (_, members) in STAGES.items():
        for member in members:
            if member not in FACE and (module == member or module.startswith(member + ".")) and len(member) > best_len:
                best, best_len = stage, len(member)
    return best


def cycle_problems(graph: nx.DiGraph, limit: int = 20) -> list[str]:
    problems = []
    cycles = []
    for cycle in itertools.islice(nx.simple_cycles(graph), 1000):
        start = cycle.index(min(cycle))
        cycles.append(cycle[start:] + cycle[:start])
    for cycle in sorted(cycles):
        steps = []
        for a, b in zip(cycle, cycle[1:] + cycle[:1]):
            first = graph.edges[a, b]["at"][0]
            steps.append(f"{a} -> {b} at {first.where()}")
        problems.append("import cycle " + " -> ".join(cycle + cycle[:1]) + ":\n    " + "\n    ".join(steps))
        if len(problems) == limit:
            problems.append("... (more cycles left out)")
            break
    return problems


def layer_problems(imports: list[Import], modules=()) -> list[str]:
    problems = [f"{name} is in no stage: add it to STAGES in tests/test_architecture.py"
                for name in sorted(modules) if stage_of(name) is None]
    for imp in imports:
        src, dst = stage_of(imp.importer), stage_of(imp.target)
        if src is None or dst is None or src == dst:
            continue
        src_level, dst_level = STAGES[src][0], STAGES[dst][0]
        if dst_level > src_level:
            problems.append(f"{imp.where()}: {src} (level {src_level}) imports {imp.target} "
                            f"from {dst} (level {dst_level}), a higher stage")
        elif dst_level == src_level:
            problems.append(f"{imp.where()}: {src} imports {imp.target} from its peer {dst} (both level {src_level})")
    return problems


# --- importlib strings -------------------------------------------------------------------

def _is_dynamic_import(call: ast.Call, from_importlib: set[str]) -> bool:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id == "__import__" or func.id in from_importlib
    return isinstance(func, ast.Attribute) and func.attr in ("import_module", "__import__")


def _names_specbuild(arg: ast.expr) -> bool | None:
    """True if the string names a specbuild module (absolute or relative), False if it
    plainly does not, None if the test cannot tell (a variable, a call...)."""
    if isinstance(arg, ast.JoinedStr):
        arg = arg.values[0] if arg.values else ast.Constant("")
        if not isinstance(arg, ast.Constant):
            return None
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value.startswith((".", "specbuild"))   # "." is relative to a package: one of ours
    return None


def importlib_problems(modules: dict[str, Module], allowed: dict[str, str] = ALLOWED_IMPORTLIB) -> list[str]:
    problems = []
    for module in modules.values():
        tree = _parse(module)
        from_importlib = {alias.asname or alias.name for node in ast.walk(tree)
                          if isinstance(node, ast.ImportFrom) and node.module == "importlib"
                          for alias in node.names if alias.name in ("import_module", "__import__")}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and _is_dynamic_import(node, from_importlib)):
                continue
            arg = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "name"), None)
            verdict = None if arg is None else _names_specbuild(arg)
            if verdict is False or module.rel in allowed:
                continue
            what = "names a specbuild module" if verdict else "may name a specbuild module (the test cannot read it)"
            problems.append(f"{module.rel}:{node.lineno}: {ast.unparse(node)} {what}; import it with an import "
                            "statement, so the import graph sees it")
    return problems


def resolve_roots(path: Path = PACKAGE / "resolve.py") -> tuple[str, ...]:
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_ROOTS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("specbuild/resolve.py has no _ROOTS; update ALLOWED_IMPORTLIB and this test")


# --- sizes and shadowing ----------------------------------------------------------------

def size_problems(modules: dict[str, Module], limit: int = MAX_LINES) -> list[str]:
    problems = []
    for module in modules.values():
        count = len(module.path.read_text().splitlines())
        if count > limit:
            problems.append(f"{module.rel} has {count} lines (more than {limit}): split it")
    return problems


def _top_level(body):
    """The module's own statements, into if/try/with blocks but not into functions or classes."""
    for node in body:
        yield node
        if isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
            for field in ("body", "orelse", "finalbody"):
                yield from _top_level(getattr(node, field, []))
            for handler in getattr(node, "handlers", []):
                yield from _top_level(handler.body)


def _bound_names(tree: ast.Module, package: str) -> list[tuple[str, int, bool]]:
    """(name, line, is the submodule of that name itself) for each top-level binding."""
    out = []
    for node in _top_level(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.append((node.name, node.lineno, False))
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.For, ast.With)):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [item.optional_vars for item in node.items if item.optional_vars] if isinstance(node, ast.With) else \
                [node.target]
            for target in targets:
                out += [(n.id, node.lineno, False) for n in ast.walk(target) if isinstance(n, ast.Name)]
        elif isinstance(node, ast.Import):
            out += [((a.asname or a.name).split(".")[0], node.lineno, False) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level \
                else node.module
            for a in node.names:
                bound = a.asname or a.name
                out.append((bound, node.lineno, base == package and a.name == bound))
    return out


def shadow_problems(modules: dict[str, Module], exempt=SHADOW_EXEMPT) -> list[str]:
    """A package __init__ that binds a submodule's name shadows the submodule: after
    `from .validate import validate`, `import specbuild.spec.validate` gives a function."""
    problems = []
    for module in modules.values():
        if not module.is_package or module.name in exempt:
            continue
        subs = {name.rpartition(".")[2] for name in modules if name.rpartition(".")[0] == module.name}
        for name, line, is_the_module in _bound_names(_parse(module), module.name):
            if name in subs and not is_the_module:
                problems.append(f"{module.rel}:{line} binds {name!r}, the name of its submodule "
                                f"{module.name}.{name}, which it then shadows")
    return problems


# --- the checks on the package ----------------------------------------------------------

MODULES = find_modules()
IMPORTS, UNKNOWN = collect_imports(MODULES)


def _report(problems: list[str]) -> str:
    return f"{len(problems)} problem(s):\n" + "\n".join(problems)


def test_the_walk_sees_the_package():
    assert {"specbuild", "specbuild.spec.validate", "specbuild.training.trainer", "specbuild.cli.main"} <= set(MODULES)
    targets = {(i.importer, i.target) for i in IMPORTS}
    assert ("specbuild.spec.infer", "specbuild.registry") in targets            # from .. import registry
    assert ("specbuild.spec.validate", "specbuild.spec.lint") in targets        # lazy, inside a function
    assert ("specbuild", "specbuild.training.trainer") in targets               # _LAZY


def test_imports_name_existing_modules():
    assert not UNKNOWN, _report(UNKNOWN)


def test_no_import_cycles():
    problems = cycle_problems(import_graph(IMPORTS, MODULES))
    assert not problems, _report(problems)


def test_stages_import_only_downwards():
    problems = layer_problems(IMPORTS, MODULES)
    assert not problems, _report(problems)


def test_no_importlib_strings_naming_specbuild_modules():
    problems = importlib_problems(MODULES)
    assert not problems, _report(problems)
    for rel in ALLOWED_IMPORTLIB:
        assert (ROOT / rel).exists(), f"ALLOWED_IMPORTLIB names {rel}, which is gone: drop it"


def test_resolve_imports_only_torch_and_operator():
    roots = resolve_roots()
    assert roots and all(r == "operator" or r == "torch" or r.startswith("torch.") for r in roots), roots


def test_modules_are_short():
    problems = size_problems(MODULES)
    assert not problems, _report(problems)


def test_package_inits_do_not_shadow_submodules():
    problems = shadow_problems(MODULES)
    assert not problems, _report(problems)


def _run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


NO_TORCH = """
import sys
loaded = lambda: sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
import specbuild
assert not loaded(), ("import specbuild imported", loaded()[:5])
from specbuild.cli.main import main
rc = main(["validate", "specs/cnn.yaml"])
assert rc == 0, rc
assert not loaded(), ("specbuild validate imported", loaded()[:5])
"""


def test_import_and_validate_do_not_import_torch():
    _run_python(NO_TORCH)


def test_the_torch_check_can_fail():
    with pytest.raises(AssertionError, match="import specbuild imported"):
        _run_python("import torch.nn\n" + NO_TORCH)


FACE_FUNCTIONS = """
import inspect, sys
{first}
import specbuild
for round in (1, 2):
    for name in ("train", "summary", "build_model"):
        value = getattr(specbuild, name)
        assert inspect.isfunction(value), (round, name, value)
        assert value.__name__ == name, (round, name, value)
{then}
for name in ("train", "summary", "build_model"):
    assert inspect.isfunction(getattr(specbuild, name)), name
from specbuild import train, summary, build_model
assert all(map(inspect.isfunction, (train, summary, build_model)))
"""
STAGE_IMPORTS = "import specbuild.training.trainer, specbuild.compiler.summary, specbuild.compiler.compile"


@pytest.mark.parametrize("first,then", [(STAGE_IMPORTS, ""), ("", STAGE_IMPORTS)], ids=["modules-first", "face-first"])
def test_public_functions_survive_importing_their_modules(first, then):
    _run_python(FACE_FUNCTIONS.format(first=first, then=then))


def test_every_submodule_attribute_is_the_module():
    """At run time: after importing every module, each package's attribute for a submodule
    is that module (a re-exported function of the same name would replace it)."""
    names = sorted(name for name in MODULES if name not in FACE)
    _run_python(f"""
import importlib, types
names = {names!r}
for name in names:
    importlib.import_module(name)
bad = []
for name in names + ["specbuild"]:
    parent, _, leaf = name.rpartition(".")
    if parent:
        value = getattr(importlib.import_module(parent), leaf)
        if not isinstance(value, types.ModuleType) or value.__name__ != name:
            bad.append((name, value))
assert not bad, bad
""")


# --- the checkers can fail --------------------------------------------------------------

def _imp(importer, target, line=1):
    return Import(importer, target, importer.replace(".", "/") + ".py", line, f"import {target}")


def test_the_checkers_report_a_cycle_an_upward_and_a_peer_import():
    imports = [_imp("specbuild.spec.graph", "specbuild.spec.infer", 3),
               _imp("specbuild.spec.infer", "specbuild.spec.graph", 7),
               _imp("specbuild.errors", "specbuild.training.trainer", 11),
               _imp("specbuild.compiler.compile", "specbuild.data.load", 13),
               _imp("specbuild.training.trainer", "specbuild.errors", 15)]
    cycles = cycle_problems(import_graph(imports))
    assert len(cycles) == 2, cycles   # graph <-> infer, and errors <-> trainer
    assert any("specbuild.spec.graph" in c and "specbuild/spec/infer.py:7" in c for c in cycles), cycles
    layers = layer_problems(imports, ["specbuild.nowhere"])
    assert any(p.startswith("specbuild/errors.py:11") and "specbuild.training.trainer" in p and "higher" in p
               for p in layers), layers
    assert any(p.startswith("specbuild/compiler/compile.py:13") and "peer" in p for p in layers), layers
    assert any("specbuild.nowhere is in no stage" in p for p in layers), layers
    assert len(layers) == 3, layers
    assert not layer_problems([_imp("specbuild.cli.main", "specbuild.registry")])


def _fake_package(tmp_path: Path, files: dict[str, str]) -> dict[str, Module]:
    for rel, text in files.items():
        path = tmp_path / "specbuild" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return find_modules(tmp_path / "specbuild")


def test_the_file_checkers_can_fail(tmp_path):
    modules = _fake_package(tmp_path, {
        "__init__.py": "_LAZY = {'f': 'spec.validate'}\n",
        "registry.py": "x = 1\n",
        "spec/__init__.py": "from .validate import validate\nfrom . import loader\n",
        "spec/validate.py": "def validate(): pass\n",
        "spec/loader.py": "import importlib\nfrom importlib import import_module as im\n"
                          "def f(name):\n"
                          "    importlib.import_module('specbuild.registry')\n"
                          "    im(f'.{name}', 'specbuild')\n"
                          "    __import__(name)\n"
                          "    importlib.import_module('json')\n"
                          "    from .. import registry, nothing_here\n",
        "compiler/compile.py": "\n" * 401,
    })
    problems = importlib_problems(modules, allowed={})
    assert [p.split(":")[1] for p in problems] == ["4", "5", "6"], problems
    assert importlib_problems(modules, allowed={modules["specbuild.spec.loader"].rel: "test"}) == []
    shadows = shadow_problems(modules)
    assert len(shadows) == 1 and "'validate'" in shadows[0], shadows      # `from . import loader` is fine
    sizes = size_problems(modules)
    assert len(sizes) == 1 and "compile.py has 401 lines" in sizes[0], sizes
    imports, unknown = collect_imports(modules)
    edges = {(i.importer, i.target) for i in imports}
    assert {("specbuild.spec.loader", "specbuild.registry"), ("specbuild.spec", "specbuild.spec.validate"),
            ("specbuild.spec.loader", "specbuild"), ("specbuild", "specbuild.spec.validate")} <= edges, edges
    assert unknown == []
    layers = layer_problems(imports, modules)
    assert len(layers) == 1 and "imports specbuild from face" in layers[0], layers
    bad, unknown = collect_imports({**modules, **_fake_package(tmp_path, {"cli/main.py": "from ..gone import x\n"})})
    assert len(unknown) == 1 and "specbuild.gone, which is no module" in unknown[0], unknown
