"""The native CPU backend against the pure-PyTorch reference (the oracle).

Forward images, gradients w.r.t. face vertices and textures, packed heterogeneous batches
and fragments (nearest depth and face index), over every combination of modes.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import (
    GAMMA,
    SIGMA,
    assert_forward_close,
    assert_grad_close,
    pixel_centre,
    random_faces,
    random_like,
    random_scene,
    random_textures,
    render_packed_with_grads,
    render_with_grads,
)

from softras.functional import RasterSettings, soft_rasterize, soft_rasterize_packed

DIST = ["euclidean", "barycentric", "hard"]
RGB = ["softmax", "hard"]
ALPHA = ["prod", "sum", "hard"]
TEX = ["surface", "vertex"]
FILL = [True, False]

ALL_MODES = list(itertools.product(DIST, RGB, ALPHA, TEX, FILL))


def _mode_id(mode) -> str:
    dist, rgb, alpha, tex, fill = mode
    return f"{dist}-{rgb}-{alpha}-{tex}-{'double' if fill else 'single'}"


def _texture_res(mode) -> int:
    """R for surface textures: alternate 1 and 3 over the combinations so both are covered
    with every dist/rgb/alpha mode."""
    return 1 + 2 * (ALL_MODES.index(mode) // 2 % 2) if mode[3] == "surface" else 1


def _settings_kw(dist, rgb, alpha, tex, fill, image_size=(11, 16)):
    # near/far such that some faces fall (partly) outside the depth range: z goes up to 6
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


@pytest.mark.parametrize("mode", ALL_MODES, ids=_mode_id)
def test_cpu_matches_reference_float32(mode):
    dist, rgb, alpha, tex_kind, fill = mode
    R = _texture_res(mode)
    fv, tex = random_scene(2, 12, tex_kind, R, torch.float32, seed=7 + ALL_MODES.index(mode) % 5)
    kw = _settings_kw(*mode)
    out, g_fv, g_tex = render_with_grads("cpu", fv, tex, **kw)
    ref, r_fv, r_tex = render_with_grads("reference", fv, tex, **kw)
    assert out.shape == (2, 4, 11, 16)
    assert_forward_close(out, ref, atol=1e-5, what="rgba")
    assert_grad_close(g_fv, r_fv, what="grad face_vertices")
    assert_grad_close(g_tex, r_tex, what="grad textures")
    # the comparison is not vacuous: alpha is partly soft, some pixels are background
    if dist != "hard" and alpha != "hard":
        a = ref[:, 3]
        assert bool(((a > 0.01) & (a < 0.99)).any())


@pytest.mark.parametrize("mode", ALL_MODES, ids=_mode_id)
def test_cpu_matches_reference_float64(mode):
    """In float64 the two evaluate the same expressions: agreement to rounding."""
    dist, rgb, alpha, tex_kind, fill = mode
    R = _texture_res(mode)
    fv, tex = random_scene(3, 8, tex_kind, R, torch.float64, seed=100 + ALL_MODES.index(mode) % 3)
    kw = _settings_kw(*mode, image_size=(13, 9))
    out, g_fv, g_tex = render_with_grads("cpu", fv, tex, **kw)
    ref, r_fv, r_tex = render_with_grads("reference", fv, tex, **kw)
    assert_forward_close(out, ref, atol=1e-10, what="rgba")
    assert_grad_close(g_fv, r_fv, rtol=1e-7, what="grad face_vertices")
    assert_grad_close(g_tex, r_tex, rtol=1e-7, what="grad textures")


def test_modes_change_the_result():
    """Sanity of the scene: fill_back, near/far and each mode actually matter."""
    fv, tex = random_scene(2, 12, "vertex", 1, torch.float64, seed=7)
    base = dict(_settings_kw("euclidean", "softmax", "prod", "vertex", True))
    ref = soft_rasterize(fv, tex, backend="reference", **base)
    for key, value in [
        ("fill_back", False),
        ("far", 100.0),
        ("dist_func", "barycentric"),
        ("aggr_func_rgb", "hard"),
    ]:
        other = soft_rasterize(fv, tex, backend="reference", **{**base, key: value})
        assert (other - ref).abs().max() > 1e-3, key


# ---------------------------------------------------------------------------------------
# packed heterogeneous batches


def _packed_scene(counts, tex_kind, R, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    fvs, texs = [], []
    for n in counts:
        fvs.append(random_faces(n, gen, special=n >= 6))
        texs.append(random_textures(1, n, tex_kind, R, gen)[0])
    fv = torch.cat(fvs).to(dtype)
    tex = torch.cat(texs).to(dtype)
    first = torch.tensor([0] + list(itertools.accumulate(counts))[:-1], dtype=torch.int64)
    return fv, tex, first


PACKED_CASES = [
    ((0, 3, 11), "surface", 2, "softmax", "prod"),
    ((3, 0, 11), "vertex", 1, "softmax", "sum"),
    ((11, 3, 0), "vertex", 1, "hard", "sum"),
    ((3, 11, 0, 0), "surface", 1, "hard", "prod"),
]


@pytest.mark.parametrize("counts,tex_kind,R,rgb,alpha", PACKED_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_packed_matches_reference_and_single_meshes(counts, tex_kind, R, rgb, alpha, dtype):
    fv, tex, first = _packed_scene(counts, tex_kind, R, dtype, seed=sum(counts) + len(counts))
    kw = _settings_kw("euclidean", rgb, alpha, tex_kind, False, image_size=(12, 16))
    settings = RasterSettings(**kw)
    out, g_fv, g_tex = render_packed_with_grads("cpu", fv, tex, first, settings)
    ref, r_fv, r_tex = render_packed_with_grads("reference", fv, tex, first, settings)
    atol = 1e-5 if dtype == torch.float32 else 1e-10
    rtol = 1e-4 if dtype == torch.float32 else 1e-7
    assert out.shape == (len(counts), 4, 12, 16)
    assert_forward_close(out, ref, atol=atol, what="packed rgba")
    assert_grad_close(g_fv, r_fv, rtol=rtol, what="packed grad face_vertices")
    assert_grad_close(g_tex, r_tex, rtol=rtol, what="packed grad textures")

    # each mesh rendered alone (with the same upstream gradient) gives the same image and
    # the same gradients; an empty mesh gives the background with alpha 0
    upstream = random_like(out, 4321)
    bounds = first.tolist() + [fv.shape[0]]
    for b, n in enumerate(counts):
        s, e = bounds[b], bounds[b + 1]
        assert e - s == n
        for backend in ("cpu", "reference"):
            f1 = fv[s:e][None].clone().requires_grad_(True)
            t1 = tex[s:e][None].clone().requires_grad_(True)
            alone = soft_rasterize(f1, t1, backend=backend, **kw)
            assert_forward_close(alone[0].detach(), out[b], atol=atol, what=f"mesh {b} alone ({backend})")
            if n == 0:
                bg = torch.tensor(kw["background_color"], dtype=dtype)
                assert torch.equal(out[b, :3], bg[:, None, None].expand(3, 12, 16))
                assert torch.equal(out[b, 3], torch.zeros(12, 16, dtype=dtype))
                continue
            if alone.requires_grad:
                ga, gt = torch.autograd.grad(alone, [f1, t1], upstream[b : b + 1], allow_unused=True)
                ga = torch.zeros_like(f1) if ga is None else ga
                gt = torch.zeros_like(t1) if gt is None else gt
            else:
                ga, gt = torch.zeros_like(f1), torch.zeros_like(t1)
            assert_grad_close(ga[0], r_fv[s:e], rtol=rtol, what=f"mesh {b} alone grad fv ({backend})")
            assert_grad_close(gt[0], r_tex[s:e], rtol=rtol, what=f"mesh {b} alone grad tex ({backend})")


# ---------------------------------------------------------------------------------------
# fragments: depth and index of the nearest covering face


@pytest.mark.parametrize("fill", FILL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fragments_padded_match_reference(fill, dtype):
    fv, tex = random_scene(3, 10, "vertex", 1, dtype, seed=21)
    kw = _settings_kw("euclidean", "hard", "prod", "vertex", fill, image_size=(13, 17))
    out, frag = soft_rasterize(fv, tex, backend="cpu", return_fragments=True, **kw)
    ref, rfrag = soft_rasterize(fv, tex, backend="reference", return_fragments=True, **kw)
    assert frag.face_index.dtype == torch.int64 and frag.face_index.shape == (3, 13, 17)
    assert frag.depth.dtype == dtype and frag.depth.shape == (3, 13, 17)
    assert torch.equal(frag.face_index, rfrag.face_index)
    torch.testing.assert_close(frag.depth, rfrag.depth, rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=0)
    # within-mesh indices, -1 exactly where the depth is -1
    assert int(frag.face_index.min()) >= -1 and int(frag.face_index.max()) < 10
    assert torch.equal(frag.face_index == -1, frag.depth == -1)
    assert bool((frag.face_index == -1).any()) and bool((frag.face_index >= 0).any())
    # covered pixels lie in the depth range; the hard colour is the background elsewhere
    hit = frag.face_index >= 0
    assert bool((frag.depth[hit] >= 1.0).all()) and bool((frag.depth[hit] <= 5.0).all())
    bg = torch.tensor(kw["background_color"], dtype=dtype)
    assert torch.equal(out.permute(0, 2, 3, 1)[~hit][:, :3], bg.expand(int((~hit).sum()), 3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fragments_packed_index_is_packed(dtype):
    counts = (0, 3, 11)
    fv, tex, first = _packed_scene(counts, "surface", 2, dtype, seed=5)
    settings = RasterSettings(**_settings_kw("barycentric", "softmax", "sum", "surface", True, image_size=(12, 16)))
    out, frag = soft_rasterize_packed(fv, tex, first, settings, backend="cpu", return_fragments=True)
    ref, rfrag = soft_rasterize_packed(fv, tex, first, settings, backend="reference", return_fragments=True)
    assert torch.equal(frag.face_index, rfrag.face_index)
    torch.testing.assert_close(frag.depth, rfrag.depth, rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=0)
    # packed indices fall inside each mesh's own range; the empty mesh covers nothing
    assert bool((frag.face_index[0] == -1).all()) and bool((frag.depth[0] == -1).all())
    assert bool(((frag.face_index[1] == -1) | ((frag.face_index[1] >= 0) & (frag.face_index[1] < 3))).all())
    assert bool(((frag.face_index[2] == -1) | (frag.face_index[2] >= 3)).all())
    assert bool((frag.face_index[2] >= 3).any()) and bool((frag.face_index[1] >= 0).any())
    # the same meshes padded into [B, F] give the local index
    alone, afrag = soft_rasterize(
        fv[3:][None],
        tex[3:][None],
        backend="cpu",
        return_fragments=True,
        **_settings_kw("barycentric", "softmax", "sum", "surface", True, (12, 16)),
    )
    local = torch.where(frag.face_index[2] >= 0, frag.face_index[2] - 3, frag.face_index[2])
    assert torch.equal(afrag.face_index[0], local)
    assert torch.equal(afrag.depth[0], frag.depth[2])
    assert torch.equal(alone[0], out[2])


def _inside_closed(px, py, tri, margin):
    """+1 inside by more than margin, -1 outside by more than margin, 0 too close to tell."""
    s = []
    for i in range(3):
        (ax, ay), (bx, by) = tri[i], tri[(i + 1) % 3]
        ex, ey = bx - ax, by - ay
        cross = ex * (py - ay) - ey * (px - ax)
        s.append(cross / (ex * ex + ey * ey) ** 0.5)
    if all(c > margin for c in s) or all(c < -margin for c in s):
        return 1
    if any(c > margin for c in s) and any(c < -margin for c in s):
        return -1
    return 0


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_fragments_by_hand(backend):
    """Two constant-depth triangles, one in front of the other, checked pixel by pixel in
    plain Python: index/depth of the nearer one where it covers, -1 where nothing covers;
    a back-facing or out-of-range triangle covers nothing."""
    H, W = 13, 17
    big = [(-0.8, -0.7), (0.1, 0.9), (0.7, -0.5)]  # clockwise on screen: front-facing
    small = [(-0.3, -0.4), (0.0, 0.5), (0.5, -0.2)]
    fv = torch.tensor([[[x, y, 4.0] for x, y in big], [[x, y, 2.0] for x, y in small]], dtype=torch.float64)
    tex = torch.rand(1, 2, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    kw = dict(image_size=(H, W), texture_type="vertex", aggr_func_rgb="hard", near=1, far=10, fill_back=False)
    _, frag = soft_rasterize(fv[None], tex, backend=backend, return_fragments=True, **kw)
    checked = 0
    for r in range(H):
        for c in range(W):
            px, py = pixel_centre(r, c, H, W)
            in_big, in_small = _inside_closed(px, py, big, 1e-9), _inside_closed(px, py, small, 1e-9)
            if in_big == 0 or in_small == 0:
                continue
            checked += 1
            idx, depth = int(frag.face_index[0, r, c]), float(frag.depth[0, r, c])
            if in_small > 0:
                assert (idx, round(depth, 9)) == (1, 2.0), (r, c)
            elif in_big > 0:
                assert (idx, round(depth, 9)) == (0, 4.0), (r, c)
            else:
                assert (idx, depth) == (-1, -1.0), (r, c)
    assert checked > 0.9 * H * W
    # back-facing with fill_back=False, or outside [near, far]: nothing covers any pixel
    flipped = fv[:, [0, 2, 1]]
    _, frag = soft_rasterize(flipped[None], tex, backend=backend, return_fragments=True, **kw)
    assert bool((frag.face_index == -1).all()) and bool((frag.depth == -1).all())
    _, frag = soft_rasterize(flipped[None], tex, backend=backend, return_fragments=True, **{**kw, "fill_back": True})
    assert bool((frag.face_index >= 0).any())
    _, frag = soft_rasterize(fv[None], tex, backend=backend, return_fragments=True, **{**kw, "near": 5.0, "far": 9.0})
    assert bool((frag.face_index == -1).all())


def test_auto_backend_is_the_native_cpu_backend_on_cpu_tensors():
    fv, tex = random_scene(2, 10, "surface", 2, torch.float32, seed=3)
    kw = _settings_kw("euclidean", "softmax", "prod", "surface", True)
    auto = render_with_grads("auto", fv, tex, **kw)
    cpu = render_with_grads("cpu", fv, tex, **kw)
    for a, b in zip(auto, cpu):
        assert torch.equal(a, b)
