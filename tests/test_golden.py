"""Golden-image regression tests of the whole renderer (mesh loading, texture baking, lighting,
camera, soft rasterization).

The references are small RGBA PNGs (uint8) in ``tests/data/golden/``; several views of one
case are stored side by side in one PNG. A render matches when, after the same rounding to
uint8, the largest absolute difference is at most 2/255 and the mean at most 0.2/255.

To regenerate the references after an intended change of the rendered images, run

    SOFTRAS_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py

which rewrites every PNG (look at them before committing); each rewritten case is then reported
as skipped ("golden image rewritten: <path>"), not passed. Windows of every golden image are
also rendered by the pure-PyTorch ``reference`` backend and must match within the same
tolerance (``test_golden_matches_reference_backend``). On a mismatch the test writes
``<name>_actual.png`` (the new render) and ``<name>_diff.png`` (the absolute difference
amplified 16x: RGB channels on the left, alpha in grey on the right) into
``outputs/golden-diff/`` and fails with a message naming both files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import softras as sr
import softras.functional as srf

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
DIFF_DIR = ROOT / "outputs" / "golden-diff"
UPDATE = os.environ.get("SOFTRAS_UPDATE_GOLDEN", "") not in ("", "0")

MAX_DIFF = 2  # in units of 1/255
MEAN_DIFF = 0.2  # in units of 1/255
AMPLIFY = 16


Scene = tuple[sr.SoftRenderer, sr.Mesh]


def _spot_textured(**kw) -> Scene:
    mesh = sr.Mesh.from_obj(ROOT / "data" / "spot_triangulated.obj", load_texture=True, texture_res=5)
    renderer = sr.SoftRenderer(image_size=256, **kw)
    renderer.transform.set_eyes_from_angles(2.732, 20, 135)
    return renderer, mesh


def spot_textured() -> Scene:
    """Spot with its baked texture (R = 5), SoftRenderer defaults, 256 x 256, one view."""
    return _spot_textured()


def spot_blurry() -> Scene:
    """The same, blurred: sigma 1e-3, gamma 1e-2."""
    return _spot_textured(sigma_val=1e-3, gamma_val=1e-2)


def sphere_silhouettes() -> Scene:
    """The 1352-vertex template sphere scaled by 0.5, 64 x 64, sigma 1e-4, three views at
    different distances (so the discs differ in size)."""
    mesh = sr.Mesh.from_obj(ROOT / "data" / "sphere_1352.obj")
    mesh.vertices = mesh.vertices * 0.5
    renderer = sr.SoftRenderer(image_size=64, sigma_val=1e-4)
    renderer.transform.set_eyes_from_angles([2.732, 2.732, 2.0], [0.0, 30.0, -45.0], [0.0, 90.0, 200.0])
    return renderer, mesh


CASES: dict[str, Callable[[], Scene]] = {
    "spot_textured": spot_textured,
    "spot_blurry": spot_blurry,
    "sphere_silhouettes": sphere_silhouettes,
}

# Windows (view, top row, left column, size) of each golden image that are also rendered by the
# pure-PyTorch reference backend (a full 256 x 256 reference render takes many minutes); chosen
# where silhouette edges and texture detail meet.
REFERENCE_WINDOWS: dict[str, list[tuple[int, int, int, int]]] = {
    "spot_textured": [(0, 120, 168, 32), (0, 88, 120, 32)],
    "spot_blurry": [(0, 32, 120, 24), (0, 120, 176, 24)],
    "sphere_silhouettes": [(0, 16, 16, 16), (1, 16, 16, 16), (2, 16, 16, 16)],
}


def render(name: str) -> torch.Tensor:
    """RGBA [N, 4, H, W] of a golden case with its own renderer (backend ``auto``)."""
    renderer, mesh = CASES[name]()
    with torch.no_grad():
        return renderer.render_mesh(mesh)


def render_window_on_reference(name: str, view: int, top: int, left: int, size: int) -> torch.Tensor:
    """RGBA [1, 4, size, size]: pixels [top, top + size) x [left, left + size) of view ``view``
    of a golden case, rendered by the reference backend in float64.

    The window is rendered as a whole image: x and y of the projected vertices are mapped by
    x' = s (x - x_c), y' = s (y - y_c) (s = W / size, (x_c, y_c) the window's centre in NDC),
    which puts the window's pixel centres where a size x size image has them; barycentrics and
    depths are unchanged and squared 2D distances grow by s^2, so sigma is multiplied by s^2.
    Faces farther than 2 sqrt(T) from the window (T = sigma ln(1/dist_eps - 1), the culling
    distance of softras-math.md section 2) have D <= dist_eps^2 there and are left out, which
    keeps the reference fast.
    """
    renderer, mesh = CASES[name]()
    renderer.set_texture_mode(mesh.texture_type)
    settings = renderer.rasterizer.settings()
    H, W = settings.image_size
    assert H == W and settings.aggr_func_alpha != "sum" and not renderer.rasterizer.anti_aliasing
    with torch.no_grad():
        projected = renderer.transform(renderer.lighting(mesh))
        fv = projected.face_vertices[view].double().clone()  # [F, 3, 3]
        tex = projected.face_textures[view].double()  # [F, R*R, 3]
    s = W / size
    x_c, y_c = (2 * left + size) / W - 1, 1 - (2 * top + size) / H
    fv[..., 0] = (fv[..., 0] - x_c) * s
    fv[..., 1] = (fv[..., 1] - y_c) * s
    window = replace(settings, image_size=(size, size), sigma_val=settings.sigma_val * s * s)
    margin = 2 * math.sqrt(window.sigma_val * math.log(1 / window.dist_eps - 1))
    lo, hi = fv[..., :2].min(dim=1).values, fv[..., :2].max(dim=1).values  # [F, 2]
    keep = ((hi > -1 - margin) & (lo < 1 + margin)).all(dim=1)
    first = torch.zeros(1, dtype=torch.int64)
    return srf.soft_rasterize_packed(fv[keep], tex[keep], first, window, backend="reference")


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """RGBA [N, 4, H, W] in [0, 1] -> uint8 [H, N*W, 4] (the N views side by side)."""
    x = images.detach().clamp(0, 1).permute(2, 0, 3, 1)  # [H, N, W, 4]
    H, N, W, C = x.shape
    return (x.reshape(H, N * W, C).cpu().numpy() * 255).round().astype(np.uint8)


def diff_image(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """|actual - expected| x AMPLIFY as RGB: the colour channels, then alpha in grey."""
    d = np.abs(actual.astype(np.int32) - expected.astype(np.int32)) * AMPLIFY
    d = np.clip(d, 0, 255).astype(np.uint8)
    alpha = np.repeat(d[..., 3:4], 3, axis=-1)
    return np.concatenate([d[..., :3], alpha], axis=1)


# the 256 x 256 cases take minutes on the pure-PyTorch reference (used when the native CPU
# backend cannot be built); test_golden_matches_reference_backend checks windows of them there
SLOW_ON_REFERENCE = {"spot_textured", "spot_blurry"}


@pytest.mark.parametrize("name", list(CASES))
def test_golden(name):
    if name in SLOW_ON_REFERENCE:
        from softras import _native

        if not _native.available("cpu"):
            pytest.skip("the native CPU backend is unavailable: too slow on the reference backend")
    actual = to_uint8(render(name))
    path = GOLDEN / f"{name}.png"
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        iio.imwrite(path, actual)
        pytest.skip(f"golden image rewritten: {path} (look at it before committing)")
    assert path.exists(), f"{path} is missing: generate it with SOFTRAS_UPDATE_GOLDEN=1"
    expected = iio.imread(path)
    assert expected.shape == actual.shape, (
        f"{name}: shape {actual.shape} differs from the golden {expected.shape} "
        "(regenerate with SOFTRAS_UPDATE_GOLDEN=1 if intended)"
    )
    diff = np.abs(actual.astype(np.int32) - expected.astype(np.int32))
    max_diff, mean_diff = int(diff.max()), float(diff.mean())
    if max_diff <= MAX_DIFF and mean_diff <= MEAN_DIFF:
        return
    DIFF_DIR.mkdir(parents=True, exist_ok=True)
    actual_path = DIFF_DIR / f"{name}_actual.png"
    diff_path = DIFF_DIR / f"{name}_diff.png"
    iio.imwrite(actual_path, actual)
    iio.imwrite(diff_path, diff_image(actual, expected))
    changed = int((diff.max(-1) > MAX_DIFF).sum())
    pytest.fail(
        f"{name}: differs from {path.relative_to(ROOT)}: max abs diff {max_diff}/255 (allowed {MAX_DIFF}), "
        f"mean {mean_diff:.3f}/255 (allowed {MEAN_DIFF}), {changed} pixels off by more than {MAX_DIFF}/255. "
        f"See {actual_path} and {diff_path} (difference x{AMPLIFY}); if the change is intended, "
        "regenerate the references with SOFTRAS_UPDATE_GOLDEN=1."
    )


def test_diff_image_and_quantization():
    """The helpers themselves: views side by side, rounding, and the amplified difference."""
    img = torch.zeros(2, 4, 3, 5)
    img[1, 0] = 1.0
    img[0, 3, 0, 0] = 0.5
    q = to_uint8(img)
    assert q.shape == (3, 10, 4) and q.dtype == np.uint8
    assert q[0, 0, 3] == 128 and q[0, 5, 0] == 255 and q[0, 4, 0] == 0
    other = q.copy()
    other[1, 1, 2] += 3
    d = diff_image(other, q)
    assert d.shape == (3, 20, 3)
    assert d[1, 1, 2] == 3 * AMPLIFY and int(d.sum()) == 3 * AMPLIFY


@pytest.mark.parametrize("name", list(CASES))
def test_golden_matches_reference_backend(name):
    """Windows of each golden image equal the pure-PyTorch reference's render of the same pixels
    (float64) within the golden tolerance: max 2/255, mean 0.2/255 after rounding to uint8.
    (With SOFTRAS_UPDATE_GOLDEN set this checks the freshly written images.)"""
    path = GOLDEN / f"{name}.png"
    assert path.exists(), f"{path} is missing: generate it with SOFTRAS_UPDATE_GOLDEN=1"
    expected = iio.imread(path)
    H = expected.shape[0]
    for view, top, left, size in REFERENCE_WINDOWS[name]:
        window = expected[top : top + size, view * H + left : view * H + left + size]
        assert 0 < int((window[..., 3] > 127).sum()) < size * size  # a silhouette edge crosses it
        actual = to_uint8(render_window_on_reference(name, view, top, left, size))
        diff = np.abs(actual.astype(np.int32) - window.astype(np.int32))
        where = f"{name} view {view} rows {top}:{top + size} columns {left}:{left + size}"
        assert int(diff.max()) <= MAX_DIFF, f"{where}: max abs diff {int(diff.max())}/255 from the reference"
        assert float(diff.mean()) <= MEAN_DIFF, f"{where}: mean abs diff {float(diff.mean()):.3f}/255"
