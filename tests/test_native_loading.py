"""Loading of the native backends: caching, fallback without a compiler, import never compiles."""

from __future__ import annotations

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
