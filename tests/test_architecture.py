"""The package's layout rules (docs/ARCHITECTURE.md), checked on the source text.

* layers: a module imports only modules of its own layer or of layers below it;
* no import circle, counting imports inside functions too;
* an import of our own modules inside a function is allowed only for a module that loads TensorFlow
  or Keras (the reason such an import stays lazy: ``--help`` and the light commands must not wait for it);
* no module over 500 lines;
* facts with one home: the literals that name the op and the boards appear in one module each.

The import graph is read with ``ast`` from the files, never by importing them, so a rule broken in a
module no test imports is still caught.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trec_tflm"

# lowest first; a module may import its own layer and the layers before it
LAYERS = [
    ("base", ["errors", "paths", "progress", "deps", "tf_quiet", "data"]),
    ("spec", ["spec"]),
    ("training", ["training"]),
    ("host", ["host"]),
    ("tflite", ["tflite"]),
    ("target", ["target"]),
    ("bench", ["bench"]),
    ("tune", ["tune"]),
    ("commands", ["cli", "demo", "bench_models_cli", "__main__"]),
]
# the package facade (lazy names) and the aliases of the old flat paths sit outside the layers
OUTSIDE = {"trec_tflm", "trec_tflm._moved"}
HEAVY = ("tensorflow", "keras", "tflite_micro")
MAX_LINES = 500
ONE_HOME = {
    "TREC_CONV_2D": "trec_tflm.spec.op",
    "nucleo_f746zg": "trec_tflm.target.boards",
    "disco_f469ni": "trec_tflm.target.boards",
    "qemu_m7": "trec_tflm.target.boards",
    "qemu_m4": "trec_tflm.target.boards",
}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        if "_data" in path.relative_to(PACKAGE).parts:
            continue
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _imports(name: str) -> list[tuple[str, bool, int]]:
    """(imported module of ours, at module level?, line) for every import in module ``name``."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    top = {id(node) for node in tree.body}
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for alias in node.names:
                full = f"{mod}.{alias.name}"
                targets.append(full if full in MODULES else mod)
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        for target in targets:
            while target and target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in MODULES and target != name:
                out.append((target, id(node) in top, node.lineno))
    return out


def _heavy_at_top(name: str) -> bool:
    tree = ast.parse(MODULES[name].read_text())
    for node in tree.body:
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] in HEAVY for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] in HEAVY:
            return True
    return False


def _loads_heavy() -> set[str]:
    """Modules that load TensorFlow, Keras or TFLM when imported (directly or through module-level imports)."""
    heavy = {m for m in MODULES if _heavy_at_top(m)}
    edges = {m: [t for t, top, _ in _imports(m) if top] for m in MODULES}
    changed = True
    while changed:
        changed = False
        for m, targets in edges.items():
            if m not in heavy and any(t in heavy for t in targets):
                heavy.add(m)
                changed = True
    return heavy


def layer_of(name: str) -> int:
    rel = name.split(".")[1] if "." in name else ""
    for i, (_, roots) in enumerate(LAYERS):
        if rel in roots:
            return i
    raise AssertionError(f"{name} belongs to no layer: add it to a layer in docs/ARCHITECTURE.md and LAYERS here")


def test_every_module_has_a_layer():
    for name in MODULES:
        if name not in OUTSIDE:
            layer_of(name)


def test_imports_go_down_the_layers():
    bad = []
    for name in MODULES:
        if name in OUTSIDE:
            continue
        for target, _, line in _imports(name):
            if target in OUTSIDE:
                continue
            if layer_of(target) > layer_of(name):
                bad.append(f"{MODULES[name].relative_to(PACKAGE.parent)}:{line}: {name} "
                           f"({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})")
    assert not bad, "imports up the layers:\n" + "\n".join(bad)


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_find_cycles_finds_a_circle():
    # the checker itself, on a hand-made graph: a -> b -> c -> a is one circle, d hangs off it
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    # the facade's lazy names point at training/; every package's __init__ is the package itself
    edges = {m: {t for t, _, _ in _imports(m) if t not in OUTSIDE} for m in MODULES if m not in OUTSIDE}
    assert find_cycles(edges) == []


def test_lazy_imports_only_for_heavy_modules():
    heavy = _loads_heavy()
    bad = [f"{MODULES[name].relative_to(PACKAGE.parent)}:{line}: imports {target} inside a function, but "
           f"{target} loads no TensorFlow: import it at module level"
           for name in MODULES if name not in OUTSIDE
           for target, top, line in _imports(name) if not top and target not in heavy]
    assert not bad, "\n".join(bad)


def test_heavy_detection_sees_tensorflow():
    # the rule above leans on this: the layer module loads TensorFlow, the op constants do not
    heavy = _loads_heavy()
    assert "trec_tflm.training.layers" in heavy and "trec_tflm.training.models" in heavy
    assert "trec_tflm.spec.op" not in heavy and "trec_tflm.cli" not in heavy


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_size(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines (at most {MAX_LINES}): split it by concern"


def test_facts_have_one_home():
    bad = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in ONE_HOME \
                    and ONE_HOME[node.value] != name:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: the literal {node.value!r} "
                           f"(its home is {ONE_HOME[node.value]})")
    assert not bad, "\n".join(bad)


def test_old_flat_paths_alias_the_new_modules():
    # one release of grace for `import trec_tflm.golden` & co: the same module object (a monkeypatch
    # through either name is seen by both), a DeprecationWarning naming the new path, and the module
    # keeps its own name (pickling and Keras' registered names depend on it)
    code = (
        "import warnings, sys\n"
        "warnings.simplefilter('error')\n"
        "try:\n"
        "    import trec_tflm.golden\n"
        "except DeprecationWarning as w:\n"
        "    print('WARNED', w)\n"
        "warnings.simplefilter('ignore')\n"
        "import trec_tflm.golden as old, trec_tflm.spec.golden as new\n"
        "from trec_tflm import native\n"
        "print(old is new, old.__name__, old.__spec__.name, native.__name__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "WARNED trec_tflm.golden moved to trec_tflm.spec.golden" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "True trec_tflm.spec.golden trec_tflm.spec.golden trec_tflm.host.kernels"


def test_every_error_has_the_one_root():
    # every exception class the package defines derives from errors.TrecTflmError (and keeps the built-in
    # base its callers catch); imported for real, so a base added at runtime or by a decorator counts too
    import importlib
    import inspect

    from trec_tflm.errors import TrecTflmError

    found, bad = 0, []
    for name in sorted(MODULES):
        if name.endswith("__main__") or name in OUTSIDE:
            continue
        module = importlib.import_module(name)
        for attr, cls in vars(module).items():
            if inspect.isclass(cls) and issubclass(cls, BaseException) and cls.__module__ == name:
                found += 1
                if not issubclass(cls, TrecTflmError):
                    bad.append(f"{name}.{attr} (bases {[b.__name__ for b in cls.__bases__]})")
    assert found >= 30, f"only {found} error classes found: the walk over the package is broken"
    assert not bad, "errors outside the one root (derive them from trec_tflm.errors.TrecTflmError):\n" + \
        "\n".join(bad)
