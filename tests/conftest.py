"""Shared helpers of the rasterizer tests: random scenes, rendering with gradients, comparisons.

The pure-PyTorch reference backend (``backend="reference"``) is the oracle; the native
backends are compared against it. Every scene is built from a fixed seed.
"""

from __future__ import annotations

import math

import pytest
import torch

from softras.functional import soft_rasterize, soft_rasterize_packed

# Soft enough that the soft regions cover many pixels of the tiny test images
# (with the default sigma 1e-5 almost nothing is soft at ~10 pixels across).
SIGMA = 2e-2
GAMMA = 1e-1


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _signed_area(tri: torch.Tensor) -> torch.Tensor:
    """(x1-x0)(y2-y0) - (y1-y0)(x2-x0) of a [..., 3, >=2] triangle (negative: front, clockwise)."""
    return (tri[..., 1, 0] - tri[..., 0, 0]) * (tri[..., 2, 1] - tri[..., 0, 1]) - (tri[..., 1, 1] - tri[..., 0, 1]) * (
        tri[..., 2, 0] - tri[..., 0, 0]
    )


def random_faces(
    F: int,
    gen: torch.Generator,
    special: bool = True,
    xy: float = 1.2,
    z_range: tuple[float, float] = (1.5, 6.0),
    size: tuple[float, float] = (0.35, 0.9),
) -> torch.Tensor:
    """Face vertices [F, 3, 3] (float64) of one random mesh.

    Faces are random triangles with x, y in [-xy, xy] and z in ``z_range``; they overlap and
    occlude one another. Face 0 is clockwise (front), face 1 counter-clockwise (back), face 2
    (if F > 2) a shrunken copy of face 0 in front of it (it occludes face 0). With
    ``special`` (needs F >= 6): one zero-area face (two vertices equal in x, y), one face fully
    behind the camera (z = -2) and one crossing the camera plane (mixed-sign z).
    """
    lo, hi = size
    centre = (torch.rand(F, 1, 2, generator=gen, dtype=torch.float64) * 2 - 1) * (xy - hi / 2)
    scale = lo + (hi - lo) * torch.rand(F, 1, 1, generator=gen, dtype=torch.float64)
    offsets = (torch.rand(F, 3, 2, generator=gen, dtype=torch.float64) * 2 - 1) * scale
    # keep triangles reasonably fat: spread the corners around the centre
    angles = torch.tensor([0.0, 2.1, 4.2], dtype=torch.float64) + 0.6 * torch.rand(
        F, 1, generator=gen, dtype=torch.float64
    )
    ring = torch.stack([angles.cos(), angles.sin()], dim=-1) * scale  # [F, 3, 2]
    pts = (centre + 0.75 * ring + 0.35 * offsets).clamp(-xy, xy)
    z = z_range[0] + (z_range[1] - z_range[0]) * torch.rand(F, 3, 1, generator=gen, dtype=torch.float64)
    fv = torch.cat([pts, z], dim=-1)
    # random winding, then force both windings to be present
    flip = torch.rand(F, generator=gen) < 0.5
    fv[flip] = fv[flip][:, [0, 2, 1]]
    if F > 0 and _signed_area(fv[0]) > 0:
        fv[0] = fv[0][[0, 2, 1]]
    if F > 1 and _signed_area(fv[1]) < 0:
        fv[1] = fv[1][[0, 2, 1]]
    if F > 2:  # an occluder of face 0: same place, shrunk, nearer
        c = fv[0, :, :2].mean(0)
        fv[2, :, :2] = c + 0.7 * (fv[0, :, :2] - c) + 0.05
        fv[2, :, 2] = fv[0, :, 2].min() * 0.6
    if special:
        assert F >= 6, "special faces need F >= 6"
        d, b, c = F // 3, F // 2, F - 1
        fv[d, 1, :2] = fv[d, 0, :2]  # zero area: two vertices equal in x, y
        fv[b, :, 2] = -2.0  # fully behind the camera
        fv[c, :, 2] = torch.tensor([2.0, -1.0, 3.0], dtype=torch.float64)  # crosses the camera plane
    return fv


def random_textures(B: int, F: int, tex_kind: str, R: int, gen: torch.Generator) -> torch.Tensor:
    """Random colours in [0, 1]: surface [B, F, R*R, 3] or vertex [B, F, 3, 3] (float64)."""
    rows = R * R if tex_kind == "surface" else 3
    return torch.rand(B, F, rows, 3, generator=gen, dtype=torch.float64)


def random_scene(
    B: int,
    F: int,
    tex_kind: str = "surface",
    R: int = 1,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    special: bool = True,
    **kw,
) -> tuple[torch.Tensor, torch.Tensor]:
    """face_vertices [B, F, 3, 3] and textures of B random meshes (see random_faces)."""
    gen = _generator(seed)
    fv = torch.stack([random_faces(F, gen, special=special, **kw) for _ in range(B)])
    tex = random_textures(B, F, tex_kind, R, gen)
    return fv.to(dtype), tex.to(dtype)


def random_like(t: torch.Tensor, seed: int) -> torch.Tensor:
    """A standard-normal tensor shaped, typed and placed like t (an upstream gradient), from a
    fixed seed: drawn on the CPU, so that every device gets the same values."""
    return torch.randn(t.shape, generator=_generator(seed), dtype=torch.float64).to(dtype=t.dtype, device=t.device)


def _grads(out: torch.Tensor, inputs: list[torch.Tensor], grad_out: torch.Tensor) -> list[torch.Tensor]:
    if not out.requires_grad:
        return [torch.zeros_like(x) for x in inputs]
    gs = torch.autograd.grad(out, inputs, grad_out, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, gs)]


def render_with_grads(backend: str, fv: torch.Tensor, tex: torch.Tensor, grad_seed: int = 1234, **kw):
    """RGBA of ``soft_rasterize`` and the gradients of <RGBA, G> w.r.t. (face_vertices, textures)
    for a random upstream gradient G on all four channels (None grads count as zeros)."""
    fv = fv.detach().clone().requires_grad_(True)
    tex = tex.detach().clone().requires_grad_(True)
    out = soft_rasterize(fv, tex, backend=backend, **kw)
    g_fv, g_tex = _grads(out, [fv, tex], random_like(out, grad_seed))
    return out.detach(), g_fv, g_tex


def render_packed_with_grads(backend: str, fv, tex, first, settings, grad_seed: int = 4321):
    fv = fv.detach().clone().requires_grad_(True)
    tex = tex.detach().clone().requires_grad_(True)
    out = soft_rasterize_packed(fv, tex, first, settings, backend=backend)
    g_fv, g_tex = _grads(out, [fv, tex], random_like(out, grad_seed))
    return out.detach(), g_fv, g_tex


def assert_grad_close(
    actual: torch.Tensor,
    expected: torch.Tensor | None,
    rtol: float = 1e-4,
    what: str = "",
    atol_factor: float | None = None,
):
    """Gradients agree: rtol (1e-4) and atol = atol_factor * max|expected|, where atol_factor
    defaults to rtol / 10 (1e-5). A None expected gradient counts as zeros."""
    if atol_factor is None:
        atol_factor = rtol / 10
    if expected is None:
        expected = torch.zeros_like(actual)
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(
        actual, expected, rtol=rtol, atol=atol_factor * (scale + 1e-12), msg=lambda m: f"{what}: {m}"
    )


def assert_forward_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5, what: str = ""):
    """Images agree to ``atol`` in max abs difference (and are finite)."""
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    assert torch.isfinite(expected).all(), f"{what}: the reference is not finite"
    assert torch.isfinite(actual).all(), f"{what}: not finite"
    diff = float((actual - expected).abs().max()) if actual.numel() else 0.0
    assert diff <= atol, f"{what}: max abs diff {diff:.3e} > {atol:.1e}"


def pixel_centre(r: int, c: int, H: int, W: int) -> tuple[float, float]:
    """NDC centre of pixel (row r, column c); row 0 is the top."""
    return (2 * c + 1 - W) / W, (2 * (H - 1 - r) + 1 - H) / H


def sigmoid(a: float) -> float:
    return 1 / (1 + math.exp(-a)) if a >= 0 else math.exp(a) / (1 + math.exp(a))


HAS_CUDA = torch.cuda.is_available()


def cuda_only(fn):
    """Marks a test as CUDA-only: the ``cuda`` marker, and a visible skip without a device."""
    return pytest.mark.cuda(
        pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device (torch.cuda.is_available() is False)")(fn)
    )


# device parameter of tests that run on both: the CUDA case is marked and skipped without a device
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")]),
]


@pytest.fixture
def restore_threads():
    """Restores torch's intra-op thread count after the test."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
