"""Cameras (docs: softras-math.md, section 1): look_at / look, eyes from angles, perspective,
orthographic, non-square images, the pinhole ``projection`` with OpenCV distortion, and
gradients reaching the eye and ``P``. Expected numbers are computed by hand from the formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import softras as sr
import softras.functional as srf

T30 = math.tan(math.radians(30))


def _cube() -> tuple[torch.Tensor, torch.Tensor]:
    """Unit cube [-0.5, 0.5]^3: 8 corners (index bits: x, y, z) and 12 triangles,
    counter-clockwise about their outward normals."""
    v = torch.tensor([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    f = []
    for a, b, c, d in quads:
        f += [(a, b, c), (a, c, d)]
    return v, torch.tensor(f)


def _look_at_rotation(eye, at=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """Rows x, y, z of the look_at camera, by hand in float64 numpy."""
    eye, at, up = (np.asarray(a, dtype=np.float64) for a in (eye, at, up))
    z = (at - eye) / np.linalg.norm(at - eye)
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z])


def _pixel(xn: float, yn: float, H: int, W: int) -> tuple[float, float]:
    """Continuous (row, col) of NDC (x, y): pixel centres at integers, row 0 at the top."""
    return (1 - yn) * H / 2 - 0.5, (xn + 1) * W / 2 - 0.5


# ---------------------------------------------------------------------------------------
# look_at, look, eyes from angles


@pytest.mark.parametrize(
    "eye, at",
    [
        ([0.0, 0.0, -3.0], [0.0, 0.0, 0.0]),
        ([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]),
        ([2.0, -1.0, 0.5], [0.3, 0.2, -0.1]),
        ([[0.0, 0.0, -2.0], [3.0, 1.0, 1.0], [-1.0, 0.5, 2.0], [0.1, 4.0, -0.2]], [0.0, 0.0, 0.0]),
    ],
)
def test_look_at_centre_projects_to_origin(eye, at):
    eye = torch.tensor(eye, dtype=torch.float64)
    eyes = eye if eye.dim() == 2 else eye[None]
    at_t = torch.tensor(at, dtype=torch.float64)
    v = at_t.expand(eyes.shape[0], 1, 3).clone()
    cam = srf.look_at(v, eye, at=at)
    dist = (at_t - eyes).norm(dim=-1)
    torch.testing.assert_close(cam[:, 0, :2], torch.zeros(eyes.shape[0], 2, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(cam[:, 0, 2], dist)
    ndc = srf.perspective(cam, 30.0)
    torch.testing.assert_close(ndc[:, 0, :2], torch.zeros(eyes.shape[0], 2, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("eye", [[0.0, 0.0, -3.0], [1.0, 2.0, 3.0], [-2.0, 0.3, 0.7], [0.5, -3.0, 0.2]])
def test_look_at_axes_orthonormal_and_match_hand_rotation(eye):
    eye_t = torch.tensor(eye, dtype=torch.float64)
    # the images of eye + e_i are the columns of the rotation
    v = (eye_t + torch.eye(3, dtype=torch.float64))[None]
    R = srf.look_at(v, eye_t).squeeze(0).T  # [3, 3], rows = camera axes
    torch.testing.assert_close(R @ R.T, torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)
    assert float(torch.linalg.det(R)) == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(R, torch.from_numpy(_look_at_rotation(eye)), atol=1e-12, rtol=0)
    # camera z points from the eye to the origin; x is horizontal (y up stays up)
    torch.testing.assert_close(R[2], -eye_t / eye_t.norm(), atol=1e-12, rtol=0)
    assert abs(float(R[0, 1])) < 1e-12
    assert float(R[1, 1]) > 0


def test_get_points_from_angles_formula():
    d = torch.tensor([2.0, 2.732, 1.5, 3.0], dtype=torch.float64)
    e = torch.tensor([0.0, 30.0, -45.0, 90.0], dtype=torch.float64)
    a = torch.tensor([0.0, 135.0, 90.0, 10.0], dtype=torch.float64)
    eye = srf.get_points_from_angles(d, e, a)
    assert eye.shape == (4, 3)
    for k in range(4):
        dk, ek, ak = float(d[k]), math.radians(float(e[k])), math.radians(float(a[k]))
        expected = [dk * math.cos(ek) * math.sin(ak), dk * math.sin(ek), -dk * math.cos(ek) * math.cos(ak)]
        assert eye[k].tolist() == pytest.approx(expected, abs=1e-6)
    # azimuth 0, elevation 0: on -z; radians give the same
    assert srf.get_points_from_angles(2.0, 0.0, 0.0)[0].tolist() == pytest.approx([0, 0, -2.0], abs=1e-7)
    rad = srf.get_points_from_angles(d, torch.deg2rad(e), torch.deg2rad(a), degrees=False)
    torch.testing.assert_close(rad.double(), eye.double(), atol=1e-6, rtol=0)
    # scalars broadcast against a vector of azimuths
    assert srf.get_points_from_angles(2.732, 30.0, torch.arange(8.0) * 45).shape == (8, 3)


def test_azimuth_zero_camera_on_minus_z_looks_toward_plus_z():
    eye = srf.get_points_from_angles(3.0, 0.0, 0.0)
    v = torch.tensor([[[0.0, 0.0, 1.0], [0.4, 0.0, 0.0]]])
    cam = srf.look_at(v, eye)
    assert cam[0, 0, 2].item() == pytest.approx(4.0, abs=1e-6)  # +z is farther away
    assert cam[0, 1].tolist() == pytest.approx([0.4, 0.0, 3.0], abs=1e-6)  # world +x is screen right


def test_look_equals_look_at_with_direction():
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(2, 20, 3, generator=gen, dtype=torch.float64)
    eye = torch.tensor([[1.0, 2.0, -3.0], [-2.0, 0.5, 1.0]], dtype=torch.float64)
    at = torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(srf.look(v, eye, direction=at - eye), srf.look_at(v, eye, at=at))
    # scaling the direction changes nothing
    torch.testing.assert_close(srf.look(v, eye, direction=3 * (at - eye)), srf.look_at(v, eye, at=at))
    # the modules agree too (the default direction +z from an eye on -z is look_at the origin)
    e = [0.0, 0.0, -2.5]
    look = sr.Look(camera_direction=(0, 0, 1), eye=e)
    look_at = sr.LookAt(eye=e)
    torch.testing.assert_close(look(v), look_at(v))


# ---------------------------------------------------------------------------------------
# perspective / orthographic: the unit cube by hand


def test_unit_cube_corners_pixel_positions():
    H = W = 64
    v, _ = _cube()
    ndc = srf.perspective(srf.look_at(v[None].double(), [0.0, 0.0, -3.0]), 30.0)[0]
    for k in range(8):
        x, y, z = v[k].tolist()
        depth = z + 3.0  # camera axes are the world axes for this eye
        xn, yn = x / (depth * T30), y / (depth * T30)
        assert ndc[k].tolist() == pytest.approx([xn, yn, depth], abs=1e-9)
        row, col = _pixel(float(ndc[k, 0]), float(ndc[k, 1]), H, W)
        assert (row, col) == pytest.approx(_pixel(xn, yn, H, W), abs=1e-6)
    # the worked example: corner (0.5, 0.5, -0.5) at depth 2.5
    k = 6  # x=+, y=+, z=-
    assert v[k].tolist() == [0.5, 0.5, -0.5]
    assert float(ndc[k, 0]) == pytest.approx(0.34641, abs=1e-5)
    row, col = _pixel(float(ndc[k, 0]), float(ndc[k, 1]), H, W)
    assert col == pytest.approx(42.585, abs=1e-3)
    assert row == pytest.approx(20.415, abs=1e-3)


def test_unit_cube_silhouette_bounding_box():
    """The silhouette (hard renderer) is the front face's square: pixel centres with
    20.415 < col < 42.585 and 20.415 < row < 42.585 are covered, nothing else."""
    v, f = _cube()
    r = sr.Renderer(image_size=64, anti_aliasing=False, eye=[0.0, 0.0, -3.0])
    alpha = r(v[None], f[None])[0, 3]
    rows = torch.nonzero(alpha.sum(1) > 0).flatten()
    cols = torch.nonzero(alpha.sum(0) > 0).flatten()
    assert (int(rows.min()), int(rows.max())) == (21, 42)
    assert (int(cols.min()), int(cols.max())) == (21, 42)
    assert float(alpha.sum()) == 22 * 22  # the full square


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_hard_silhouette_has_no_crack_on_shared_edges(backend):
    """The 22 pixel centres exactly on the diagonal shared by the front face's two triangles
    are covered (with dist_func='hard' the triangle is closed). They were left uncovered when
    'hard' took strictly-inside pixels only."""
    v, f = _cube()
    r = sr.Renderer(image_size=64, anti_aliasing=False, eye=[0.0, 0.0, -3.0], backend=backend)
    alpha = r(v[None], f[None])[0, 3]
    diagonal = alpha[21:43, 21:43].flip(1).diagonal()  # column = 63 - row
    assert bool((diagonal == 1).all())


def test_tiny_quad_lights_the_expected_pixel():
    """A tiny fronto-parallel square at the cube corner (0.5, 0.5, -0.5) seen from (0, 0, -3):
    its soft alpha is centred at (row 20.415, col 42.585), brightest at pixel (20, 43)."""
    H = W = 64
    s = 0.02
    c = torch.tensor([0.5, 0.5, -0.5])
    v = c + torch.tensor([[-s, -s, 0.0], [s, -s, 0.0], [s, s, 0.0], [-s, s, 0.0]])
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    # blurred over ~1 pixel (sqrt(sigma) = 0.03 NDC) so that the sampled centroid is accurate
    r = sr.SoftRenderer(image_size=(H, W), sigma_val=1e-3, dist_eps=1e-8, eye=[0.0, 0.0, -3.0])
    alpha = r(v[None], f[None])[0, 3].double()
    idx = int(alpha.argmax())
    assert divmod(idx, W) == (20, 43)
    rr, cc = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    m = alpha.sum()
    assert float((alpha * rr).sum() / m) == pytest.approx(20.415, abs=0.01)
    assert float((alpha * cc).sum() / m) == pytest.approx(42.585, abs=0.01)


def test_orthogonal():
    v = torch.tensor([[[0.3, -0.2, 2.0], [-1.0, 0.5, 5.0]]], dtype=torch.float64)
    out = srf.orthogonal(v, 0.5)
    assert out[0].flatten().tolist() == pytest.approx([0.15, -0.1, 2.0, -0.5, 0.25, 5.0])
    # batched scales
    out = srf.orthogonal(v.expand(2, -1, -1), torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert out[1, 0].tolist() == pytest.approx([0.6, -0.4, 2.0])
    # non-square: the scale applies to the shorter side, the longer one is shrunk
    assert srf.orthogonal(v, 1.0, image_size=(32, 64))[0, 0].tolist() == pytest.approx([0.15, -0.2, 2.0])
    assert srf.orthogonal(v, 1.0, image_size=(64, 32))[0, 0].tolist() == pytest.approx([0.3, -0.1, 2.0])
    # the module: orthographic LookAt keeps camera-space x, y times the scale
    cam = sr.LookAt(perspective=False, viewing_scale=0.5, eye=[0.0, 0.0, -3.0])(v)
    assert cam[0, 0].tolist() == pytest.approx([0.15, -0.1, 5.0])


def test_perspective_non_square_scales_x():
    v = torch.tensor([[[0.3, -0.2, 2.0]]], dtype=torch.float64)
    sq = srf.perspective(v, 30.0)[0, 0]
    assert sq.tolist() == pytest.approx([0.3 / (2 * T30), -0.2 / (2 * T30), 2.0])
    wide = srf.perspective(v, 30.0, image_size=(48, 96))[0, 0]
    assert wide.tolist() == pytest.approx([0.3 / (2 * T30) * 0.5, -0.2 / (2 * T30), 2.0])
    tall = srf.perspective(v, 30.0, image_size=(96, 48))[0, 0]
    assert tall.tolist() == pytest.approx([0.3 / (2 * T30), -0.2 / (2 * T30) * 0.5, 2.0])
    # a square image gives exactly the original
    assert torch.equal(srf.perspective(v, 30.0, image_size=64), srf.perspective(v, 30.0))


@pytest.mark.parametrize("size", [(48, 96), (96, 48)])
def test_non_square_sphere_stays_round(size):
    H, W = size
    m = sr.Mesh.from_obj("data/sphere_642.obj")
    m.vertices = m.vertices * 0.5
    r = sr.SoftRenderer(image_size=size, sigma_val=1e-5)
    alpha = r.render_mesh(m)[0, 3]
    mask = alpha > 0.5
    rows = torch.nonzero(mask.any(1)).flatten()
    cols = torch.nonzero(mask.any(0)).flatten()
    height = int(rows.max() - rows.min() + 1)
    width = int(cols.max() - cols.min() + 1)
    assert abs(height - width) <= 1, (height, width)
    # expected diameter: the sphere's silhouette radius is tan(asin(r/d)) in tan units
    d = 1 / T30 + 1
    radius = math.tan(math.asin(0.5 / d)) / T30 * min(H, W) / 2  # in pixels
    assert height == pytest.approx(2 * radius, abs=1.5)
    # centred
    assert float(rows.float().mean()) == pytest.approx((H - 1) / 2, abs=0.6)
    assert float(cols.float().mean()) == pytest.approx((W - 1) / 2, abs=0.6)


# ---------------------------------------------------------------------------------------
# projection by P = K [R | t]


def _opencv_camera(eye, H, W, angle=30.0, dtype=torch.float64):
    """P = K [R | t] of the look_at camera at ``eye`` (OpenCV: x right, y down, z forward),
    f = (min(H, W) / 2) / tan(angle), principal point at the image centre."""
    R_la = _look_at_rotation(eye)
    R = R_la * np.array([[1.0], [-1.0], [1.0]])  # y down
    t = -R @ np.asarray(eye, dtype=np.float64)
    f = (min(H, W) / 2) / math.tan(math.radians(angle))
    K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
    P = K @ np.concatenate([R, t[:, None]], axis=1)
    return torch.tensor(P, dtype=dtype)[None], K, R, t


@pytest.mark.parametrize("size", [(64, 64), (48, 80), (90, 60)])
@pytest.mark.parametrize("eye", [[0.0, 0.0, -3.0], [1.5, 1.0, -2.0], [-2.0, 2.5, 1.0]])
def test_projection_agrees_with_look_at_perspective(size, eye):
    H, W = size
    gen = torch.Generator().manual_seed(1)
    v = (torch.rand(1, 50, 3, generator=gen, dtype=torch.float64) - 0.5) * 1.5
    P, *_ = _opencv_camera(eye, H, W)
    out = srf.projection(v, P, orig_size=(H, W))
    ref = srf.perspective(srf.look_at(v, eye), 30.0, image_size=(H, W))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    # float32 too
    out32 = srf.projection(v.float(), P.float(), orig_size=(H, W))
    torch.testing.assert_close(out32, ref.float(), atol=1e-5, rtol=1e-5)


def test_projection_square_f_from_width():
    """The brief's square case: f = (W/2)/tan(theta)."""
    H = W = 128
    P, *_ = _opencv_camera([0.5, 0.8, -2.5], H, W)
    v = torch.tensor([[[0.2, 0.3, -0.1], [-0.4, 0.1, 0.3]]], dtype=torch.float64)
    ref = srf.perspective(srf.look_at(v, [0.5, 0.8, -2.5]), 30.0)
    torch.testing.assert_close(srf.projection(v, P, orig_size=W), ref, atol=1e-5, rtol=0)


def test_projection_renders_upright_and_equals_look_at_rendering():
    H, W = 48, 64
    eye = [0.0, 0.0, -2.732]
    P, *_ = _opencv_camera(eye, H, W)
    up = srf.projection(torch.tensor([[[0.0, 0.3, 0.0], [0.3, 0.0, 0.0]]], dtype=torch.float64), P, orig_size=(H, W))
    assert float(up[0, 0, 1]) > 0  # above the centre in the world: y > 0 (top of the image)
    assert float(up[0, 1, 0]) > 0  # world +x: right, as with look_at
    m = sr.Mesh.from_obj("data/spot_triangulated.obj")
    kw = dict(image_size=(H, W), sigma_val=1e-4, light_intensity_directionals=0.0)
    a = sr.SoftRenderer(camera_mode="projection", P=P.float(), orig_size=(H, W), **kw).render_mesh(m)
    b = sr.SoftRenderer(camera_mode="look_at", eye=eye, **kw).render_mesh(m)
    assert float(b[0, 3].sum()) > 50
    assert float((a - b).abs().max()) < 2e-3
    # the cow's head (top of the mesh, +y) is in the upper half of the image
    alpha = a[0, 3]
    rows = torch.arange(H, dtype=torch.float32)[:, None]
    assert float((alpha * rows).sum() / alpha.sum()) < H / 2 + 2


def test_projection_distortion_in_normalized_coordinates():
    H, W = 60, 80
    eye = [0.4, 0.6, -2.5]
    P, K, R, t = _opencv_camera(eye, H, W)
    k1, k2, p1, p2, k3 = 0.1, -0.05, 0.01, -0.02, 0.003
    dist = torch.tensor([[k1, k2, p1, p2, k3]], dtype=torch.float64)
    pts = np.array([[0.0, 0.0, 0.0], [0.3, -0.2, 0.1], [-0.45, 0.4, -0.3], [0.5, 0.5, 0.5]])
    out = srf.projection(torch.tensor(pts)[None], P, dist, orig_size=(H, W))[0].numpy()
    for k, X in enumerate(pts):
        c = R @ X + t
        x, y = c[0] / c[2], c[1] / c[2]
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
        xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        u, vv = K[0, 0] * xd + K[0, 2], K[1, 1] * yd + K[1, 2]
        expected = [2 * u / W - 1, 1 - 2 * vv / H, c[2]]
        assert out[k].tolist() == pytest.approx(expected, abs=2e-5)
    # zero coefficients change nothing; the principal ray is never distorted
    zero = srf.projection(torch.tensor(pts)[None], P, torch.zeros(1, 5, dtype=torch.float64), orig_size=(H, W))
    torch.testing.assert_close(zero, srf.projection(torch.tensor(pts)[None], P, orig_size=(H, W)))


def test_projection_module_batch_and_errors():
    P1, *_ = _opencv_camera([0.0, 0.0, -3.0], 64, 64)
    P2, *_ = _opencv_camera([3.0, 0.0, 0.0], 64, 64)
    P = torch.cat([P1, P2]).float()
    v = torch.rand(1, 10, 3)
    out = sr.Projection(P, orig_size=64)(v)
    assert out.shape == (2, 10, 3)
    torch.testing.assert_close(out[1], srf.projection(v, P[1:], orig_size=64)[0])
    with pytest.raises(ValueError, match="P"):
        sr.Projection(torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match="P"):
        srf.projection(v, torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="camera_mode"):
        sr.Transform(camera_mode="orthographic")
    with pytest.raises(ValueError, match="camera_mode"):
        sr.Transform(camera_mode="projection", P=P).set_eyes([0.0, 0.0, -2.0])


# ---------------------------------------------------------------------------------------
# gradients


def test_gradcheck_camera_functions():
    gen = torch.Generator().manual_seed(3)
    v = (torch.rand(2, 6, 3, generator=gen, dtype=torch.float64) - 0.5).requires_grad_(True)
    eye = torch.tensor([[0.3, 0.5, -2.5], [2.0, 1.0, 1.5]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, e: srf.perspective(srf.look_at(v, e), 30.0), (v, eye))
    d = torch.tensor([2.5, 3.0], dtype=torch.float64, requires_grad=True)
    el = torch.tensor([20.0, -10.0], dtype=torch.float64, requires_grad=True)
    az = torch.tensor([135.0, 30.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(srf.get_points_from_angles, (d, el, az))


def test_gradcheck_projection_vertices_and_P():
    gen = torch.Generator().manual_seed(4)
    v = (torch.rand(1, 5, 3, generator=gen, dtype=torch.float64) - 0.5).requires_grad_(True)
    P, *_ = _opencv_camera([0.5, 0.7, -2.5], 48, 64)
    P = (P + 0.5 * torch.rand(P.shape, generator=gen, dtype=torch.float64)).requires_grad_(True)
    dist = torch.tensor([[0.1, -0.05, 0.01, -0.02, 0.003]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, P: srf.projection(v, P, orig_size=(48, 64)), (v, P))
    assert torch.autograd.gradcheck(lambda v, P, d: srf.projection(v, P, d, orig_size=(48, 64)), (v, P, dist))


def _silhouette_loss(eye: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    v, f = _cube()
    r = sr.SoftRenderer(image_size=16, sigma_val=3e-3, light_intensity_directionals=0.0)
    r.transform.set_eyes(eye)
    alpha = r(v[None].double(), f[None])[:, 3]
    return ((alpha - target) ** 2).sum()


def test_gradient_reaches_eye_and_matches_finite_differences():
    target = torch.zeros(1, 16, 16, dtype=torch.float64)
    target[:, 4:12, 5:13] = 1
    eye = torch.tensor([0.4, 0.3, -2.6], dtype=torch.float64, requires_grad=True)
    loss = _silhouette_loss(eye, target)
    loss.backward()
    g = eye.grad
    assert torch.isfinite(g).all() and float(g.abs().max()) > 1e-3
    h = 1e-5
    fd = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        for i in range(3):
            e = torch.zeros(3, dtype=torch.float64)
            e[i] = h
            fd[i] = (_silhouette_loss(eye + e, target) - _silhouette_loss(eye - e, target)) / (2 * h)
    torch.testing.assert_close(g, fd, rtol=1e-4, atol=1e-6 * float(fd.abs().max()))


def _angle_loss(elevation: torch.Tensor, azimuth: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    v, f = _cube()
    r = sr.SoftRenderer(image_size=16, sigma_val=3e-3)
    r.transform.set_eyes_from_angles(2.732, elevation, azimuth)
    assert r.transform.eyes.dtype == torch.float64
    alpha = r(v[None].double(), f[None])[:, 3]
    return ((alpha - target) ** 2).sum()


def test_gradient_reaches_angles_through_set_eyes_from_angles():
    target = torch.zeros(1, 16, 16, dtype=torch.float64)
    target[:, 4:12, 2:10] = 1
    azimuth = torch.tensor([20.0], dtype=torch.float64, requires_grad=True)
    elevation = torch.tensor([10.0], dtype=torch.float64, requires_grad=True)
    _angle_loss(elevation, azimuth, target).backward()
    assert azimuth.grad is not None and elevation.grad is not None
    g = torch.cat([elevation.grad, azimuth.grad])
    # central differences in float64 (angles in degrees; h = 1e-4 degree)
    h = 1e-4
    with torch.no_grad():
        d_el = (_angle_loss(elevation + h, azimuth, target) - _angle_loss(elevation - h, azimuth, target)) / (2 * h)
        d_az = (_angle_loss(elevation, azimuth + h, target) - _angle_loss(elevation, azimuth - h, target)) / (2 * h)
    fd = torch.stack([d_el, d_az])
    assert float(fd.abs().min()) > 1e-4  # both angles move the silhouette: the check is not vacuous
    torch.testing.assert_close(g, fd, rtol=1e-4, atol=1e-6 * float(fd.abs().max()))
