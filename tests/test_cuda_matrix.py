"""The CUDA backend against the native CPU backend, on the CPU test matrix (skipped without a
CUDA device): every mode combination in float32 and float64 with R in {1, 3}, multi-tile and
unbalanced bins with several meshes, packed batches (empty meshes, each mesh alone),
fragments (face index equal, depth to rounding), B = 0 and F = 0, non-contiguous inputs, a
launch of more than 65535 blocks, gradcheck in float64, and the property tests of
test_rasterize_properties.py run on the GPU with their own assertions.

The scenes, seeds and settings are those of the CPU tests (imported, not copied).
"""

from __future__ import annotations

import itertools

import pytest
import test_rasterize_properties as props
import torch
from conftest import (
    assert_forward_close,
    assert_grad_close,
    cuda_only,
    random_like,
    random_scene,
    render_packed_with_grads,
    render_with_grads,
)
from test_rasterize_backends import ALL_MODES, PACKED_CASES, _mode_id, _packed_scene, _settings_kw

from softras.functional import Fragments, RasterSettings, soft_rasterize, soft_rasterize_packed

# CUDA against CPU: the same expressions, so float64 agrees to rounding; float32 to the
# tolerances of the CPU against the reference (the GPU contracts a*b+c into one rounding)
TOL = {torch.float32: dict(atol=1e-5, rtol=1e-4, depth=1e-6), torch.float64: dict(atol=1e-11, rtol=1e-8, depth=1e-12)}


def _to(x, device):
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, Fragments):
        return Fragments(*(t.to(device) for t in x))
    if isinstance(x, tuple):
        return tuple(_to(t, device) for t in x)
    return x


def _compare(cpu, cuda, dtype, what):
    """cpu, cuda: (rgba, grad face_vertices, grad textures) of render_with_grads."""
    tol = TOL[dtype]
    out, g_fv, g_tex = (t.cpu() for t in cuda)
    assert_forward_close(out, cpu[0], atol=tol["atol"], what=f"{what} rgba")
    assert_grad_close(g_fv, cpu[1], rtol=tol["rtol"], what=f"{what} grad face_vertices")
    assert_grad_close(g_tex, cpu[2], rtol=tol["rtol"], what=f"{what} grad textures")


def _compare_fragments(frag_cpu, frag_cuda, dtype, what):
    assert torch.equal(frag_cuda.face_index.cpu(), frag_cpu.face_index), f"{what}: face_index differs"
    torch.testing.assert_close(frag_cuda.depth.cpu(), frag_cpu.depth, rtol=TOL[dtype]["depth"], atol=0)


def _both(fv, tex, **kw):
    """render_with_grads and fragments on the CPU and on CUDA (same inputs, same upstream)."""
    cpu = render_with_grads("cpu", fv, tex, **kw)
    cuda = render_with_grads("cuda", fv.cuda(), tex.cuda(), **kw)
    _, frag_cpu = soft_rasterize(fv, tex, backend="cpu", return_fragments=True, **kw)
    _, frag_cuda = soft_rasterize(fv.cuda(), tex.cuda(), backend="cuda", return_fragments=True, **kw)
    return cpu, cuda, frag_cpu, frag_cuda


# every mode combination, surface textures with R = 1 and R = 3
MATRIX = [(m, R) for m in ALL_MODES for R in ((1, 3) if m[3] == "surface" else (1,))]


@cuda_only
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("mode,R", MATRIX, ids=[f"{_mode_id(m)}-R{R}" for m, R in MATRIX])
def test_cuda_matches_cpu_every_mode(mode, R, dtype):
    """The CPU test scenes (2 meshes of 12 faces, degenerate and behind-camera faces), on an
    image of 3 x 3 CUDA tiles (16 pixels) with partial tiles."""
    fv, tex = random_scene(2, 12, mode[3], R, dtype, seed=7 + ALL_MODES.index(mode) % 5)
    kw = _settings_kw(*mode, image_size=(37, 45))
    cpu, cuda, frag_cpu, frag_cuda = _both(fv, tex, **kw)
    _compare(cpu, cuda, dtype, _mode_id(mode))
    _compare_fragments(frag_cpu, frag_cuda, dtype, _mode_id(mode))
    assert bool((frag_cpu.face_index >= 0).any())  # not vacuous


@cuda_only
@pytest.mark.parametrize("dist_func", ["euclidean", "barycentric", "hard"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_cuda_unbalanced_bins_several_meshes(dist_func, dtype):
    """Per mesh: one face over every bin, 150 tiny faces crowding one corner tile, 60 spread
    out; 3 meshes (different corners), 70 x 90 pixels (5 x 6 CUDA tiles, partial ones)."""
    gen = torch.Generator().manual_seed(99)
    meshes = []
    for b, corner_xy in enumerate([(-0.85, 0.85), (0.8, -0.8), (0.0, 0.0)]):
        full = torch.tensor([[[-5.0, -5.0, 5.0], [0.0, 9.0, 5.0], [5.0, -5.0, 5.0]]], dtype=torch.float64)
        corner = props._small_triangles(150, gen, size=0.03, xy=0.1, z=(1.5, 4.0))
        corner[..., :2] += torch.tensor(corner_xy, dtype=torch.float64)
        spread = props._small_triangles(60, gen, size=0.1, z=(1.5, 4.0))
        meshes.append(torch.cat([corner[: 70 + 10 * b], full, corner[70 + 10 * b :], spread]))
    fv = torch.stack(meshes).to(dtype)
    tex = torch.rand(3, fv.shape[1], 3, 3, generator=gen, dtype=torch.float64).to(dtype)
    kw = dict(image_size=(70, 90), sigma_val=1e-4, gamma_val=1e-2, far=10.0, dist_func=dist_func, texture_type="vertex")
    cpu, cuda, frag_cpu, frag_cuda = _both(fv, tex, **kw)
    _compare(cpu, cuda, dtype, "unbalanced")
    _compare_fragments(frag_cpu, frag_cuda, dtype, "unbalanced")


@cuda_only
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("counts,tex_kind,R,rgb,alpha", PACKED_CASES)
def test_cuda_packed_matches_cpu_and_single_meshes(counts, tex_kind, R, rgb, alpha, dtype):
    fv, tex, first = _packed_scene(counts, tex_kind, R, dtype, seed=sum(counts) + len(counts))
    kw = _settings_kw("euclidean", rgb, alpha, tex_kind, False, image_size=(35, 40))
    s = RasterSettings(**kw)
    cpu = render_packed_with_grads("cpu", fv, tex, first, s)
    cuda = render_packed_with_grads("cuda", fv.cuda(), tex.cuda(), first.cuda(), s)
    _compare(cpu, cuda, dtype, "packed")
    _, frag_cpu = soft_rasterize_packed(fv, tex, first, s, backend="cpu", return_fragments=True)
    _, frag_cuda = soft_rasterize_packed(fv.cuda(), tex.cuda(), first.cuda(), s, backend="cuda", return_fragments=True)
    _compare_fragments(frag_cpu, frag_cuda, dtype, "packed")
    # each mesh alone on CUDA: the packed image and gradients (with the same upstream)
    upstream = random_like(cpu[0], 4321).cuda()
    bounds = first.tolist() + [fv.shape[0]]
    for b in range(len(counts)):
        lo, hi = bounds[b], bounds[b + 1]
        f1 = fv[lo:hi][None].cuda().requires_grad_(True)
        t1 = tex[lo:hi][None].cuda().requires_grad_(True)
        alone = soft_rasterize(f1, t1, backend="cuda", **kw)
        assert_forward_close(alone[0].detach().cpu(), cpu[0][b], atol=TOL[dtype]["atol"], what=f"mesh {b} alone")
        if hi == lo or not alone.requires_grad:
            continue
        ga, gt = torch.autograd.grad(alone, [f1, t1], upstream[b : b + 1], allow_unused=True)
        if ga is not None:
            assert_grad_close(ga[0].cpu(), cpu[1][lo:hi], rtol=TOL[dtype]["rtol"], what=f"mesh {b} grad fv")
        if gt is not None:
            assert_grad_close(gt[0].cpu(), cpu[2][lo:hi], rtol=TOL[dtype]["rtol"], what=f"mesh {b} grad tex")


@cuda_only
@pytest.mark.parametrize("B,F", [(0, 5), (2, 0), (0, 0)])
def test_cuda_empty_batch_and_no_faces(B, F):
    fv = torch.zeros(B, F, 3, 3)
    tex = torch.rand(B, F, 1, 3)
    kw = dict(image_size=(20, 24), background_color=(0.2, 0.5, 0.9))
    cpu = render_with_grads("cpu", fv, tex, **kw)
    cuda = render_with_grads("cuda", fv.cuda(), tex.cuda(), **kw)
    assert cuda[0].shape == (B, 4, 20, 24)
    _compare(cpu, cuda, torch.float32, f"B={B} F={F}")
    if B:  # background colour, alpha 0 (by hand)
        expected = torch.tensor([0.2, 0.5, 0.9, 0.0])[None, :, None, None].expand(B, 4, 20, 24)
        torch.testing.assert_close(cuda[0].cpu(), expected, rtol=0, atol=1e-7)


@cuda_only
def test_cuda_non_contiguous_inputs():
    fv, tex = random_scene(4, 12, "surface", 3, torch.float64, seed=31)
    kw = _settings_kw("euclidean", "softmax", "prod", "surface", True, image_size=(33, 20))
    fv_nc = fv.transpose(0, 1).contiguous().transpose(0, 1)[::2]  # strided batch
    tex_nc = tex.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)[::2]
    assert not fv_nc.is_contiguous() and not tex_nc.is_contiguous()
    cpu = render_with_grads("cpu", fv[::2].contiguous(), tex[::2].contiguous(), **kw)
    fvc = fv.cuda().transpose(0, 1).contiguous().transpose(0, 1)[::2]
    texc = tex.cuda().permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)[::2]
    assert not fvc.is_contiguous() and not texc.is_contiguous()
    cuda = render_with_grads("cuda", fvc, texc, **kw)
    _compare(cpu, cuda, torch.float64, "non-contiguous")


@cuda_only
def test_cuda_more_than_65535_blocks():
    """300 meshes x 16 x 16 tiles = 76,800 blocks (beyond a 16-bit grid dimension): sampled
    meshes agree with the CPU rendering them alone."""
    B = 300
    fv, tex = random_scene(B, 6, "vertex", 1, torch.float32, seed=5, special=False)
    kw = dict(image_size=256, sigma_val=1e-4, texture_type="vertex", far=10.0)
    out, frag = soft_rasterize(fv.cuda(), tex.cuda(), backend="cuda", return_fragments=True, **kw)
    assert out.shape == (B, 4, 256, 256)
    for b in (0, 137, B - 1):
        ref, rfrag = soft_rasterize(fv[b : b + 1], tex[b : b + 1], backend="cpu", return_fragments=True, **kw)
        assert_forward_close(out[b : b + 1].cpu(), ref, atol=1e-5, what=f"mesh {b}")
        assert torch.equal(frag.face_index[b : b + 1].cpu(), rfrag.face_index)
        assert bool((rfrag.face_index >= 0).any())


GRADCHECK_MODES = [m for m in ALL_MODES if m[0] != "hard" and m[2] != "hard" and m[4]]


@cuda_only
@pytest.mark.parametrize("mode", GRADCHECK_MODES, ids=_mode_id)
def test_cuda_gradcheck(mode):
    R = 2 if mode[3] == "surface" else 1
    fv, tex = random_scene(1, 3, mode[3], R, torch.float64, seed=11, special=False, xy=1.0)
    kw = {**_settings_kw(*mode, image_size=(6, 7)), "far": 8.0}
    inputs = (fv.cuda().requires_grad_(True), tex.cuda().requires_grad_(True))
    assert torch.autograd.gradcheck(
        lambda f, t: soft_rasterize(f, t, backend="cuda", **kw), inputs, eps=1e-6, atol=1e-5, rtol=1e-3
    )


@cuda_only
def test_cuda_gradcheck_packed():
    fv, tex, first = _packed_scene((2, 0, 3), "vertex", 1, torch.float64, seed=12)
    s = RasterSettings(**{**_settings_kw("euclidean", "softmax", "sum", "vertex", True, (6, 7)), "far": 8.0})
    inputs = (fv.cuda().requires_grad_(True), tex.cuda().requires_grad_(True))
    firstc = first.cuda()
    assert torch.autograd.gradcheck(
        lambda f, t: soft_rasterize_packed(f, t, firstc, s, backend="cuda"), inputs, eps=1e-6, atol=1e-5, rtol=1e-3
    )


@cuda_only
def test_cuda_backward_is_reported_non_deterministic():
    fv, tex = random_scene(1, 6, "vertex", 1, torch.float32, seed=3)
    fv = fv.cuda().requires_grad_(True)
    old, old_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        out = soft_rasterize(fv, tex.cuda(), backend="cuda", image_size=16, texture_type="vertex")
        with pytest.raises(RuntimeError, match="soft_rasterize backward"):
            out.sum().backward()
    finally:
        torch.use_deterministic_algorithms(old, warn_only=old_warn)


@cuda_only
def test_cuda_rejects_bad_mesh_first_face_in_the_extension():
    """The extension checks what the Python wrapper checks (for direct callers)."""
    from softras import _native

    module = _native.load("cuda")
    fv = torch.zeros(4, 3, 3, device="cuda")
    tex = torch.zeros(4, 1, 3, device="cuda")
    s = RasterSettings(image_size=8)
    for first, num_faces, match in [
        ([0, 3, 2], 4, "mesh_first_face"),
        ([0, 5], 4, "mesh_first_face"),
        ([0, 2], 3, "num_faces"),
    ]:
        p = _native._params(module, s, len(first), num_faces, 1)
        with pytest.raises(ValueError, match=match):
            module.forward(fv, tex, torch.tensor(first, device="cuda"), p)


# ---------------------------------------------------------------------------------------
# the property tests of test_rasterize_properties.py, their "cpu" case run on CUDA


def _via_cuda(fn):
    """fn (soft_rasterize or soft_rasterize_packed) with backend 'cpu' rerouted to CUDA:
    inputs moved there, outputs back (both differentiable, so gradients reach the callers'
    CPU tensors)."""

    def wrapped(*args, backend="auto", **kw):
        if backend != "cpu":
            return fn(*args, backend=backend, **kw)
        args = [_to(a, "cuda") for a in args]
        kw = {k: _to(v, "cuda") for k, v in kw.items()}
        return _to(fn(*args, backend="cuda", **kw), "cpu")

    return wrapped


def _property_cases():
    cases = []
    for name in sorted(dir(props)):
        fn = getattr(props, name)
        marks = [m for m in getattr(fn, "pytestmark", []) if m.name == "parametrize"]
        names = [m.args[0].split(",") if isinstance(m.args[0], str) else list(m.args[0]) for m in marks]
        if not name.startswith("test_") or not any("backend" in n for n in names):
            continue
        values = [[v if len(n) > 1 else (v,) for v in m.args[1]] for n, m in zip(names, marks)]
        for combo in itertools.product(*values):
            kwargs = {k.strip(): v for n, vs in zip(names, combo) for k, v in zip(n, vs)}
            if kwargs["backend"] == "cpu":
                cases.append(pytest.param(fn, kwargs, id=f"{name}-" + "-".join(str(v) for v in kwargs.values())))
    return cases


@cuda_only
@pytest.mark.parametrize("test,kwargs", _property_cases())
def test_cuda_properties(test, kwargs, monkeypatch):
    import conftest

    for module in (props, conftest):
        for name in ("soft_rasterize", "soft_rasterize_packed"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, _via_cuda(getattr(module, name)))
    test(**kwargs)


def test_property_cases_are_collected():
    """The rerouting above finds the property tests (a rename there would silently drop them)."""
    names = {c.values[0].__name__ for c in _property_cases()}
    assert len(names) >= 8, sorted(names)
    assert "test_pixel_on_an_edge_has_probability_one_half" in names
