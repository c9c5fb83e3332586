"""Properties of the soft rasterizer: binning is exact, threads do not change results, and
the exact facts of the math page (docs: softras-math.md, sections 2 to 4), checked against
hand computations in float64 Python."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import (
    assert_forward_close,
    assert_grad_close,
    pixel_centre,
    random_scene,
    render_with_grads,
    sigmoid,
)

from softras.functional import RasterSettings, soft_rasterize

BACKENDS = ["cpu", "reference"]


# ---------------------------------------------------------------------------------------
# binned (native cpu) == brute force (reference)


def _small_triangles(n, gen, size=0.08, xy=1.05, z=(1.5, 6.0)):
    centre = (torch.rand(n, 1, 2, generator=gen, dtype=torch.float64) * 2 - 1) * xy
    offs = (torch.rand(n, 3, 2, generator=gen, dtype=torch.float64) * 2 - 1) * size
    depth = z[0] + (z[1] - z[0]) * torch.rand(n, 3, 1, generator=gen, dtype=torch.float64)
    return torch.cat([centre + offs, depth], dim=-1)


@pytest.mark.parametrize("sigma", [1e-5, 1e-4])
def test_binned_equals_brute_force_many_small_triangles(sigma):
    gen = torch.Generator().manual_seed(2024)
    fv = _small_triangles(300, gen)[None].float()
    tex = torch.rand(1, 300, 4, 3, generator=gen).float()
    kw = dict(image_size=(48, 64), sigma_val=sigma, gamma_val=1e-2, far=10.0, fill_back=False)
    out, g_fv, g_tex = render_with_grads("cpu", fv, tex, **kw)
    ref, r_fv, r_tex = render_with_grads("reference", fv, tex, **kw)
    assert_forward_close(out, ref, atol=1e-5, what="rgba")
    assert_grad_close(g_fv, r_fv, what="grad face_vertices")
    assert_grad_close(g_tex, r_tex, what="grad textures")
    assert float(ref[0, 3].gt(0.5).float().mean()) > 0.1  # plenty of coverage


@pytest.mark.parametrize("dist_func", ["euclidean", "barycentric", "hard"])
def test_binned_equals_brute_force_unbalanced_bins(dist_func):
    """One triangle covers the whole screen (every bin), 150 tiny ones crowd a single
    corner bin and 60 more are spread out; odd image size (partial tiles)."""
    gen = torch.Generator().manual_seed(99)
    full = torch.tensor([[[-5.0, -5.0, 5.0], [0.0, 9.0, 5.0], [5.0, -5.0, 5.0]]], dtype=torch.float64)
    corner = _small_triangles(150, gen, size=0.03, xy=0.1, z=(1.5, 4.0))
    corner[..., :2] += torch.tensor([-0.85, 0.85], dtype=torch.float64)  # top-left tile
    spread = _small_triangles(60, gen, size=0.1, z=(1.5, 4.0))
    fv = torch.cat([corner[:70], full, corner[70:], spread])[None]
    tex = torch.rand(1, fv.shape[1], 3, 3, generator=gen, dtype=torch.float64)
    kw = dict(
        image_size=(29, 37),
        sigma_val=1e-4,
        gamma_val=1e-2,
        far=10.0,
        texture_type="vertex",
        dist_func=dist_func,
    )
    for dtype, atol, rtol in [(torch.float32, 1e-5, 1e-4), (torch.float64, 1e-10, 1e-7)]:
        out, g_fv, g_tex = render_with_grads("cpu", fv.to(dtype), tex.to(dtype), **kw)
        ref, r_fv, r_tex = render_with_grads("reference", fv.to(dtype), tex.to(dtype), **kw)
        assert_forward_close(out, ref, atol=atol, what=f"rgba {dtype}")
        assert_grad_close(g_fv, r_fv, rtol=rtol, what=f"grad face_vertices {dtype}")
        assert_grad_close(g_tex, r_tex, rtol=rtol, what=f"grad textures {dtype}")
        # the full-screen face covers everything: alpha is 1 everywhere
        assert bool((ref[0, 3] > 0.999).all())
    _, frag = soft_rasterize(fv, tex, backend="cpu", return_fragments=True, **kw)
    _, rfrag = soft_rasterize(fv, tex, backend="reference", return_fragments=True, **kw)
    assert torch.equal(frag.face_index, rfrag.face_index)
    assert bool((frag.face_index == 70).any()) and bool((frag.face_index != 70).any())


# ---------------------------------------------------------------------------------------
# determinism


def _cpu_run(fv, tex, kw):
    return render_with_grads("cpu", fv, tex, grad_seed=77, **kw)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_thread_count_does_not_change_results(dtype, restore_threads):
    fv, tex = random_scene(3, 20, "surface", 2, dtype, seed=8)
    kw = dict(image_size=(40, 44), sigma_val=1e-3, gamma_val=1e-2, far=8.0)
    torch.set_num_threads(1)
    one = _cpu_run(fv, tex, kw)
    one_again = _cpu_run(fv, tex, kw)
    torch.set_num_threads(2)
    two = _cpu_run(fv, tex, kw)
    two_again = _cpu_run(fv, tex, kw)
    for a, b, c, d in zip(one, one_again, two, two_again):
        assert torch.equal(a, b) and torch.equal(c, d) and torch.equal(a, c)


# ---------------------------------------------------------------------------------------
# exact facts


def _edge_scene(dtype):
    """A triangle whose vertical edge x = 0 passes through the centre of pixel (5, 4) of an
    11 x 9 image (x = 0, y = 0); w0 is exactly 0 there."""
    fv = torch.tensor([[[0.75, 0.0, 2.0], [0.0, -0.5, 2.0], [0.0, 0.5, 2.0]]], dtype=dtype)[None]
    tex = torch.full((1, 1, 3, 3), 0.5, dtype=dtype)
    return fv, tex


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dist_func", ["euclidean", "barycentric"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pixel_on_an_edge_has_probability_one_half(backend, dist_func, dtype):
    H, W = 11, 9
    assert pixel_centre(5, 4, H, W) == (0.0, 0.0)
    fv, tex = _edge_scene(dtype)
    for alpha in ("prod", "sum"):
        out, frag = soft_rasterize(
            fv,
            tex,
            image_size=(H, W),
            sigma_val=1e-2,
            dist_func=dist_func,
            aggr_func_alpha=alpha,
            texture_type="vertex",
            backend=backend,
            return_fragments=True,
        )
        assert float(out[0, 3, 5, 4]) == 0.5
        assert int(frag.face_index[0, 5, 4]) == 0  # the boundary counts as covered


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("far_x", [50.0, 1e3])
def test_far_away_face_does_not_change_alpha(backend, far_x):
    fv, tex = random_scene(2, 8, "surface", 1, torch.float64, seed=4)
    far_face = torch.tensor([[far_x, 0.0, 3.0], [far_x + 1, 1.0, 3.0], [far_x + 1, 0.0, 3.0]], dtype=torch.float64)
    fv2 = torch.cat([fv, far_face.expand(2, 1, 3, 3)], dim=1)
    tex2 = torch.cat([tex, torch.rand(2, 1, 1, 3, dtype=torch.float64)], dim=1)
    for alpha in ("prod", "hard", "sum"):
        kw = dict(image_size=(12, 16), sigma_val=2e-2, gamma_val=1e-1, aggr_func_alpha=alpha, backend=backend)
        a = soft_rasterize(fv, tex, **kw)
        b = soft_rasterize(fv2, tex2, **kw)
        assert torch.equal(a[:, :3], b[:, :3])
        if alpha == "sum":  # the mean is over the mesh's faces: one more face, same sum
            torch.testing.assert_close(b[:, 3], a[:, 3] * 8 / 9, rtol=1e-14, atol=0)
        else:
            assert torch.equal(a[:, 3], b[:, 3])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("gamma", [1e-6, 1e-8])
def test_softmax_tiny_gamma_is_finite_and_picks_the_front_face(backend, gamma):
    """The original overflowed float32 for gamma < ~1.1e-5 (NaN). Two overlapping faces of
    constant colour: where both cover the pixel well inside, the nearer one's colour."""
    H, W = 9, 11
    back = [[-0.9, -0.9, 4.0], [0.0, 0.9, 4.0], [0.9, -0.9, 4.0]]
    front = [[-0.6, -0.6, 2.0], [0.0, 0.6, 2.0], [0.6, -0.6, 2.0]]
    fv = torch.tensor([[back, front]], dtype=torch.float32)
    c_back, c_front = [0.9, 0.1, 0.2], [0.1, 0.7, 0.4]
    tex = torch.tensor([[[c_back], [c_front]]], dtype=torch.float32)  # surface, R = 1
    for fv_, tex_ in [(fv, tex), (fv.flip(1), tex.flip(1))]:  # both face orders
        fvr = fv_.clone().requires_grad_(True)
        texr = tex_.clone().requires_grad_(True)
        out = soft_rasterize(
            fvr,
            texr,
            image_size=(H, W),
            gamma_val=gamma,
            far=10.0,
            backend=backend,
            background_color=(1.0, 1.0, 1.0),
        )
        assert bool(torch.isfinite(out).all())
        g_fv, g_tex = torch.autograd.grad(out.sum(), [fvr, texr])
        assert bool(torch.isfinite(g_fv).all()) and bool(torch.isfinite(g_tex).all())
        # centre pixel (4, 5) is deep inside both faces: D = 1 for both at sigma 1e-5
        torch.testing.assert_close(out[0, :3, 4, 5], torch.tensor(c_front), rtol=0, atol=1e-6)
        # a pixel inside the back face only
        x, y = pixel_centre(7, 5, H, W)
        assert abs(x) < 0.1 and -0.8 < y < -0.6
        torch.testing.assert_close(out[0, :3, 7, 5], torch.tensor(c_back), rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("eps", [1e-3, 5e-2])
def test_background_weight_is_exp_eps_over_gamma(backend, eps):
    """I = (D e^{zbar/g} c + e^{eps/g} c_bg) / (D e^{zbar/g} + e^{eps/g}) at a pixel just
    outside a single constant-depth face, computed by hand in float64."""
    H, W = 11, 9
    sigma, gamma, near, far, z = 1e-2, 1e-1, 1.0, 10.0, 2.0
    # vertical edge at x = 0.1, pixel (5, 4) at (0, 0): outside, closest point on the edge's interior
    fv = torch.tensor([[[[0.1, -0.5, z], [0.1, 0.5, z], [0.9, 0.0, z]]]], dtype=torch.float64)
    colour = [0.8, 0.3, 0.05]
    bg = (0.1, 0.2, 0.9)
    tex = torch.tensor([[[colour]]], dtype=torch.float64)
    out = soft_rasterize(
        fv,
        tex,
        image_size=(H, W),
        sigma_val=sigma,
        gamma_val=gamma,
        near=near,
        far=far,
        eps=eps,
        background_color=bg,
        backend=backend,
    )
    d2 = 0.1**2
    assert d2 < sigma * math.log(1 / 1e-4 - 1)  # not culled
    D = sigmoid(-d2 / sigma)
    zbar = (far - z) / (far - near)
    wf, wb = D * math.exp(zbar / gamma), math.exp(eps / gamma)
    expected = [(wf * c + wb * b) / (wf + wb) for c, b in zip(colour, bg)]
    torch.testing.assert_close(out[0, :3, 5, 4], torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)
    assert abs(float(out[0, 3, 5, 4]) - D) < 1e-14
    # the original's e^{2 eps / gamma} would give a visibly different colour
    wb2 = math.exp(2 * eps / gamma)
    wrong = [(wf * c + wb2 * b) / (wf + wb2) for c, b in zip(colour, bg)]
    assert max(abs(a - b) for a, b in zip(expected, wrong)) > 1e-6


def _texel_by_hand(wc, R):
    """The texel of clipped barycentrics wc per the math page (a, b clamped to [0, R-1])."""
    a = min(max(math.floor(wc[0] * R), 0), R - 1)
    b = min(max(math.floor(wc[1] * R), 0), R - 1)
    return b * R + a if (wc[0] + wc[1]) * R - a - b <= 1 else (R - 1 - b) * R + (R - 1 - a)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("R", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_surface_texel_at_a_vertex_stays_in_range(backend, R, dtype):
    """Pixels exactly at the vertices (w = 1 there): the texel index is clamped into the
    face's own R*R texels (the original read past the face). Coordinates are dyadic, so the
    barycentrics are exact."""
    H = W = 8
    # pixel centres are (2c - 7) / 8; vertices at pixels (row 6, col 1), (row 1, col 3), (row 5, col 6)
    verts = [(1, 6), (3, 1), (6, 5)]  # (col, row)
    tri = [[(2 * c - 7) / 8, (2 * (H - 1 - r) - 7) / 8, 2.0] for c, r in verts]
    fv = torch.tensor([[tri]], dtype=dtype)
    # the face is the last one: an index past its texels would be out of bounds
    texels = torch.arange(R * R * 3, dtype=dtype).reshape(1, 1, R * R, 3) / (R * R * 3)
    out, frag = soft_rasterize(
        fv, texels, image_size=(H, W), aggr_func_rgb="hard", backend=backend, return_fragments=True
    )
    for i, (c, r) in enumerate(verts):
        assert pixel_centre(r, c, H, W) == (tri[i][0], tri[i][1])
        assert int(frag.face_index[0, r, c]) == 0
        wc = [1.0 if k == i else 0.0 for k in range(3)]
        k = _texel_by_hand(wc, R)
        assert 0 <= k < R * R
        assert torch.equal(out[0, :3, r, c], texels[0, 0, k])


def _special_faces(dtype, point: bool):
    faces = [
        [[0.2, 0.1, 3.0], [0.2, 0.1, 2.0], [-0.4, 0.5, 4.0]],  # two equal vertices (x, y)
        [[-0.5, -0.5, -2.0], [0.5, -0.4, -2.0], [0.0, 0.6, -2.0]],  # behind the camera
        [[-0.6, 0.5, 0.0], [0.6, 0.4, 1e-12], [0.0, -0.6, -3.0]],  # z = 0, tiny z, mixed sign
    ]
    if point:
        faces.append([[0.3, -0.3, 3.0], [0.3, -0.3, 3.0], [0.3, -0.3, 3.0]])  # all three equal
    return torch.tensor(faces, dtype=dtype)


def _scene_with_special_faces(dtype, tex_kind, point):
    fv, tex = random_scene(1, 6, tex_kind, 2, dtype, seed=31)
    special = _special_faces(dtype, point)
    fv = torch.cat([fv, special[None]], dim=1)
    rows = 4 if tex_kind == "surface" else 3
    extra = torch.rand(1, special.shape[0], rows, 3, generator=torch.Generator().manual_seed(1)).to(dtype)
    return fv, torch.cat([tex, extra], dim=1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tex_kind", ["surface", "vertex"])
@pytest.mark.parametrize("rgb", ["softmax", "hard"])
@pytest.mark.parametrize("point", [False, True], ids=["segment", "point"])
def test_degenerate_and_behind_camera_faces_are_finite(backend, dtype, tex_kind, rgb, point):
    """Zero-area faces (two equal vertices; with ``point`` also all three equal) and faces
    behind or across the camera plane (z = 0 included): finite images and finite gradients,
    and the native backend equals the reference."""
    fv, tex = _scene_with_special_faces(dtype, tex_kind, point)
    for dist in ("euclidean", "barycentric", "hard"):
        kw = dict(
            image_size=(12, 16),
            sigma_val=2e-2,
            gamma_val=1e-1,
            dist_func=dist,
            aggr_func_rgb=rgb,
            texture_type=tex_kind,
            near=0.5,
            far=8.0,
        )
        out, g_fv, g_tex = render_with_grads(backend, fv, tex, **kw)
        assert bool(torch.isfinite(out).all()), dist
        assert bool(torch.isfinite(g_fv).all()) and bool(torch.isfinite(g_tex).all()), dist
        if backend == "cpu":
            ref, r_fv, r_tex = render_with_grads("reference", fv, tex, **kw)
            f32 = dtype == torch.float32
            assert_forward_close(out, ref, atol=1e-5 if f32 else 1e-10, what=dist)
            assert_grad_close(g_fv, r_fv, rtol=1e-4 if f32 else 1e-7, what=f"{dist} grad face_vertices")
            assert_grad_close(g_tex, r_tex, rtol=1e-4 if f32 else 1e-7, what=f"{dist} grad textures")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dist_func", ["euclidean", "hard"])
@pytest.mark.parametrize("shape", ["point", "segment"])
def test_zero_area_face_covers_only_its_own_points(backend, dist_func, shape):
    """A zero-area face has no inside; its boundary is the point or segment itself
    (Fragments: covering means inside the triangle or on its boundary). ``point``: three
    equal vertices at a non-centre: no pixel is covered. ``segment``: v0 = v2, the segment
    from pixel centre (-1/8, -1/8) to (1/8, 1/8) of an 8 x 8 image; the pixels on the same
    line y = x beyond its ends are not on the face and must not be covered (the hard colour
    is the background there)."""
    H = W = 8
    if shape == "point":
        tri = [[0.3, -0.3, 3.0]] * 3
    else:
        tri = [[-0.125, -0.125, 3.0], [0.125, 0.125, 3.0], [-0.125, -0.125, 3.0]]
    fv = torch.tensor([[tri]], dtype=torch.float64)
    tex = torch.tensor([[[[0.9, 0.1, 0.1]]]], dtype=torch.float64)
    out, frag = soft_rasterize(
        fv,
        tex,
        image_size=(H, W),
        aggr_func_rgb="hard",
        dist_func=dist_func,
        background_color=(0.0, 0.0, 1.0),
        backend=backend,
        return_fragments=True,
    )
    bg = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    for r in range(H):
        for c in range(W):
            x, y = pixel_centre(r, c, H, W)
            if shape == "segment" and abs(x) <= 0.125 and abs(y) <= 0.125:
                continue  # on (or next to) the segment itself: not constrained here
            assert int(frag.face_index[0, r, c]) == -1, (r, c, x, y)
            assert float(frag.depth[0, r, c]) == -1.0, (r, c)
            assert torch.equal(out[0, :3, r, c], bg), (r, c)


# ---------------------------------------------------------------------------------------
# the culling threshold


def test_threshold_formula():
    s = RasterSettings()
    assert (s.sigma_val, s.dist_eps) == (1e-5, 1e-4)
    assert s.threshold == pytest.approx(1e-5 * math.log(1 / 1e-4 - 1), rel=1e-15)
    s = RasterSettings(sigma_val=3e-3, dist_eps=1e-10)
    assert s.threshold == pytest.approx(3e-3 * math.log(1e10 - 1), rel=1e-15)
    assert s.grow == pytest.approx(math.sqrt(s.threshold), rel=1e-15)
    assert RasterSettings(dist_func="hard").grow == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dist_func", ["euclidean", "barycentric"])
@pytest.mark.parametrize("sigma,dist_eps", [(1e-5, 1e-4), (1e-3, 1e-2)])
def test_default_culling_cut(backend, dist_func, sigma, dist_eps):
    """A pixel at squared distance just below T = sigma ln(1/dist_eps - 1) has
    D = sigmoid(-d^2/sigma) ~ dist_eps; just above T it is culled: alpha exactly 0."""
    H, W = 11, 9  # pixel (5, 4) is at (0, 0)
    T = sigma * math.log(1 / dist_eps - 1)
    for factor, culled in [(1 - 1e-3, False), (1 + 1e-3, True)]:
        d = math.sqrt(T * factor)
        # right triangle with a vertical edge at x = d; for the barycentric distance the
        # opposite vertex sits at distance 1 from the edge, so m = -d exactly as euclidean
        fv = torch.tensor([[[[d, -0.5, 2.0], [d, 0.5, 2.0], [d + 1.0, 0.0, 2.0]]]], dtype=torch.float64)
        tex = torch.ones(1, 1, 1, 3, dtype=torch.float64)
        kw = dict(image_size=(H, W), sigma_val=sigma, dist_eps=dist_eps, dist_func=dist_func, backend=backend)
        out = soft_rasterize(fv, tex, **kw)
        alpha = float(out[0, 3, 5, 4])
        if culled:
            assert alpha == 0.0
        else:
            expected = sigmoid(-d * d / sigma)
            assert expected == pytest.approx(dist_eps, rel=1e-2)
            assert alpha == pytest.approx(expected, rel=1e-9)
        # the pixel one column to the left is much farther: always culled
        assert float(out[0, 3, 5, 3]) == 0.0
