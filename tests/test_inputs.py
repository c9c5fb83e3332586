"""Real-world inputs reach the library (issue 10, library items): odd image sizes, sizes that
cannot fit in memory, cameras looking straight down, OBJ files with stray 2-vertex faces,
empty and binary OBJ files, vertices on the camera plane, NaN textures and meshes without
faces. Each either gives the result computed by hand or one ValueError naming the argument."""

from __future__ import annotations

import math
import re
import time
import warnings

import numpy as np
import pytest
import torch

import softras as sr
import softras.functional as srf
from softras.functional import RasterSettings, soft_rasterize
from softras.functional import cameras as C
from softras.functional.settings import raster_memory_bytes
from softras.io import load_obj, load_obj_geometry

BACKENDS = ("reference", "cpu")
T30 = math.tan(math.radians(30))


def _triangle(B: int = 1, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    fv = torch.tensor([[[-0.5, -0.5, 2.0], [0.5, -0.5, 2.0], [0.0, 0.5, 2.0]]], dtype=dtype)
    return fv.expand(B, 1, 3, 3).contiguous(), torch.full((B, 1, 1, 3), 0.5, dtype=dtype)


def _cube() -> tuple[torch.Tensor, torch.Tensor]:
    """Unit cube [-0.5, 0.5]^3: 8 corners (index bits: x, y, z) and 12 triangles."""
    v = torch.tensor([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    f = []
    for a, b, c, d in quads:
        f += [(a, b, c), (a, c, d)]
    return v, torch.tensor(f)


# ---------------------------------------------------------------------------------------
# item 2: image sizes are ints or pairs of ints, nothing else


@pytest.mark.parametrize(
    "value, hw",
    [
        (16, (16, 16)),
        ((8, 12), (8, 12)),
        ([8, 12], (8, 12)),
        (np.int64(16), (16, 16)),
        (np.int32(9), (9, 9)),
        (torch.tensor(16), (16, 16)),
        (64.0, (64, 64)),
        ((64.0, 32.0), (64, 32)),
        (np.array([8, 12]), (8, 12)),
        (torch.tensor([8, 12]), (8, 12)),
        ((np.int16(8), torch.tensor(12)), (8, 12)),
    ],
)
def test_image_size_accepted(value, hw):
    assert RasterSettings(image_size=value).image_size == hw
    fv, tex = _triangle()
    assert soft_rasterize(fv, tex, image_size=value, backend="reference").shape == (1, 4, *hw)
    H, W = hw
    assert C.aspect_scale(value) == ((H / W, 1.0) if W > H else (1.0, W / H))
    assert sr.SoftRasterizer(image_size=value).settings().image_size == hw


BAD_SIZES = [
    "16",
    "64",
    b"16",
    True,
    (True, 4),
    torch.tensor(True),
    np.bool_(True),
    64.7,
    (64.7, 32.2),
    (8, "12"),
    0,
    -3,
    (0, 4),
    (4, -1),
    (4,),
    (4, 5, 6),
    [],
    math.nan,
    math.inf,
    np.float64(3.5),
    torch.tensor(2.5),
    torch.tensor([[4, 4]]),
    object(),
]


@pytest.mark.parametrize("value", BAD_SIZES, ids=lambda v: type(v).__name__ + ":" + repr(v)[:20])
def test_image_size_refused(value):
    msg = re.escape(f"image_size: expected a positive int or (H, W) pair of ints, got {value!r}")
    fv, tex = _triangle()
    with pytest.raises(ValueError, match=msg):
        soft_rasterize(fv, tex, image_size=value, backend="reference")
    with pytest.raises(ValueError, match=msg):
        RasterSettings(image_size=value)
    v = torch.zeros(1, 3, 3)
    v[..., 2] = 2
    with pytest.raises(ValueError, match=msg):
        srf.perspective(v, image_size=value)
    with pytest.raises(ValueError, match=msg):
        srf.orthogonal(v, image_size=value)
    with pytest.raises(ValueError, match=msg):
        sr.SoftRasterizer(image_size=value)
    with pytest.raises(ValueError, match=msg):
        sr.SoftRenderer(image_size=value)


# ---------------------------------------------------------------------------------------
# item 3: sizes that cannot fit are refused up front, with the memory they would need


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("value", [20000, (100, 20000), (16385, 1)])
def test_image_side_limit(backend, value):
    fv, tex = _triangle()
    start = time.perf_counter()
    with pytest.raises(
        ValueError, match=re.escape(f"image_size: expected sides of at most 16384 pixels, got {value!r}")
    ):
        soft_rasterize(fv, tex, image_size=value, backend=backend)
    assert time.perf_counter() - start < 1.0


def test_memory_estimate_by_hand():
    s = RasterSettings(image_size=(3, 5))
    # native: rgba 4 + aux 3 + depth 1 + grad 4 values of 4 bytes, index 8 bytes, per pixel
    assert raster_memory_bytes(s, 2, "cpu", torch.float32) == 2 * 15 * (12 * 4 + 8)
    assert raster_memory_bytes(s, 2, "cuda", torch.float64) == 2 * 15 * (12 * 8 + 8)
    # reference: (rgba 4 + depth 1) x 3 copies + 2 coordinates + grad 4 values, index 8 x 3,
    # plus one chunk of 2^20 (pixel, face) pairs x 32 temporaries
    assert raster_memory_bytes(s, 2, "reference", torch.float32) == 2 * 15 * (21 * 4 + 24) + (1 << 20) * 32 * 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_limit(backend):
    B, side = 4096, 4096  # 4096^3 pixels: terabytes on any machine
    fv, tex = _triangle(B)
    need = raster_memory_bytes(RasterSettings(image_size=side), B, backend, torch.float32)
    per_pixel = 56 if backend == "cpu" else 108
    assert need >= B * side * side * per_pixel
    start = time.perf_counter()
    with pytest.raises(ValueError) as info:
        soft_rasterize(fv, tex, image_size=side, backend=backend)
    assert time.perf_counter() - start < 1.0
    msg = str(info.value)
    assert msg.startswith(f"image_size: {side}x{side} for {B} images needs about {need / 1e9:.1f} GB"), msg
    assert f"the {backend} backend" in msg and "available" in msg, msg


# ---------------------------------------------------------------------------------------
# item 6: a camera looking straight down or up


@pytest.fixture
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(C, "_warned", set())


def test_look_at_straight_down_renders_the_top_face(fresh_warnings):
    v, f = _cube()
    renderer = sr.SoftRenderer(image_size=64, dist_func="hard", aggr_func_alpha="hard", eye=(0.0, 3.0, 0.0))
    with pytest.warns(UserWarning, match="up.*parallel to the viewing direction"):
        alpha = renderer(v[None], f[None])[0, 3]
    # camera x = world x, depth = 3 - y: the top face (depth 2.5) spans
    # |ndc| <= 0.5 / (2.5 tan 30) and hides the rest; pixel centres are (2c + 1 - 64) / 64
    half = 0.5 / (2.5 * T30)
    centres = (2 * torch.arange(64) + 1 - 64) / 64
    inside = centres.abs() <= half
    expected = (inside[:, None] & inside[None, :]).float()
    assert int(inside.sum()) == 22  # columns 21..42
    assert torch.equal(alpha, expected)


@pytest.mark.parametrize("elevation", [90.0, -90.0])
def test_look_at_pole_continues_azimuth_zero(fresh_warnings, elevation):
    """At the pole the image is the limit of the camera at azimuth 0 approaching it."""
    v = torch.tensor([[[-0.5, 0.0, -0.5], [0.5, 0.0, -0.5], [-0.5, 0.0, 0.5], [0.2, 0.3, 0.1]]], dtype=torch.float64)
    pole = torch.tensor([[0.0, 3.0 * math.copysign(1.0, elevation), 0.0]], dtype=torch.float64)
    near = srf.get_points_from_angles(
        3.0, torch.tensor(elevation - math.copysign(1e-4, elevation), dtype=torch.float64), 0.0
    )
    with pytest.warns(UserWarning, match="parallel"):
        at_pole = srf.look_at(v, pole)
    close = srf.look_at(v, near.to(torch.float64))
    torch.testing.assert_close(at_pole, close, atol=1e-5, rtol=0)
    # looking down (up): camera y is world +z (-z), camera x world x, depth 3 -+ y
    s = math.copysign(1.0, elevation)
    expected = torch.stack([v[..., 0], s * v[..., 2], 3.0 - s * v[..., 1]], dim=-1)
    torch.testing.assert_close(at_pole, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    "eye, up",
    [
        ((0.0, 3.0, 0.0), (0.0, 1.0, 0.0)),
        ((0.0, -3.0, 0.0), (0.0, 2.0, 0.0)),
        ((0.0, 0.0, -3.0), (0.0, 0.0, 1.0)),
        ((0.0, 0.0, 3.0), (0.0, 0.0, 1.0)),
        ((2.0, 0.0, 0.0), (-1.0, 0.0, 0.0)),
        ((1.0, 1.0, 1.0), (1.0, 1.0, 1.0)),
        ((0.0, 3.0, 0.0), (0.0, 0.0, 0.0)),
    ],
)
def test_look_at_parallel_up_gives_a_rotation(fresh_warnings, eye, up):
    eye = torch.tensor([eye], dtype=torch.float64)
    with pytest.warns(UserWarning, match="parallel"):
        r = C.look_at_rotation(eye, up=up)[0]
    torch.testing.assert_close(r @ r.T, torch.eye(3, dtype=torch.float64))
    assert abs(float(torch.linalg.det(r)) - 1.0) < 1e-12
    torch.testing.assert_close(r[2], -eye[0] / eye[0].norm())


def test_look_at_parallel_up_warns_once(fresh_warnings):
    v = torch.zeros(1, 1, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            srf.look_at(v, (0.0, 5.0, 0.0))
            srf.look(v, (0.0, 5.0, 0.0), direction=(0.0, -1.0, 0.0))
    assert len([w for w in caught if "parallel" in str(w.message)]) == 1


def test_look_direction_down(fresh_warnings):
    v = torch.tensor([[[1.0, 0.0, 2.0]]])
    with pytest.warns(UserWarning, match="parallel"):
        out = srf.look(v, (0.0, 4.0, 0.0), direction=(0.0, -2.0, 0.0))
    torch.testing.assert_close(out, torch.tensor([[[1.0, 2.0, 4.0]]]))


def test_look_at_general_up_unchanged():
    """Away from the pole nothing changes (and nothing warns)."""
    v = torch.tensor([[[1.0, 2.0, 3.0]]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = srf.look_at(v, (0.0, 0.0, -5.0))
    torch.testing.assert_close(out, torch.tensor([[[1.0, 2.0, 8.0]]]))


# ---------------------------------------------------------------------------------------
# item 7: OBJ files with degenerate elements, empty and binary files

OBJ_WITH_STRAYS = """\
v 0 0 0
v 1 0 0
v 0 1 0
v 1 1 0
f 1 2
f 1 2 3
l 1 2 3
p 4
f 3
f 2 4 3
f 4/1
f
"""


@pytest.mark.parametrize("reader", ["load_obj", "load_obj_geometry", "Mesh.from_obj"])
def test_obj_degenerate_faces_skipped_with_one_warning(tmp_path, reader):
    path = tmp_path / "strays.obj"
    path.write_text(OBJ_WITH_STRAYS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if reader == "Mesh.from_obj":
            mesh = sr.Mesh.from_obj(path)
            faces = mesh.faces[0]
        else:
            faces = (load_obj if reader == "load_obj" else load_obj_geometry)(path)[1]
    assert torch.equal(faces, torch.tensor([[0, 1, 2], [1, 3, 2]]))
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1, msgs
    assert str(path) in msgs[0] and "skipped 4 faces with fewer than 3 vertices" in msgs[0], msgs
    assert "first on line 5" in msgs[0], msgs


def test_obj_out_of_range_in_degenerate_face_still_skipped(tmp_path):
    """A skipped element is not parsed further: it cannot fail the file."""
    path = tmp_path / "m.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 9\nf 1 2 3\n")
    with pytest.warns(UserWarning, match="skipped 1 face with fewer than 3 vertices"):
        _, faces = load_obj(path)
    assert faces.tolist() == [[0, 1, 2]]


def _empty(path):
    path.write_text("")


def _comments(path):
    path.write_text("# nothing\nv 0 0 0\nv 1 0 0\nl 1 2\n")


def _only_strays(path):
    path.write_text("v 0 0 0\nv 1 0 0\nf 1 2\n")


def _binary(path):
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)


def _utf16(path):
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", encoding="utf-16")


@pytest.mark.parametrize(
    "write, message",
    [
        (_empty, "no faces in {path}"),
        (_comments, "no faces in {path}"),
        (_only_strays, "no faces in {path}"),
        (_binary, "{path}: not a text OBJ file"),
        (_utf16, "{path}: not a text OBJ file"),
    ],
)
@pytest.mark.parametrize("reader", ["load_obj", "load_obj_geometry", "Mesh.from_obj"])
def test_obj_without_faces_refused(tmp_path, write, message, reader):
    path = tmp_path / "bad.obj"
    write(path)
    read = {"load_obj": load_obj, "load_obj_geometry": load_obj_geometry, "Mesh.from_obj": sr.Mesh.from_obj}[reader]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=re.escape(message.format(path=path))):
            read(path)


# ---------------------------------------------------------------------------------------
# item 10: camera plane, NaN textures, backward without faces


def test_vertex_on_camera_plane_names_the_view():
    v, f = _cube()
    # view 1's eye lies in the plane z = -0.5 of four corners, looking along +z
    eyes = torch.tensor([[0.0, 0.0, -3.0], [0.0, 0.0, -0.5]])
    renderer = sr.SoftRenderer(image_size=8, camera_mode="look", eye=eyes)
    with pytest.raises(ValueError, match=re.escape("vertices: a vertex lies on the camera plane (depth 0) of view 1")):
        renderer(v[None], f[None])
    cam = srf.look(v[None].expand(2, -1, -1), torch.tensor([[0.0, 0.0, -3.0], [0.0, 0.0, -0.5]]))
    with pytest.raises(ValueError, match=r"of view 1; move the eye or the mesh$"):
        srf.perspective(cam)
    ok = srf.perspective(cam[:1])  # view 0 alone projects: x / (z tan 30)
    torch.testing.assert_close(ok[0, 7], torch.tensor([0.5 / (3.5 * T30), 0.5 / (3.5 * T30), 3.5]))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_textures_refused(backend, bad):
    fv, tex = _triangle()
    tex = tex.clone()
    tex[0, 0, 0, 1] = bad
    with pytest.raises(ValueError, match=re.escape("textures: expected finite values, got NaN or Inf")):
        soft_rasterize(fv, tex, image_size=8, backend=backend)
    v, f = _cube()
    t = torch.ones(1, 12, 1, 3)
    t[0, 5, 0, 2] = bad
    mesh = sr.Mesh(v, f, t)
    renderer = sr.SoftRenderer(image_size=8, backend=backend)
    with pytest.raises(ValueError, match=re.escape("textures: expected finite values, got NaN or Inf")):
        renderer.render_mesh(mesh)


@pytest.mark.parametrize("texture_type, T", [("surface", 4), ("vertex", 3)])
def test_backward_without_faces(texture_type, T):
    grads = {}
    for backend in BACKENDS:
        fv = torch.zeros(2, 0, 3, 3, requires_grad=True)
        tex = torch.zeros(2, 0, T, 3, requires_grad=True)
        out = soft_rasterize(
            fv, tex, image_size=(3, 4), background_color=(0.25, 0.5, 1.0), texture_type=texture_type, backend=backend
        )
        expected = torch.tensor([0.25, 0.5, 1.0, 0.0])[None, :, None, None].expand(2, 4, 3, 4)
        torch.testing.assert_close(out, expected)
        (out * torch.rand_like(out)).sum().backward()
        grads[backend] = (fv.grad, tex.grad)
        assert fv.grad is not None and fv.grad.shape == (2, 0, 3, 3)
        assert tex.grad is not None and tex.grad.shape == (2, 0, T, 3)
    assert [g.shape for g in grads["reference"]] == [g.shape for g in grads["cpu"]]


def test_backward_packed_without_faces():
    fv = torch.zeros(0, 3, 3, dtype=torch.float64, requires_grad=True)
    tex = torch.zeros(0, 1, 3, dtype=torch.float64, requires_grad=True)
    first = torch.zeros(3, dtype=torch.int64)
    s = RasterSettings(image_size=2)
    out = srf.soft_rasterize_packed(fv, tex, first, s, backend="reference")
    assert out.shape == (3, 4, 2, 2)
    out.sum().backward()
    assert fv.grad.shape == (0, 3, 3) and tex.grad.shape == (0, 1, 3)
