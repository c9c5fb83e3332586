"""Tests of softras.io: OBJ/MTL reading, texture baking, writing and voxels.

Fixtures live in tests/data/obj (tiny hand-written files); the Spot cow comes from data/.
Expected values are computed independently here (plain Python / numpy), not with softras.io.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from softras.io import (
    load_obj,
    load_obj_geometry,
    read_obj,
    save_obj,
    save_voxel,
    texel_barycentrics,
    voxel_to_mesh,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
OBJ = Path(__file__).resolve().parent / "data" / "obj"
SPOT = DATA / "spot_triangulated.obj"
SPHERE = DATA / "sphere_642.obj"


# ---------------------------------------------------------------------------------------
# independent helpers


def rasterizer_texel(w0: float, w1: float, R: int) -> int:
    """The rasterizer's texel index (texel_index in rasterize.h), written from its formula."""
    a = min(max(math.floor(w0 * R), 0), R - 1)
    b = min(max(math.floor(w1 * R), 0), R - 1)
    b = min(b, R - 1 - a)
    if a + b == R - 1 or (w0 + w1) * R - a - b <= 1:
        return b * R + a
    return (R - 1 - b) * R + (R - 1 - a)


def bilinear(img: np.ndarray, u: float, v: float) -> np.ndarray:
    """Bilinear sample of img [H, W, C] (uint8) at (u, v) in [0, 1]: v up, pixel centres at
    integer + 0.5, clamped at the borders; float in [0, 1]."""
    H, W = img.shape[:2]
    x, y = u * W - 0.5, (1 - v) * H - 0.5
    x0, y0 = math.floor(x), math.floor(y)
    fx, fy = x - x0, y - y0
    out = np.zeros(3)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            r = min(max(y0 + dy, 0), H - 1)
            c = min(max(x0 + dx, 0), W - 1)
            out += wy * wx * img[r, c, :3].astype(np.float64) / 255.0
    return out


def parse_spot_uv_faces():
    """(vt [T, 2], per face the three vt indices) of the Spot OBJ, parsed by hand."""
    vts, fts = [], []
    for line in SPOT.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "vt":
            vts.append([float(parts[1]), float(parts[2])])
        elif parts and parts[0] == "f":
            fts.append([int(p.split("/")[1]) - 1 for p in parts[1:4]])
    return np.array(vts), np.array(fts)


def sub_triangle_centroid(a: int, b: int, upper: bool, R: int) -> tuple[float, float, float]:
    if upper:
        w0, w1 = (a + 1 + a + a + 1) / (3 * R), (b + b + 1 + b + 1) / (3 * R)
    else:
        w0, w1 = (a + a + 1 + a) / (3 * R), (b + b + b + 1) / (3 * R)
    return w0, w1, 1 - w0 - w1


# ---------------------------------------------------------------------------------------
# Spot


@pytest.fixture(scope="module")
def spot_image():
    return iio.imread(DATA / "spot_texture.png")


def test_spot_geometry():
    v, f = load_obj(SPOT)
    assert v.shape == (2930, 3) and v.dtype == torch.float32
    assert f.shape == (5856, 3) and f.dtype == torch.int64
    assert int(f.min()) == 0 and int(f.max()) == 2929
    # first vertex / face as written in the file
    assert torch.equal(v[0], torch.tensor([0.348799, -0.334989, -0.0832331], dtype=torch.float32))
    assert f[0].tolist() == [738, 734, 735]
    v2, f2 = load_obj_geometry(SPOT)
    assert torch.equal(v, v2) and torch.equal(f, f2)
    vs, fs = load_obj_geometry(SPHERE)
    assert vs.shape == (642, 3) and fs.shape == (1280, 3)


@pytest.mark.parametrize("R", [1, 4])
def test_spot_surface_texture(R, spot_image):
    v, f, tex = load_obj(SPOT, load_texture=True, texture_res=R)
    assert tex.shape == (5856, R * R, 3) and tex.dtype == torch.float32
    assert torch.isfinite(tex).all() and tex.min() >= 0 and tex.max() <= 1
    mean = tex.mean(dim=(0, 1))
    assert (mean < 0.95).all() and (mean > 0.3).all(), mean  # neither white nor black
    assert float(tex.std()) > 0.1
    vts, fts = parse_spot_uv_faces()
    # the three chosen faces: lower and upper sub-triangles at R = 4, the single one at R = 1
    cells = [(0, 0, False)] if R == 1 else [(1, 2, False), (0, 1, True), (3, 0, False), (2, 1, True)]
    for face in (0, 2500, 5855):
        uv = vts[fts[face]]  # [3, 2]
        for a, b, upper in cells:
            w = np.array(sub_triangle_centroid(a, b, upper, R))
            u_, v_ = w @ uv
            u_ = u_ - math.floor(u_) if not 0 <= u_ <= 1 else u_
            v_ = v_ - math.floor(v_) if not 0 <= v_ <= 1 else v_
            expected = bilinear(spot_image, u_, v_)
            slot = (R - 1 - b) * R + (R - 1 - a) if upper else b * R + a
            np.testing.assert_allclose(
                tex[face, slot].numpy(), expected, atol=1e-5, err_msg=f"face {face} cell {a, b, upper}"
            )


def test_spot_r1_texel_is_an_r4_texel():
    """The R=1 colour (sample at the face centroid) equals R=4 texel 5: lower cell (1, 1)
    has its centroid at (4/12, 4/12) = (1/3, 1/3) too."""
    _, _, t1 = load_obj(SPOT, load_texture=True, texture_res=1)
    _, _, t4 = load_obj(SPOT, load_texture=True, texture_res=4)
    torch.testing.assert_close(t1[:, 0], t4[:, 1 * 4 + 1], atol=1e-6, rtol=0)


def test_spot_normalization():
    v, _ = load_obj(SPOT, normalization=True)
    raw, _ = load_obj(SPOT)
    assert abs(float(v.abs().max()) - 1.0) < 1e-6
    centre = (v.max(0).values + v.min(0).values) / 2
    assert float(centre.abs().max()) < 1e-6
    lo, hi = raw.min(0).values.double(), raw.max(0).values.double()
    scale = float(((raw.double() - (lo + hi) / 2).abs()).max())
    expected = ((raw.double() - (lo + hi) / 2) / scale).float()
    torch.testing.assert_close(v, expected, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------
# texel layout


@pytest.mark.parametrize("R", [1, 2, 3, 4, 5, 8, 16])
def test_texel_layout_bijection(R):
    """Every sub-triangle centroid is stored where the rasterizer's rule reads it, and the
    lower cells (a+b <= R-1) and upper cells (a+b <= R-2) cover the R*R slots exactly once."""
    w = texel_barycentrics(R)
    assert w.shape == (R * R, 3)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-12)
    seen = []
    for b in range(R):
        for a in range(R):
            for upper in (False, True):
                if a + b > R - 1 or (upper and a + b > R - 2):
                    continue
                w0, w1, w2 = sub_triangle_centroid(a, b, upper, R)
                slot = rasterizer_texel(w0, w1, R)
                seen.append(slot)
                np.testing.assert_allclose(w[slot], (w0, w1, w2), atol=1e-12)
    assert sorted(seen) == list(range(R * R))
    for t in range(R * R):  # and the function's own table maps back under the rule
        assert rasterizer_texel(w[t, 0], w[t, 1], R) == t


@pytest.mark.parametrize("R", [1, 3, 4])
def test_texel_layout_matches_reference_rasterizer(R):
    """The package's reference texel lookup reads slot t at centroid t."""
    from softras.functional._torch_impl import _texel_colour

    w = torch.from_numpy(texel_barycentrics(R))  # [T, 3]
    tex = torch.arange(R * R, dtype=torch.float64)[None, :, None].expand(1, R * R, 3).contiguous()
    got = _texel_colour(tex, w[:, None, :])  # [P=T, F=1, 3]
    assert got[:, 0, 0].long().tolist() == list(range(R * R))


# ---------------------------------------------------------------------------------------
# parsing


def test_quad_and_pentagon_are_fan_triangulated():
    v, f = load_obj(OBJ / "quad.obj")
    assert v.shape == (4, 3)
    assert f.tolist() == [[0, 1, 2], [0, 2, 3]]
    v, f = load_obj(OBJ / "pentagon.obj")
    assert v.shape == (5, 3)
    assert f.tolist() == [[0, 1, 2], [0, 2, 3], [0, 3, 4]]
    v, f = load_obj(OBJ / "continuation.obj")  # a face continued with a backslash
    assert f.tolist() == [[0, 1, 2], [0, 2, 3]]


def test_negative_indices():
    data = read_obj(OBJ / "negative.obj")
    assert data.faces.tolist() == [[0, 1, 2], [0, 2, 3]]
    assert data.face_uvs.tolist() == [[0, 1, 2], [0, 2, 3]]
    _, f = load_obj(OBJ / "negative.obj")
    assert f.tolist() == [[0, 1, 2], [0, 2, 3]]


def test_face_forms_and_normals():
    data = read_obj(OBJ / "forms.obj")
    assert data.faces.tolist() == [[0, 1, 2], [0, 2, 3], [3, 1, 0]]
    assert data.face_normals.tolist() == [[0, 0, 0], [1, 1, 1], [-1, -1, -1]]
    assert data.face_uvs.tolist() == [[-1, -1, -1], [0, 2, 3], [3, 1, 0]]
    np.testing.assert_array_equal(data.normals, [[0, 0, 1], [0, 0, -1]])
    np.testing.assert_array_equal(data.uvs, [[0, 0], [1, 0], [1, 1], [0, 1]])


def test_vertex_colors():
    v, f, tex = load_obj(OBJ / "vertex_colors.obj", load_texture=True, texture_type="vertex")
    assert v.shape == (5, 3) and tex.shape == (5, 3) and tex.dtype == torch.float32
    expected = [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.25, 0.5, 0.75], [1, 1, 1]]
    torch.testing.assert_close(tex, torch.tensor(expected, dtype=torch.float32))
    assert v[0].tolist() == [0, 0, 0] and v[3].tolist() == [0, 1, 0]  # colours are not coordinates
    _, _, tex = load_obj(OBJ / "vertex_colors_255.obj", load_texture=True, texture_type="vertex")
    torch.testing.assert_close(tex, torch.tensor([[1, 0, 0], [0, 0.2, 0], [0, 0, 0.4]], dtype=torch.float32))
    _, _, white = load_obj(OBJ / "quad.obj", load_texture=True, texture_type="vertex")
    assert torch.equal(white, torch.ones(4, 3))


def test_normalization_values():
    v, _ = load_obj(OBJ / "normalize.obj", normalization=True)
    # centre (2, 4, 3.5), largest |coordinate| afterwards 2
    expected = [[-0.5, -1.0, -0.25], [0.5, 1.0, 0.25], [0.0, 0.5, 0.0]]
    torch.testing.assert_close(v, torch.tensor(expected), atol=1e-7, rtol=0)
    raw, _ = load_obj(OBJ / "normalize.obj")
    assert raw.tolist() == [[1, 2, 3], [3, 6, 4], [2, 5, 3.5]]


def test_return_arity_and_arguments():
    assert len(load_obj(OBJ / "quad.obj")) == 2
    v, f, tex = load_obj(OBJ / "quad.obj", load_texture=True, texture_res=2)
    assert tex.shape == (2, 4, 3) and torch.equal(tex, torch.ones(2, 4, 3))  # no material: white
    with pytest.raises(ValueError, match="texture_type"):
        load_obj(OBJ / "quad.obj", load_texture=True, texture_type="uv")
    with pytest.raises(ValueError, match="texture_res"):
        load_obj(OBJ / "quad.obj", load_texture=True, texture_res=0)


def test_missing_obj_file():
    with pytest.raises(FileNotFoundError, match="no_such_mesh.obj"):
        load_obj(OBJ / "no_such_mesh.obj")


# ---------------------------------------------------------------------------------------
# materials and texture images


def test_materials_and_texture_sampling():
    grid = iio.imread(OBJ / "mtl" / "grid.png")
    assert grid.shape == (4, 4, 3)
    _, f, tex = load_obj(OBJ / "textured.obj", load_texture=True, texture_res=1)
    assert tex.shape == (10, 1, 3)
    t = tex[:, 0].double().numpy()
    px = lambda r, c: grid[r, c].astype(np.float64) / 255  # noqa: E731
    np.testing.assert_allclose(t[0], [1, 1, 1])  # before any usemtl: white
    np.testing.assert_allclose(t[1], px(0, 0), atol=1e-6)  # a pixel centre; not multiplied by Kd
    np.testing.assert_allclose(t[1] * 255, [20, 10, 100], atol=1e-4)
    np.testing.assert_allclose(t[2], (px(1, 0) + px(1, 1)) / 2, atol=1e-6)  # halfway between two pixels
    np.testing.assert_allclose(t[2] * 255, [50, 80, 117.5], atol=1e-4)
    np.testing.assert_allclose(t[3], px(1, 1), atol=1e-6)  # UVs outside [0, 1] wrap
    np.testing.assert_allclose(t[4], bilinear(grid, 1 / 3, 1 / 3), atol=1e-6)  # the whole image
    np.testing.assert_allclose(t[5], px(3, 0), atol=1e-6)  # clamped at the left border
    np.testing.assert_allclose(t[6], [0.2, 0.2, 0.2], atol=1e-6)  # textured material, no UVs: its Kd
    np.testing.assert_allclose(t[7], [1, 0, 0])  # Kd only
    np.testing.assert_allclose(t[8], np.array([200, 40, 90]) / 255, atol=4 / 255)  # JPEG
    np.testing.assert_allclose(t[9], [1, 1, 1])  # material with neither Kd nor map_Kd


def test_texture_sampling_r2():
    grid = iio.imread(OBJ / "mtl" / "grid.png")
    _, _, tex = load_obj(OBJ / "textured.obj", load_texture=True, texture_res=2)
    assert tex.shape == (10, 4, 3)
    # face 4's corners have uv (0, 0), (1, 0), (0, 1): uv = w0 (0, 0) + w1 (1, 0) + w2 (0, 1)
    seen = set()
    for a, b, upper in [(0, 0, False), (1, 0, False), (0, 1, False), (0, 0, True)]:
        w0, w1, w2 = sub_triangle_centroid(a, b, upper, 2)
        slot = rasterizer_texel(w0, w1, 2)
        seen.add(slot)
        np.testing.assert_allclose(tex[4, slot].double().numpy(), bilinear(grid, w1, w2), atol=1e-6)
    assert seen == {0, 1, 2, 3}
    assert len({tuple(t) for t in tex[4].tolist()}) == 4  # four different colours
    # uniform faces stay uniform
    assert torch.equal(tex[1], tex[1, :1].expand(4, 3))


def test_missing_texture_image_warns_and_is_white():
    with pytest.warns(UserWarning, match="no_such_image.png"):
        _, _, tex = load_obj(OBJ / "missing_texture.obj", load_texture=True, texture_res=2)
    assert torch.equal(tex, torch.ones(1, 4, 3))


def test_undefined_material_and_missing_mtl_warn(tmp_path):
    (tmp_path / "m.obj").write_text("mtllib nowhere.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nusemtl ghost\nf 1 2 3\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, _, tex = load_obj(tmp_path / "m.obj", load_texture=True)
    messages = [str(w.message) for w in caught]
    assert any("nowhere.mtl" in m for m in messages), messages
    assert any("'ghost'" in m for m in messages), messages
    assert torch.equal(tex, torch.ones(1, 1, 3))


# ---------------------------------------------------------------------------------------
# malformed files


@pytest.mark.parametrize(
    "name, line, what",
    [
        ("bad_coord.obj", 3, "non-numeric"),
        ("bad_vertex_short.obj", 1, "at least 3"),
        ("bad_index_zero.obj", 6, "index 0"),
        ("bad_index_range.obj", 7, "vertex index 7 out of range"),
        ("bad_negative_range.obj", 4, "vertex index -4 out of range"),
        ("bad_uv_range.obj", 5, "texture coordinate index 2 out of range"),
        ("bad_token.obj", 6, "unknown face vertex format"),
        ("bad_index_text.obj", 4, "non-integer vertex index"),
    ],
)
def test_malformed_obj(name, line, what):
    with pytest.raises(ValueError) as info:
        load_obj(OBJ / name)
    msg = str(info.value)
    assert f"{name}:{line}:" in msg, msg
    assert what in msg, msg
    with pytest.raises(ValueError, match=re.escape(f"{name}:{line}:")):
        load_obj_geometry(OBJ / name)


def test_malformed_mtl():
    load_obj(OBJ / "bad_mtl.obj")  # geometry alone does not read the MTL
    with pytest.raises(ValueError, match=re.escape("bad_mtl.mtl:3:")):
        load_obj(OBJ / "bad_mtl.obj", load_texture=True)


# ---------------------------------------------------------------------------------------
# writing


@pytest.mark.parametrize("R", [1, 3, 4])
def test_save_load_round_trip_surface(tmp_path, R):
    gen = torch.Generator().manual_seed(R)
    v, f = load_obj(SPHERE)
    v = v * 3.7 + torch.randn(v.shape, generator=gen) * 1e-3  # arbitrary float32 values
    tex = torch.rand(f.shape[0], R * R, 3, generator=gen)
    tex[0] = 0.0
    tex[1] = 1.0
    (tmp_path / "other.png").write_bytes(b"keep me")
    save_obj(tmp_path / "mesh.obj", v, f, tex)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mesh.mtl", "mesh.obj", "mesh.png", "other.png"]
    assert (tmp_path / "other.png").read_bytes() == b"keep me"
    v2, f2, tex2 = load_obj(tmp_path / "mesh.obj", load_texture=True, texture_res=R)
    assert torch.equal(v2, v)
    assert torch.equal(f2, f)
    err = float((tex2 - tex).abs().max())
    assert err <= 1 / 255, err
    assert err <= 0.5 / 255 + 1e-6, err  # only the 8-bit rounding


def test_save_load_round_trip_spot_texture(tmp_path):
    v, f, tex = load_obj(SPOT, load_texture=True, texture_res=2)
    save_obj(tmp_path / "spot.obj", v, f, tex, texture_res_out=8)
    v2, f2, tex2 = load_obj(tmp_path / "spot.obj", load_texture=True, texture_res=2)
    assert torch.equal(v2, v) and torch.equal(f2, f)
    assert float((tex2 - tex).abs().max()) <= 1 / 255


def test_save_load_round_trip_vertex_and_plain(tmp_path):
    gen = torch.Generator().manual_seed(7)
    v = torch.randn(50, 3, generator=gen) * torch.tensor([1e-6, 1.0, 1e6])
    f = torch.randint(0, 50, (80, 3), generator=gen)
    col = torch.rand(50, 3, generator=gen)
    save_obj(tmp_path / "vc.obj", v, f, col, texture_type="vertex")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vc.obj"]
    v2, f2, col2 = load_obj(tmp_path / "vc.obj", load_texture=True, texture_type="vertex")
    assert torch.equal(v2, v) and torch.equal(f2, f)
    assert float((col2 - col).abs().max()) <= 1 / 255
    save_obj(tmp_path / "plain.obj", v.double(), f)  # float64 input: loads back as its float32 cast
    v3, f3 = load_obj(tmp_path / "plain.obj")
    assert torch.equal(v3, v) and torch.equal(f3, f)
    save_obj(tmp_path / "plain.obj", v[:3], f[:0])  # overwrites the file asked for
    obj = read_obj(tmp_path / "plain.obj")
    assert obj.vertices.shape == (3, 3) and obj.faces.shape == (0, 3)
    with pytest.raises(ValueError, match="no faces in"):  # no mesh to load
        load_obj(tmp_path / "plain.obj")


def test_save_obj_rejects_bad_input(tmp_path):
    v, f = torch.zeros(3, 3), torch.tensor([[0, 1, 2]])
    with pytest.raises(ValueError, match="face indices"):
        save_obj(tmp_path / "x.obj", v, torch.tensor([[0, 1, 3]]))
    with pytest.raises(ValueError, match="surface textures"):
        save_obj(tmp_path / "x.obj", v, f, torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match="vertex textures"):
        save_obj(tmp_path / "x.obj", v, f, torch.zeros(2, 3), texture_type="vertex")


# ---------------------------------------------------------------------------------------
# voxels


def _check_closed_outward(v: torch.Tensor, f: torch.Tensor, centre: np.ndarray | None = None):
    """Each directed edge once, its reverse once (closed, consistently oriented); normals
    (v1-v0) x (v2-v0) point away from ``centre`` (convex solids)."""
    edges = {}
    for a, b, c in f.tolist():
        for e in ((a, b), (b, c), (c, a)):
            edges[e] = edges.get(e, 0) + 1
    assert all(n == 1 for n in edges.values())
    assert all((b, a) in edges for a, b in edges)
    if centre is not None:
        tri = v[f].double().numpy()
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        out = tri.mean(1) - centre
        assert ((n * out).sum(1) > 0).all()


def test_voxel_to_mesh():
    one = np.zeros((3, 3, 3), bool)
    one[1, 2, 0] = True
    v, f = voxel_to_mesh(one)
    assert v.shape == (8, 3) and f.shape == (12, 3)
    assert v.min(0).values.tolist() == [1, 2, 0] and v.max(0).values.tolist() == [2, 3, 1]
    _check_closed_outward(v, f, np.array([1.5, 2.5, 0.5]))
    two = torch.zeros(4, 4, 4)
    two[0, 0, 0] = two[1, 0, 0] = 1.0
    v, f = voxel_to_mesh(two)
    assert v.shape == (12, 3) and f.shape == (20, 3)  # the shared face is not written
    _check_closed_outward(v, f, np.array([1.0, 0.5, 0.5]))
    v, f = voxel_to_mesh(torch.ones(3, 3, 3, dtype=torch.bool))
    assert v.shape == (56, 3) and f.shape == (108, 3)
    _check_closed_outward(v, f, np.array([1.5, 1.5, 1.5]))
    v, f = voxel_to_mesh(np.zeros((2, 2, 2)))
    assert v.shape == (0, 3) and f.shape == (0, 3)


def test_save_voxel(tmp_path):
    grid = np.zeros((5, 5, 5), np.float32)
    grid[1:4, 2, 2] = 1.0
    grid[2, 1:4, 2] = 0.9
    save_voxel(tmp_path / "vox.obj", grid)
    v, f = load_obj(tmp_path / "vox.obj")
    assert f.shape == (2 * 22, 3)  # a plus sign of 5 cubes: 22 exposed squares
    _check_closed_outward(v, f)
    assert v.min().item() == 1 and v.max().item() == 4
