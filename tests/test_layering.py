"""The layering of docs/style.md, checked by tools rather than by eye: import-linter's contracts
(pyproject.toml) and a scan for imports of another module's private names."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "softras"


def test_import_linter_contracts_are_kept():
    exe = Path(sys.executable).parent / "lint-imports"
    assert exe.is_file(), f"{exe} not found: install the dev extra (pip install -e '.[dev]')"
    proc = subprocess.run([str(exe), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_every_module_has_a_layer():
    # a module missing from the layers contract would escape it unchecked
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    named = {m.strip().strip("()") for layer in layers for m in layer.replace("|", ":").split(":")}
    children = {f"softras.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    children |= {f"softras.{p.parent.name}" for p in PACKAGE.glob("*/__init__.py")}
    assert sorted(children - named) == []


def _module_name(path: Path) -> tuple[str, str]:
    """(module, package) of a file under softras/."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def _is_module(name: str) -> bool:
    p = ROOT.joinpath(*name.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_name_imports(path: Path) -> list[str]:
    """Where the file at ``path`` uses a private (``_x``) name of another module: ``from m
    import _x``, ``m._x`` on an imported module, or a private module of another package.
    A private module is its package's business: the package and its subpackages may import it."""
    module, package = _module_name(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: dict[str, str] = {}  # local name -> imported module
    found = []

    def where(node: ast.AST) -> str:
        return f"{path.relative_to(ROOT)}:{node.lineno}"

    def check_module(name: str, node: ast.AST) -> None:
        parent, _, last = name.rpartition(".")
        if _private(last) and package != parent and not package.startswith(parent + "."):
            found.append(f"{where(node)}: private module {name}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("softras"):
                    parts = alias.name.split(".")
                    for i in range(2, len(parts) + 1):
                        check_module(".".join(parts[:i]), node)
                    modules[alias.asname or parts[0]] = alias.name if alias.asname else parts[0]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if not source.startswith("softras"):
                continue
            parts = source.split(".")
            for i in range(2, len(parts) + 1):
                check_module(".".join(parts[:i]), node)
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if _is_module(full):
                    check_module(full, node)
                    modules[alias.asname or alias.name] = full
                elif _private(alias.name) and source != module:
                    found.append(f"{where(node)}: {alias.name} from {source}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name):
            source = modules.get(node.value.id)
            if source is not None and source != module:
                found.append(f"{where(node)}: {node.attr} of {source}")
    return found


def test_the_scan_finds_private_names(tmp_path, monkeypatch):
    # the scan itself, on a file of each kind of use (written under a fake package root)
    fake = tmp_path / "softras" / "sub"
    fake.mkdir(parents=True)
    (tmp_path / "softras" / "__init__.py").write_text("")
    (tmp_path / "softras" / "_hidden.py").write_text("")
    (tmp_path / "softras" / "other").mkdir()
    (tmp_path / "softras" / "other" / "__init__.py").write_text("")
    (tmp_path / "softras" / "other" / "_inner.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "_own.py").write_text("")
    (fake / "mod.py").write_text(
        "from .. import _hidden\nfrom . import _own\nfrom ..other import _inner\nfrom ..io import _read, load\n"
        "from .. import io as sio\nx = sio._texel + sio.save\ny = _own._z\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "softras" / "io.py").write_text("")
    found = private_name_imports(fake / "mod.py")
    assert sorted(f.split(": ", 1)[1] for f in found) == [
        "_read from softras.io",
        "_texel of softras.io",
        "_z of softras.sub._own",
        "private module softras.other._inner",
    ]


def test_no_module_imports_another_modules_private_names():
    found = [f for path in sorted(PACKAGE.rglob("*.py")) for f in private_name_imports(path)]
    assert not found, "private names used across modules:\n" + "\n".join(found)
