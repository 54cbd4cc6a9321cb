"""The layout keeps its promises: imports point down the layers only, no private name crosses a
module, modules and functions stay small, and errors a user can reach are typed.

Layers, bottom to top (README "Architecture"): fingerprint -> index -> attribution -> the
capabilities beside each other (probing, replay, reports, monitor, sharing, distributed, reference_pack) -> cli. A module may import
its own package and any lower layer; capabilities never import each other, so each is found and
changed alone.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"fingerprint": 0, "index": 1, "attribution": 2, "probing": 3, "replay": 3,
          "reports": 3, "monitor": 3, "sharing": 3, "distributed": 3, "reference_pack": 3,
          "cli": 4}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
KEPT_WHOLE = "kept whole"  # a longer function's docstring says why, starting with these words


def modules() -> list[Path]:
    return sorted(p for package in LAYERS for p in (ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(tree: ast.AST, name: str, is_package: bool) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, imported names) of every import, top level or inside functions."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = name.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([module] if module else []))
            found.append((node.lineno, module, [alias.name for alias in node.names]))
    return found


def import_problems(source: str, name: str, is_package: bool) -> list[str]:
    """Upward imports and private names crossing modules in one module's source."""
    package = name.split(".")[0]
    tree = ast.parse(source)
    problems = []
    for line, module, names in imports(tree, name, is_package):
        top = module.split(".")[0]
        if top in LAYERS and top != package and LAYERS[top] >= LAYERS[package]:
            problems.append(f"line {line}: {package} (layer {LAYERS[package]}) imports {module} "
                            f"(layer {LAYERS[top]})")
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        if top in LAYERS and private and module != name:
            problems.append(f"line {line}: imports private {', '.join(private)} from {module}")
    aliases = {alias.asname or alias.name for node in ast.walk(tree)
               if isinstance(node, ast.Import) for alias in node.names
               if alias.name.split(".")[0] in LAYERS}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                node.value.id in aliases and node.attr.startswith("_") and \
                not node.attr.startswith("__"):
            problems.append(f"line {node.lineno}: uses private {node.value.id}.{node.attr}")
    return problems


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down_and_names_stay_public(path: Path):
    problems = import_problems(path.read_text(encoding="utf-8"), module_name(path),
                               path.name == "__init__.py")
    assert not problems, f"{path.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_the_import_check_catches_what_it_forbids():
    """The check above is only worth something if it can fail."""
    source = ("from attribution import attribute\nfrom .records import _x\n"
              "import index.store as store\nstore._private\n")
    assert sorted(import_problems(source, "fingerprint.io", False)) == [
        "line 1: fingerprint (layer 0) imports attribution (layer 2)",
        "line 2: imports private _x from fingerprint.records",
        "line 3: fingerprint (layer 0) imports index.store (layer 1)",
        "line 4: uses private store._private"]
    assert import_problems("from probing import probe_file\n", "replay.server", False) == [
        "line 1: replay (layer 3) imports probing (layer 3)"]  # capabilities stay apart
    assert import_problems("from replay import ReplayServer\n", "monitor.scan", False) == [
        "line 1: monitor (layer 3) imports replay (layer 3)"]
    assert import_problems("from monitor import read_risk_file\n", "sharing.x", False) == [
        "line 1: sharing (layer 3) imports monitor (layer 3)"]
    assert import_problems("from attribution import attribute\n", "probing.run", False) == []


def long_functions(tree: ast.AST) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            doc = (ast.get_docstring(node) or "").lower()
            if length > MAX_FUNCTION_LINES and KEPT_WHOLE not in doc:
                out.append((node.name, length))
    return out


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_stay_small(path: Path):
    text = path.read_text(encoding="utf-8")
    lines = len(text.splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)} has {lines} lines"
    too_long = long_functions(ast.parse(text))
    assert not too_long, (f"{path.relative_to(ROOT)}: functions over {MAX_FUNCTION_LINES} lines "
                          f"whose docstring does not say why ('{KEPT_WHOLE}: ...'): {too_long}")


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_untyped_errors_or_asserts(path: Path):
    """Errors raised on purpose are FingerprintError subclasses (the CLI turns exactly those into
    one line); ``assert`` is not a runtime check (python -O drops it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            found.append(f"line {node.lineno}: assert")
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and \
                isinstance(node.exc.func, ast.Name) and \
                node.exc.func.id in ("ValueError", "TypeError", "Exception", "OSError"):
            found.append(f"line {node.lineno}: raise {node.exc.func.id}")
    assert not found, f"{path.relative_to(ROOT)}: " + "; ".join(found)


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_public_api_is_what_each_package_exports(package: str):
    """Every package says what its public API is (``__all__``), and has every name it lists."""
    import importlib

    module = importlib.import_module(package)
    exported = getattr(module, "__all__", None)
    assert exported, f"{package} has no __all__"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{package}.__all__ names what it does not have: {missing}"


def test_every_user_error_is_typed_and_derives_from_fingerprint_error():
    """Each layer's error module holds only FingerprintError subclasses."""
    import importlib

    from fingerprint.errors import FingerprintError

    for name in ("fingerprint.errors", "index.errors", "attribution.errors", "probing.errors",
                 "replay.errors", "reports.errors", "monitor.errors", "sharing.errors",
                 "distributed.errors"):
        module = importlib.import_module(name)
        classes = [v for v in vars(module).values()
                   if isinstance(v, type) and issubclass(v, BaseException)
                   and v.__module__ == name]
        assert classes, name
        assert all(issubclass(c, FingerprintError) for c in classes), name
