"""The CUDA backend against the pure-PyTorch reference (skipped without a CUDA device), and
a compile-only check of the CUDA sources (skipped without nvcc)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import (
    GAMMA,
    SIGMA,
    assert_forward_close,
    assert_grad_close,
    random_faces,
    random_like,
    random_scene,
    random_textures,
    render_with_grads,
)

from softras.functional import RasterSettings, soft_rasterize, soft_rasterize_packed

ROOT = Path(__file__).resolve().parents[1]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

# a representative subset of the modes: every dist / rgb / alpha / texture value appears
MODES = [
    ("euclidean", "softmax", "prod", "surface", True),
    ("euclidean", "softmax", "sum", "vertex", False),
    ("euclidean", "hard", "prod", "vertex", True),
    ("barycentric", "softmax", "prod", "vertex", True),
    ("barycentric", "hard", "sum", "surface", False),
    ("hard", "softmax", "hard", "surface", True),
    ("hard", "hard", "hard", "vertex", False),
    ("euclidean", "softmax", "hard", "surface", False),
]


def _kw(dist, rgb, alpha, tex, fill, image_size=(11, 16)):
    return dict(
        image_size=image_size,
        near=1.0,
        far=5.0,
        sigma_val=SIGMA,
        gamma_val=GAMMA,
        dist_func=dist,
        aggr_func_rgb=rgb,
        aggr_func_alpha=alpha,
        texture_type=tex,
        fill_back=fill,
        background_color=(0.2, 0.5, 0.9),
    )


def _cuda_grads(fv, tex, **kw):
    out, g_fv, g_tex = render_with_grads("cuda", fv.cuda(), tex.cuda(), **kw)
    return out.cpu(), g_fv.cpu(), g_tex.cpu()


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", MODES, ids=lambda m: "-".join(map(str, m)))
def test_cuda_matches_reference(mode, dtype):
    R = 3 if mode[3] == "surface" else 1
    fv, tex = random_scene(2, 12, mode[3], R, dtype, seed=7 + MODES.index(mode))
    kw = _kw(*mode)
    out, g_fv, g_tex = _cuda_grads(fv, tex, **kw)
    ref, r_fv, r_tex = render_with_grads("reference", fv, tex, **kw)
    f32 = dtype == torch.float32
    assert_forward_close(out, ref, atol=1e-5 if f32 else 1e-10, what="rgba")
    assert_grad_close(g_fv, r_fv, rtol=1e-4 if f32 else 1e-7, what="grad face_vertices")
    assert_grad_close(g_tex, r_tex, rtol=1e-4 if f32 else 1e-7, what="grad textures")


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("sigma", [1e-5, 1e-4])
def test_cuda_matches_reference_many_faces(sigma):
    gen = torch.Generator().manual_seed(2024)
    centre = (torch.rand(300, 1, 2, generator=gen) * 2 - 1) * 1.05
    offs = (torch.rand(300, 3, 2, generator=gen) * 2 - 1) * 0.08
    z = 1.5 + 4.5 * torch.rand(300, 3, 1, generator=gen)
    fv = torch.cat([centre + offs, z], dim=-1)[None]
    tex = torch.rand(1, 300, 4, 3, generator=gen)
    kw = dict(image_size=(48, 64), sigma_val=sigma, gamma_val=1e-2, far=10.0, fill_back=False)
    out, g_fv, g_tex = _cuda_grads(fv, tex, **kw)
    ref, r_fv, r_tex = render_with_grads("reference", fv, tex, **kw)
    assert_forward_close(out, ref, atol=1e-5, what="rgba")
    assert_grad_close(g_fv, r_fv, what="grad face_vertices")
    assert_grad_close(g_tex, r_tex, what="grad textures")


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_packed_and_fragments(dtype):
    gen = torch.Generator().manual_seed(5)
    counts = (0, 3, 11)
    fv = torch.cat([random_faces(n, gen, special=n >= 6) for n in counts]).to(dtype)
    tex = torch.cat([random_textures(1, n, "vertex", 1, gen)[0] for n in counts]).to(dtype)
    first = torch.tensor([0, 0, 3])
    s = RasterSettings(**_kw("euclidean", "softmax", "prod", "vertex", False, image_size=(12, 16)))
    fvc = fv.cuda().requires_grad_(True)
    texc = tex.cuda().requires_grad_(True)
    out, frag = soft_rasterize_packed(fvc, texc, first.cuda(), s, backend="cuda", return_fragments=True)
    upstream = random_like(out, 9)
    g_fv, g_tex = torch.autograd.grad(out, [fvc, texc], upstream.cuda())
    fvr = fv.clone().requires_grad_(True)
    texr = tex.clone().requires_grad_(True)
    ref, rfrag = soft_rasterize_packed(fvr, texr, first, s, backend="reference", return_fragments=True)
    r_fv, r_tex = torch.autograd.grad(ref, [fvr, texr], upstream)
    f32 = dtype == torch.float32
    assert_forward_close(out.detach().cpu(), ref.detach(), atol=1e-5 if f32 else 1e-10, what="packed rgba")
    assert_grad_close(g_fv.cpu(), r_fv, rtol=1e-4 if f32 else 1e-7, what="packed grad face_vertices")
    assert_grad_close(g_tex.cpu(), r_tex, rtol=1e-4 if f32 else 1e-7, what="packed grad textures")
    assert torch.equal(frag.face_index.cpu(), rfrag.face_index)
    torch.testing.assert_close(frag.depth.cpu(), rfrag.depth, rtol=1e-6 if f32 else 1e-12, atol=0)


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("mode", MODES[:4], ids=lambda m: "-".join(map(str, m)))
def test_cuda_gradcheck(mode):
    dist, rgb, alpha, tex_kind, fill = mode
    if dist == "hard":
        pytest.skip("no gradient w.r.t. positions through the hard distance")
    R = 2 if tex_kind == "surface" else 1
    fv, tex = random_scene(1, 3, tex_kind, R, torch.float64, seed=11, special=False, xy=1.0)
    kw = _kw(dist, rgb, "sum" if alpha == "hard" else alpha, tex_kind, fill, image_size=(6, 7))
    kw["far"] = 8.0

    def fn(f, t):
        return soft_rasterize(f, t, backend="cuda", **kw)

    inputs = (fv.cuda().requires_grad_(True), tex.cuda().requires_grad_(True))
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)


@needs_cuda
@pytest.mark.cuda
def test_cuda_deterministic_across_runs():
    fv, tex = random_scene(3, 20, "surface", 2, torch.float32, seed=8)
    kw = dict(image_size=(40, 44), sigma_val=1e-3, gamma_val=1e-2, far=8.0)
    a = _cuda_grads(fv, tex, **kw)
    b = _cuda_grads(fv, tex, **kw)
    assert torch.equal(a[0], b[0])
    # gradients may be accumulated with atomics: equal to rounding, not necessarily bitwise
    for x, y in zip(a[1:], b[1:]):
        assert_grad_close(x, y, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not found")
def test_cuda_sources_compile():
    """Compile-only check of the CUDA sources (no GPU needed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-m", "softras.build", "--cuda-compile-check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def test_cuda_modes_cover_every_option():
    """The subset above uses every value of every mode at least once."""
    for k, values in enumerate(
        [
            ("euclidean", "barycentric", "hard"),
            ("softmax", "hard"),
            ("prod", "sum", "hard"),
            ("surface", "vertex"),
            (True, False),
        ]
    ):
        assert {m[k] for m in MODES} == set(values)
