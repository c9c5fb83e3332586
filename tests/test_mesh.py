"""sr.Mesh: construction from numpy / tensors, default textures, derived tensors, fill_back_,
reset_, devices, shape errors, OBJ round trip and voxelization."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import softras as sr
import softras.functional as srf

SPOT = "data/spot_triangulated.obj"


def _tetra():
    v = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    return v, f


def test_from_numpy_default_device_and_dtypes():
    v, f = _tetra()  # float64 / int64 numpy
    m = sr.Mesh(v, f)
    assert m.vertices.device == torch.device("cpu") and m.device == torch.device("cpu")
    assert m.vertices.dtype == torch.float32
    assert m.faces.dtype == torch.int64
    assert m.textures.dtype == torch.float32
    assert m.vertices.shape == (1, 4, 3) and m.faces.shape == (1, 4, 3)  # batch dim added
    np.testing.assert_array_equal(m.vertices[0].numpy(), v.astype(np.float32))
    # int32 faces, float32 vertices, Python lists
    m = sr.Mesh(v.astype(np.float32), f.astype(np.int32))
    assert (m.vertices.dtype, m.faces.dtype) == (torch.float32, torch.int64)
    m = sr.Mesh(v.tolist(), f.tolist())
    assert (m.vertices.dtype, m.faces.dtype) == (torch.float32, torch.int64)
    # a float64 tensor keeps its dtype (gradchecks), textures follow it
    m = sr.Mesh(torch.from_numpy(v), torch.from_numpy(f))
    assert m.vertices.dtype == torch.float64 and m.textures.dtype == torch.float64


def test_batched_inputs_and_shared_faces():
    v, f = _tetra()
    vb = np.stack([v, v * 2, v * 3]).astype(np.float32)
    m = sr.Mesh(vb, f)  # one face list for the whole batch
    assert m.batch_size == 3 and m.faces.shape == (3, 4, 3)
    assert (m.num_vertices, m.num_faces) == (4, 4)
    with pytest.raises(ValueError, match="faces"):
        sr.Mesh(vb, np.stack([f, f]))


def test_default_textures_white_with_shapes():
    v, f = _tetra()
    m = sr.Mesh(v, f)
    assert m.textures.shape == (1, 4, 1, 3) and bool((m.textures == 1).all())
    assert m.texture_res == 1 and m.texture_type == "surface"
    m = sr.Mesh(v, f, texture_res=3)
    assert m.textures.shape == (1, 4, 9, 3) and bool((m.textures == 1).all())
    assert m.texture_res == 3
    m = sr.Mesh(v, f, texture_type="vertex")
    assert m.textures.shape == (1, 4, 3) and bool((m.textures == 1).all())
    m = sr.Mesh(np.stack([v, v]), f, texture_type="vertex")
    assert m.textures.shape == (2, 4, 3)


def test_face_vertices_and_face_textures():
    v, f = _tetra()
    m = sr.Mesh(v, f)
    fv = m.face_vertices
    assert fv.shape == (1, 4, 3, 3)
    np.testing.assert_array_equal(fv[0].numpy(), v[f].astype(np.float32))
    torch.testing.assert_close(fv, srf.face_vertices(m.vertices, m.faces))
    tex = torch.rand(1, 4, 4, 3)
    m = sr.Mesh(v, f, tex)
    assert m.face_textures is m.textures or torch.equal(m.face_textures, tex)
    colours = np.random.default_rng(0).random((4, 3)).astype(np.float32)
    m = sr.Mesh(v, f, colours, texture_type="vertex")
    assert m.textures.shape == (1, 4, 3)
    assert m.face_textures.shape == (1, 4, 3, 3)
    np.testing.assert_array_equal(m.face_textures[0].numpy(), colours[f])
    # derived tensors follow changes of the vertices
    m.vertices = m.vertices * 2
    np.testing.assert_array_equal(m.face_vertices[0].numpy(), (2 * v[f]).astype(np.float32))


def test_fill_back_doubles_faces_reversed_and_is_idempotent():
    v, f = _tetra()
    tex = torch.rand(1, 4, 1, 3)
    m = sr.Mesh(v, f, tex)
    m.fill_back_()
    assert m.num_faces == 8
    np.testing.assert_array_equal(m.faces[0, :4].numpy(), f)
    np.testing.assert_array_equal(m.faces[0, 4:].numpy(), f[:, ::-1])
    assert m.textures.shape == (1, 8, 1, 3)
    torch.testing.assert_close(m.textures[0, 4:], tex[0])
    # reversed faces have opposite normals
    n = m.surface_normals[0]
    torch.testing.assert_close(n[4:], -n[:4])
    faces, textures = m.faces.clone(), m.textures.clone()
    assert m.fill_back_() is m
    assert torch.equal(m.faces, faces) and torch.equal(m.textures, textures)
    # vertex colours stay per vertex
    mv = sr.Mesh(v, f, texture_type="vertex").fill_back_()
    assert mv.num_faces == 8 and mv.textures.shape == (1, 4, 3)


# Texel t of a face (v0, v1, v2) with texture_res R covers the sub-triangle whose centroid is
# listed here, in units of 1/(3R) of the barycentrics (w0, w1, w2) (softras-math.md, section 2:
# lower cell (a, b) -> texel b*R + a, centroid (3a+1, 3b+1); upper cell -> texel
# (R-1-b)*R + (R-1-a), centroid (3a+2, 3b+2)). Worked out on paper.
TEXEL_CENTROIDS = {
    1: [(1, 1, 1)],
    2: [(1, 1, 4), (4, 1, 1), (1, 4, 1), (2, 2, 2)],
    3: [(1, 1, 7), (4, 1, 4), (7, 1, 1), (1, 4, 4), (4, 4, 1), (2, 5, 2), (1, 7, 1), (5, 2, 2), (2, 2, 5)],
}
# The reversed face (v2, v1, v0) sees the point (w0, w1, w2) as (w2, w1, w0): its texel t covers
# the sub-triangle of the original texel REVERSED_TEXEL[R][t] (swap the first and third entry of
# the centroid above and look the result up).
REVERSED_TEXEL = {1: [0], 2: [1, 0, 2, 3], 3: [2, 1, 0, 4, 3, 5, 6, 8, 7]}


@pytest.mark.parametrize("R", [1, 2, 3])
def test_texel_centroid_table_and_reversed_order_agree(R):
    """The hand tables above are consistent with each other and with texel_barycentrics."""
    from softras.io import texel_barycentrics

    centroids = np.array(TEXEL_CENTROIDS[R], dtype=np.float64) / (3 * R)
    np.testing.assert_allclose(texel_barycentrics(R), centroids, atol=1e-12, rtol=0)
    for t, original in enumerate(REVERSED_TEXEL[R]):
        assert TEXEL_CENTROIDS[R][t][::-1] == TEXEL_CENTROIDS[R][original]


@pytest.mark.parametrize("R", [1, 2, 3])
def test_fill_back_keeps_texels_in_place(R):
    """With R > 1 the reversed copy (v2, v1, v0) swaps w0 and w2; each of its texels must hold
    the colour of the original texel covering the same sub-triangle (hand-written order)."""
    v, f = _tetra()
    tex = torch.rand(1, 4, R * R, 3, generator=torch.Generator().manual_seed(0))
    m = sr.Mesh(v, f, tex).fill_back_()
    for t, original in enumerate(REVERSED_TEXEL[R]):
        torch.testing.assert_close(m.textures[0, 4:, t], tex[0, :, original], atol=0, rtol=0)
    # the centroid of texel t on the back copy is the same 3D point as the centroid of the
    # original texel it takes its colour from
    fv = m.face_vertices[0].double()
    for t, original in enumerate(REVERSED_TEXEL[R]):
        w_back = torch.tensor(TEXEL_CENTROIDS[R][t], dtype=torch.float64) / (3 * R)
        w_front = torch.tensor(TEXEL_CENTROIDS[R][original], dtype=torch.float64) / (3 * R)
        for face in range(4):
            p_back = (w_back[:, None] * fv[4 + face]).sum(0)
            p_front = (w_front[:, None] * fv[face]).sum(0)
            torch.testing.assert_close(p_back, p_front, atol=1e-12, rtol=0)


def test_fill_back_copy_renders_like_the_original():
    """Rasterized, the reversed copy with its reordered texels gives the same image as the
    original face (hard colour, double sided), so the order also agrees with the rasterizer."""
    R = 3
    fv = torch.tensor([[[-0.83, -0.71, 2.0], [0.77, -0.62, 2.0], [-0.05, 0.81, 2.0]]])
    tex = torch.rand(1, R * R, 3, generator=torch.Generator().manual_seed(1))
    m = sr.Mesh(fv[0], torch.tensor([[0, 1, 2]]), tex[None]).fill_back_()
    kwargs = dict(image_size=48, aggr_func_rgb="hard", fill_back=True, sigma_val=1e-6, backend="reference")
    front = srf.soft_rasterize(m.face_vertices[:, :1], m.textures[:, :1], **kwargs)
    back = srf.soft_rasterize(m.face_vertices[:, 1:], m.textures[:, 1:], **kwargs)
    covered = front[0, 3] > 0.5
    assert int(covered.sum()) > 400  # the face covers a good part of the image
    # every texel colour shows up in the original image (so a wrong order would show)
    shown = front[0, :3, covered].T  # [P, 3]
    for t in range(R * R):
        assert bool(((shown - tex[0, t]).abs().max(dim=1).values < 1e-6).any())
    torch.testing.assert_close(back[0, :3, covered], front[0, :3, covered], atol=1e-6, rtol=0)


def test_reset_restores_original():
    v, f = _tetra()
    m = sr.Mesh(v, f)
    v0, f0, t0 = m.vertices.clone(), m.faces.clone(), m.textures.clone()
    m.fill_back_()
    m.vertices = m.vertices + 1
    assert m.reset_() is m
    assert torch.equal(m.vertices, v0) and torch.equal(m.faces, f0) and torch.equal(m.textures, t0)
    m.fill_back_()  # fill_back works again after a reset
    assert m.num_faces == 8


def test_to_cpu_copies():
    v, f = _tetra()
    m = sr.Mesh(v, f).fill_back_()
    c = m.to("cpu")
    assert c is not m and c.device == torch.device("cpu")
    assert torch.equal(c.vertices, m.vertices) and torch.equal(c.faces, m.faces)
    assert torch.equal(c.textures, m.textures)
    assert c.fill_back_().num_faces == 8  # the fill_back state is kept
    assert c.reset_().num_faces == 4
    assert m.cpu().num_faces == 8
    d = m.detach()
    assert not d.vertices.requires_grad and torch.equal(d.vertices, m.vertices)
    assert "Mesh(batch_size=1" in repr(m)


def test_bad_shapes_raise_value_error_naming_the_argument():
    v, f = _tetra()
    with pytest.raises(ValueError, match="vertices"):
        sr.Mesh(np.zeros((4, 2)), f)
    with pytest.raises(ValueError, match="vertices"):
        sr.Mesh(np.zeros((1, 1, 4, 3)), f)
    with pytest.raises(ValueError, match="faces"):
        sr.Mesh(v, np.zeros((4, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="faces"):
        sr.Mesh(v, np.array([[0, 1, 4]]))  # index out of range
    with pytest.raises(ValueError, match="faces"):
        sr.Mesh(v, np.zeros((4, 3)))  # float indices
    with pytest.raises(ValueError, match="textures"):
        sr.Mesh(v, f, np.ones((4, 3, 3)))  # 3 texels: not a square
    with pytest.raises(ValueError, match="textures"):
        sr.Mesh(v, f, np.ones((5, 1, 3)))  # wrong face count
    with pytest.raises(ValueError, match="textures"):
        sr.Mesh(v, f, np.ones((3, 3)), texture_type="vertex")  # wrong vertex count
    with pytest.raises(ValueError, match="texture_type"):
        sr.Mesh(v, f, texture_type="uv")
    m = sr.Mesh(v, f)
    with pytest.raises(ValueError, match="vertices"):
        m.vertices = np.zeros((4, 2))
    with pytest.raises(ValueError, match="textures"):
        m.textures = np.ones((1, 4, 2, 3))


def test_obj_round_trip_with_texture(tmp_path):
    m = sr.Mesh.from_obj(SPOT, load_texture=True, texture_res=2)
    assert m.textures.shape == (1, m.num_faces, 4, 3)
    assert 0.05 < float(m.textures.mean()) < 0.95 and float(m.textures.std()) > 0.05  # a real texture
    path = tmp_path / "spot_copy.obj"
    m.save_obj(path, save_texture=True)
    assert path.exists() and (tmp_path / "spot_copy.mtl").exists() and (tmp_path / "spot_copy.png").exists()
    m2 = sr.Mesh.from_obj(path, load_texture=True, texture_res=2)
    assert torch.equal(m2.vertices, m.vertices) and torch.equal(m2.faces, m.faces)
    assert float((m2.textures - m.textures).abs().max()) <= 1 / 255 + 1e-6
    # the functional pair too, geometry only
    srf.save_obj(tmp_path / "geom.obj", m.vertices[0], m.faces[0])
    v, f = srf.load_obj(tmp_path / "geom.obj")
    assert torch.equal(v, m.vertices[0]) and torch.equal(f, m.faces[0])
    # vertex colours
    colours = torch.rand(1, m.num_vertices, 3, generator=torch.Generator().manual_seed(1))
    mv = sr.Mesh(m.vertices, m.faces, colours, texture_type="vertex")
    mv.save_obj(tmp_path / "vc.obj", save_texture=True)
    mv2 = sr.Mesh.from_obj(tmp_path / "vc.obj", load_texture=True, texture_type="vertex")
    torch.testing.assert_close(mv2.textures, colours, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="batch size"):
        sr.Mesh(torch.stack([m.vertices[0]] * 2), m.faces[0]).save_obj(tmp_path / "two.obj")


def test_from_obj_normalization():
    m = sr.Mesh.from_obj(SPOT, normalization=True)
    v = m.vertices[0]
    assert float(v.abs().max()) == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(v.max(0).values + v.min(0).values, torch.zeros(3), atol=1e-6, rtol=0)


def test_voxelize():
    m = sr.Mesh.from_obj("data/sphere_642.obj")
    m.vertices = m.vertices * 0.4
    vox = m.voxelize()
    assert vox.shape == (1, 32, 32, 32)
    # in voxel units the sphere has centre 16 and radius 0.4 * 31 (v -> (v * 31/32 + 0.5) * 32);
    # the polyhedron lies between 0.98 r and r. Voxel (i, j, k) spans [i, i+1] x ...
    r = 0.4 * 31
    c = torch.arange(32, dtype=torch.float64) + 0.5
    dist = ((c[:, None, None] - 16) ** 2 + (c[None, :, None] - 16) ** 2 + (c[None, None, :] - 16) ** 2).sqrt()
    half_diag = 3**0.5 / 2
    surely_in = dist + half_diag < 0.98 * r  # the whole voxel is inside the polyhedron
    surely_out = dist - half_diag > r  # the whole voxel is outside the sphere
    assert bool(vox[0][surely_in].all())
    assert not bool(vox[0][surely_out].any())
    assert int(surely_in.sum()) > 5000
    batch = sr.Mesh(torch.cat([m.vertices, m.vertices * 0.5]), m.faces[0])
    vb = batch.voxelize(16)
    assert vb.shape == (2, 16, 16, 16)
    assert float(vb[1].float().sum()) < float(vb[0].float().sum())
