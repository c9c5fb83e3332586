"""Loading of the native backends: caching, fallback without a compiler, import never compiles."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings

import pytest
import torch

import softras.functional as srf
from softras import _native


def _scene():
    g = torch.Generator().manual_seed(3)
    fv = torch.rand(1, 6, 3, 3, generator=g) * 2 - 1
    fv[..., 2] = fv[..., 2].abs() * 3 + 2
    return fv, torch.rand(1, 6, 1, 3, generator=g)


def test_import_never_compiles():
    code = "import softras, softras.functional, softras._native as n; print(sorted(n._modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert "building" not in out.stderr


def test_build_key_changes_with_sources(monkeypatch, tmp_path):
    key = _native._build_key("cpu")
    assert key == _native._build_key("cpu")  # stable
    src = tmp_path / "csrc"
    src.mkdir()
    for name in _native._HEADERS + _native._SOURCES["cpu"]:
        (src / name).write_bytes((_native.CSRC / name).read_bytes())
    monkeypatch.setattr(_native, "CSRC", src)
    assert _native._build_key("cpu") == key
    (src / "rasterize.h").write_text((src / "rasterize.h").read_text() + "\n// edited\n")
    assert _native._build_key("cpu") != key


def test_auto_falls_back_to_reference_with_one_warning(monkeypatch):
    fv, tex = _scene()
    expected = srf.soft_rasterize(fv, tex, image_size=12, sigma_val=1e-2, backend="reference")

    def no_compiler(kind):
        raise _native.BackendUnavailable("no C++ compiler found (set CXX or install g++)")

    monkeypatch.setattr(_native, "_modules", {})
    monkeypatch.setattr(_native, "_warned", set())
    monkeypatch.setattr(_native, "_compile", no_compiler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = srf.soft_rasterize(fv, tex, image_size=12, sigma_val=1e-2)
        second = srf.soft_rasterize(fv, tex, image_size=12, sigma_val=1e-2)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "no C++ compiler" in messages[0] and "reference" in messages[0]
    torch.testing.assert_close(first, expected, rtol=0, atol=0)
    torch.testing.assert_close(second, expected, rtol=0, atol=0)
    with pytest.raises(_native.BackendUnavailable, match="no C\\+\\+ compiler"):
        srf.soft_rasterize(fv, tex, image_size=12, backend="cpu")


# ---------------------------------------------------------------------------------------
# the cache folder: one per source tree, stable for a tree


def _copy_csrc(dest):
    dest.mkdir(parents=True)
    for p in _native.CSRC.iterdir():
        if p.is_file():
            (dest / p.name).write_bytes(p.read_bytes())
    return dest


def test_build_dir_is_per_checkout_and_stable(monkeypatch, tmp_path):
    """Two checkouts with identical sources get different folders (ninja names sources by
    absolute path, so a shared folder would rebuild at every switch); one checkout always
    gets the same folder; its content key is the same for both."""
    monkeypatch.setenv("SOFTRAS_CACHE", str(tmp_path / "cache"))
    a, b = _copy_csrc(tmp_path / "a" / "csrc"), _copy_csrc(tmp_path / "b" / "csrc")
    monkeypatch.setattr(_native, "CSRC", a)
    dir_a, key_a = _native.build_dir("cpu"), _native._build_key("cpu")
    assert _native.build_dir("cpu") == dir_a
    monkeypatch.setattr(_native, "CSRC", b)
    dir_b, key_b = _native.build_dir("cpu"), _native._build_key("cpu")
    assert key_a == key_b and dir_a != dir_b
    assert dir_a.parent == dir_b.parent == tmp_path / "cache"
    monkeypatch.setattr(_native, "CSRC", a)
    assert _native.build_dir("cpu") == dir_a  # switching back finds the first folder again
    assert _native.build_dir("cpu", "softras_cpu_twin") != dir_a  # another module name, another folder


def test_needs_compile_follows_the_built_module(monkeypatch, tmp_path):
    """A compile is announced when no module is built, or the built one is older than a source."""
    import os

    monkeypatch.setenv("SOFTRAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(_native, "CSRC", _copy_csrc(tmp_path / "csrc"))
    assert _native.needs_compile("cpu")
    folder = _native.build_dir("cpu")
    folder.mkdir(parents=True)
    built = folder / "softras_cpu.so"
    built.write_bytes(b"")
    source = _native.CSRC / "rasterize.h"
    os.utime(source, (1_000_000, 1_000_000))
    os.utime(built, (2_000_000, 2_000_000))
    for name in _native._HEADERS + _native._SOURCES["cpu"]:
        os.utime(_native.CSRC / name, (1_000_000, 1_000_000))
    assert not _native.needs_compile("cpu")
    os.utime(source, (3_000_000, 3_000_000))  # touched after the build: ninja rebuilds
    assert _native.needs_compile("cpu")


def test_cuda_flags_have_no_fast_math_unless_asked(monkeypatch):
    monkeypatch.delenv("SOFTRAS_CUDA_FAST_MATH", raising=False)
    flags = _native.nvcc_flags()
    assert "--use_fast_math" not in flags and "-DSOFTRAS_WITH_CUDA" in flags
    key = _native._build_key("cuda")
    monkeypatch.setenv("SOFTRAS_CUDA_FAST_MATH", "1")
    assert "--use_fast_math" in _native.nvcc_flags()
    assert _native._build_key("cuda") != key  # another build


def test_compile_check_uses_the_build_flags(tmp_path):
    from torch.utils import cpp_extension

    from softras import build

    if cpp_extension.CUDA_HOME is None and shutil.which("nvcc") is None:
        pytest.skip("nvcc not found")
    cmd = build.nvcc_command(tmp_path / "x.cu", tmp_path / "x.o", "sm_90", [])
    for flag in _native.nvcc_flags() + list(cpp_extension.COMMON_NVCC_FLAGS):
        assert flag in cmd, flag
    assert "--use_fast_math" not in cmd


def test_native_does_not_import_functional():
    """The dependency is one-way: softras.functional loads the backends, never the reverse."""
    code = "import sys, softras._native; print(any(m.startswith('softras.functional') for m in sys.modules))"
    # softras/__init__ imports softras.functional, so look at the module's own imports instead
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(_native))
    imported = [
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]
    assert not any("functional" in m for m in imported), imported
    del code


# ---------------------------------------------------------------------------------------
# two extensions binding the same C++ types in one process (the CPU and CUDA modules do)

_TWIN = "softras_cpu_twin"

_TWIN_SCRIPT = """
import sys, torch
from softras import _native
from softras.functional import RasterSettings
order = sys.argv[1:]
mods = {{}}
for name in order:
    mods[name] = _native._compile("cpu", name=None if name == "softras_cpu" else name)
s = RasterSettings(image_size=8, sigma_val=1e-2)
fv = torch.tensor([[[-0.5, -0.5, 2.0], [0.0, 0.6, 2.0], [0.5, -0.5, 2.0]]])
tex = torch.ones(1, 1, 3)
outs = [m.forward(fv, tex, torch.zeros(1, dtype=torch.long), _native._params(m, s, 1, 1, 1))[0] for m in mods.values()]
assert outs[0].shape == (1, 4, 8, 8) and float(outs[0][0, 3].max()) > 0.9
assert torch.equal(outs[0], outs[1])
print("both imported:", ",".join(m.__name__ for m in mods.values()))
"""


@pytest.mark.parametrize("order", [("softras_cpu", _TWIN), (_TWIN, "softras_cpu")], ids=["cpu-first", "twin-first"])
def test_two_extensions_with_the_same_bindings_import_together(order):
    """The CPU module and a second build of the same bindings under another name load into
    one process in either order, as the CPU and CUDA modules must (pybind11 rejects a type
    registered twice unless it is module-local). Built once, cached beside the CPU build."""
    if not _native.available("cpu"):
        pytest.skip("no CPU backend here")
    _native._compile("cpu", name=_TWIN)  # the one extra build (cached)
    proc = subprocess.run(
        [sys.executable, "-c", _TWIN_SCRIPT.format(), *order], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == f"both imported: {','.join(order)}"


_BOTH_SCRIPT = """
import sys
from softras import _native
for kind in sys.argv[1:]:
    _native.load(kind)
print("loaded", *sys.argv[1:])
"""


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (torch.cuda.is_available() is False)")
@pytest.mark.parametrize("order", [("cpu", "cuda"), ("cuda", "cpu")], ids=["cpu-first", "cuda-first"])
def test_cpu_and_cuda_backends_load_in_one_process(order):
    _native.load("cpu"), _native.load("cuda")  # built here (cached) before the subprocess
    proc = subprocess.run([sys.executable, "-c", _BOTH_SCRIPT, *order], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "loaded " + " ".join(order)
