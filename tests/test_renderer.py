"""sr.SoftRenderer / sr.SoftRasterizer / sr.Renderer: the SoftRas-compatible modules and names."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import softras as sr
import softras.functional as srf

SPHERE = "data/sphere_642.obj"
SPOT = "data/spot_triangulated.obj"


def _sphere(scale: float = 0.5) -> sr.Mesh:
    m = sr.Mesh.from_obj(SPHERE)
    m.vertices = m.vertices * scale
    return m


def _spot(R: int = 2) -> sr.Mesh:
    return sr.Mesh.from_obj(SPOT, load_texture=True, texture_res=R)


def test_default_camera_renders_sphere_centred():
    r = sr.SoftRenderer(image_size=64)  # no P, no eye needed
    assert r.transform.camera_mode == "look_at"
    assert r.transform.eyes.flatten().tolist() == pytest.approx([0, 0, -2.7320508], abs=1e-6)
    img = r.render_mesh(_sphere())
    assert img.shape == (1, 4, 64, 64)
    alpha = img[0, 3]
    assert float(alpha.sum()) > 100
    rows = torch.arange(64, dtype=torch.float32)[:, None]
    cols = torch.arange(64, dtype=torch.float32)[None, :]
    m = alpha.sum()
    assert float((alpha * rows).sum() / m) == pytest.approx(31.5, abs=0.3)
    assert float((alpha * cols).sum() / m) == pytest.approx(31.5, abs=0.3)
    assert float(alpha[31, 31]) > 0.99 and float(alpha[0, 0]) == 0
    # lit white sphere: brighter on top (light from +y) than at the bottom, never above 1
    rgb = img[0, :3]
    assert float(rgb.max()) <= 1 + 1e-6
    # (the disc has a radius of tan(asin(0.5 / 2.732)) / tan(30) * 32 = 10.3 pixels)
    assert float(alpha[24, 32]) > 0.9 and float(alpha[39, 32]) > 0.9
    assert float(rgb[0, 24, 32]) > float(rgb[0, 39, 32]) + 0.2


@pytest.mark.parametrize("fill_back", [True, False])
@pytest.mark.parametrize("textured", ["surface", "vertex"])
def test_render_mesh_does_not_mutate_the_mesh(fill_back, textured):
    if textured == "surface":
        m = _spot()
    else:
        m = _sphere()
        m = sr.Mesh(m.vertices, m.faces, torch.rand(1, m.num_vertices, 3), texture_type="vertex")
    v, f, t = m.vertices, m.faces, m.textures
    vc, fc, tc = v.clone(), f.clone(), t.clone()
    r = sr.SoftRenderer(image_size=32, fill_back=fill_back, light_intensity_directionals=0.7)
    r.transform.set_eyes_from_angles(2.732, 30, 45)
    img = r.render_mesh(m)
    assert float(img[0, 3].sum()) > 10
    assert m.vertices is v and m.faces is f and m.textures is t
    assert torch.equal(v, vc) and torch.equal(f, fc) and torch.equal(t, tc)
    assert m.num_faces == fc.shape[1]


def test_forward_equals_render_mesh():
    m = _spot()
    r = sr.SoftRenderer(image_size=48)
    r.transform.set_eyes_from_angles(2.732, 20, 135)
    a = r(m.vertices, m.faces, m.textures)
    b = r.render_mesh(sr.Mesh(m.vertices, m.faces, m.textures))
    assert torch.equal(a, b)
    # vertex colours through forward
    colours = torch.rand(1, m.num_vertices, 3, generator=torch.Generator().manual_seed(0))
    a = r(m.vertices, m.faces, colours, texture_type="vertex")
    b = r.render_mesh(sr.Mesh(m.vertices, m.faces, colours, texture_type="vertex"))
    assert torch.equal(a, b)


def test_set_sigma_and_gamma_change_the_output():
    m = _sphere()
    r = sr.SoftRenderer(image_size=32)
    sharp = r.render_mesh(m)
    r.set_sigma(1e-3)
    blurry = r.render_mesh(m)
    assert r.rasterizer.sigma_val == 1e-3
    # blurrier alpha spreads wider: more pixels with alpha > 0.01 and a larger total
    assert float(blurry[0, 3].sum()) > float(sharp[0, 3].sum()) + 10
    assert int((blurry[0, 3] > 0.01).sum()) > int((sharp[0, 3] > 0.01).sum())
    # gamma only changes colours (the depth softmax), not alpha
    r.set_sigma(1e-5)
    m2 = _spot()
    r.transform.set_eyes_from_angles(2.732, 20, 135)
    g1 = r.render_mesh(m2)
    r.set_gamma(1e-1)
    g2 = r.render_mesh(m2)
    assert r.rasterizer.gamma_val == 1e-1
    assert torch.equal(g1[:, 3], g2[:, 3])
    assert float((g1[:, :3] - g2[:, :3]).abs().max()) > 0.05


def test_set_texture_mode():
    r = sr.SoftRenderer(image_size=16)
    r.set_texture_mode("vertex")
    assert r.lighting.light_mode == "vertex" and r.rasterizer.texture_type == "vertex"
    r.set_texture_mode("surface")
    assert r.lighting.light_mode == "surface" and r.rasterizer.texture_type == "surface"
    with pytest.raises(ValueError, match="mode"):
        r.set_texture_mode("uv")
    # render_mesh follows the mesh's texture type
    m = _sphere()
    mv = sr.Mesh(m.vertices, m.faces, torch.ones(1, m.num_vertices, 3), texture_type="vertex")
    img = r.render_mesh(mv)
    assert r.rasterizer.texture_type == "vertex" and float(img[0, 3].sum()) > 5


def test_vertex_and_surface_white_meshes_render_alike():
    """A white mesh lit per vertex and per face: identical alpha, similar shading."""
    m = _sphere()
    mv = sr.Mesh(m.vertices, m.faces, torch.ones(1, m.num_vertices, 3), texture_type="vertex")
    r = sr.SoftRenderer(image_size=32)
    a, b = r.render_mesh(m), r.render_mesh(mv)
    torch.testing.assert_close(a[:, 3], b[:, 3])
    inside = a[0, 3] > 0.99
    assert float((a[0, :3] - b[0, :3]).abs()[:, inside].mean()) < 0.03


def test_anti_aliasing_equals_avg_pool_of_double_size():
    m = _spot()
    kw = dict(sigma_val=1e-4, gamma_val=1e-3)
    aa = sr.SoftRenderer(image_size=32, anti_aliasing=True, **kw)
    big = sr.SoftRenderer(image_size=64, anti_aliasing=False, **kw)
    for r in (aa, big):
        r.transform.set_eyes_from_angles(2.732, 20, 135)
    a = aa.render_mesh(m)
    b = F.avg_pool2d(big.render_mesh(m), kernel_size=2, stride=2)
    assert a.shape == (1, 4, 32, 32)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    # non-square
    aa = sr.SoftRenderer(image_size=(24, 40), anti_aliasing=True, **kw)
    big = sr.SoftRenderer(image_size=(48, 80), **kw)
    torch.testing.assert_close(aa.render_mesh(m), F.avg_pool2d(big.render_mesh(m), 2), atol=1e-6, rtol=0)


def test_list_of_meshes_equals_separate_renders():
    spot = _spot(R=2)
    sphere = _sphere()
    sphere = sr.Mesh(sphere.vertices, sphere.faces, torch.rand(1, sphere.num_faces, 4, 3))
    two = sr.Mesh(torch.cat([spot.vertices, spot.vertices * 0.8]), spot.faces[0], torch.cat([spot.textures] * 2))
    r = sr.SoftRenderer(image_size=32, sigma_val=1e-4)
    # one eye for all images
    r.transform.set_eyes_from_angles(2.732, 20, 135)
    together = r.render_mesh([spot, sphere, two])
    separate = torch.cat([r.render_mesh(spot), r.render_mesh(sphere), r.render_mesh(two)])
    assert together.shape == (4, 4, 32, 32)
    torch.testing.assert_close(together, separate, atol=1e-6, rtol=0)
    # one eye per image
    eyes = srf.get_points_from_angles(2.732, 20, torch.tensor([0.0, 90.0, 180.0, 270.0]))
    r.transform.set_eyes(eyes)
    together = r.render_mesh([spot, sphere, two])
    parts = []
    for mesh, e in ((spot, eyes[:1]), (sphere, eyes[1:2]), (two, eyes[2:])):
        r.transform.set_eyes(e)
        parts.append(r.render_mesh(mesh))
    torch.testing.assert_close(together, torch.cat(parts), atol=1e-6, rtol=0)


def test_hard_renderer_binary_alpha():
    r = sr.Renderer(image_size=32, anti_aliasing=False)
    assert r.rasterizer.dist_func == "hard" and r.rasterizer.aggr_func_alpha == "hard"
    img = r.render_mesh(_spot())
    alpha = img[0, 3]
    assert set(alpha.unique().tolist()) == {0.0, 1.0}
    assert float(alpha.sum()) > 30
    # the hard alpha is the soft one thresholded (up to a few boundary pixels)
    soft = sr.SoftRenderer(image_size=32, sigma_val=1e-7).render_mesh(_spot())[0, 3]
    assert int(((soft > 0.5).float() != alpha).sum()) <= 3
    # anti-aliased by default: fractional edge values
    aa = sr.Renderer(image_size=32).render_mesh(_spot())[0, 3]
    assert bool(((aa > 0) & (aa < 1)).any())


def test_one_mesh_many_eyes():
    m = _spot()
    r = sr.SoftRenderer(image_size=32)
    r.transform.set_eyes_from_angles([2.732] * 4, [0, 20, 40, 60], [0, 90, 180, 270])
    img = r.render_mesh(m)
    assert img.shape == (4, 4, 32, 32)
    for k in range(4):
        assert float(img[k, 3].sum()) > 20
    assert float((img[0] - img[2]).abs().max()) > 0.5  # different views
    # each image equals the single-eye render
    eyes = r.transform.eyes.clone()
    r.transform.set_eyes(eyes[2])
    torch.testing.assert_close(img[2:3], r.render_mesh(m), atol=1e-6, rtol=0)


def test_vertex_texture_mesh_renders_colours():
    m = _sphere()
    colours = torch.zeros(1, m.num_vertices, 3)
    colours[..., 0] = 1.0  # red
    mv = sr.Mesh(m.vertices, m.faces, colours, texture_type="vertex")
    r = sr.SoftRenderer(image_size=32, light_intensity_ambient=1.0, light_intensity_directionals=0.0)
    img = r.render_mesh(mv)
    inside = img[0, 3] > 0.99
    assert int(inside.sum()) > 30
    torch.testing.assert_close(img[0, 0][inside], torch.ones(int(inside.sum())), atol=1e-4, rtol=0)
    assert float(img[0, 1:3][:, inside].abs().max()) < 1e-4


def test_soft_rasterizer_module_on_projected_mesh():
    m = _sphere()
    t = sr.Transform(eye=[0.0, 0.0, -2.732])
    projected = t(m)
    assert projected is not m and torch.equal(m.vertices, _sphere().vertices)
    img = sr.SoftRasterizer(image_size=32)(projected)
    ref = srf.soft_rasterize(projected.face_vertices, projected.face_textures, image_size=32)
    torch.testing.assert_close(img, ref)


def test_gradients_match_finite_differences():
    """d(weighted image sum) / d(vertex coordinates, texels) against float64 central
    differences, at the entries with the largest gradients (so none of them is trivially 0)."""
    m = _spot(R=1)
    v0, t0 = m.vertices.double(), m.textures.double()
    weights = torch.rand(1, 4, 24, 24, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    r = sr.SoftRenderer(image_size=24, sigma_val=1e-3, gamma_val=1e-2)
    r.transform.set_eyes_from_angles(2.732, 20, 135)

    def loss(v, t):
        return (r(v, m.faces, t) * weights).sum()

    v, t = v0.clone().requires_grad_(True), t0.clone().requires_grad_(True)
    loss(v, t).backward()
    h = 1e-6
    for x0, grad, is_vertex in ((v0, v.grad, True), (t0, t.grad, False)):
        top = grad.flatten().abs().topk(4).indices
        assert float(grad.flatten().abs()[top[-1]]) > 1e-3
        for i in top.tolist():
            e = torch.zeros(x0.numel(), dtype=torch.float64)
            e[i] = h
            e = e.view_as(x0)
            with torch.no_grad():
                plus = loss(x0 + e, t0) if is_vertex else loss(v0, x0 + e)
                minus = loss(x0 - e, t0) if is_vertex else loss(v0, x0 - e)
            fd = float((plus - minus) / (2 * h))
            assert float(grad.flatten()[i]) == pytest.approx(fd, rel=1e-4, abs=1e-6)


TAN30 = math.tan(math.radians(30))


def _edge_triangle_ndc() -> torch.Tensor:
    """A triangle in NDC at depth 2 whose right edge is x = 0.25: in a 4 x 4 image the pixel
    centres x = -0.75, -0.25 lie inside, x = 0.25 on the edge and x = 0.75 outside (rows alike)."""
    return torch.tensor([[[-3.0, -3.0, 2.0], [0.25, -3.0, 2.0], [0.25, 3.0, 2.0]]])


def test_softras_names_compute_hand_values(tmp_path):
    """The SoftRas names used as SoftRas scripts use them, each against numbers by hand."""
    # srf.face_vertices is indexing; srf.vertex_normals of the corner tetrahedron
    v = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]])
    f = torch.tensor([[[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]])
    torch.testing.assert_close(srf.face_vertices(v, f)[0, 3], torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]]))
    # vertex 0: faces with normals -z, -y, -x; vertex 1: -z, -y and (1, 1, 1) (unnormalized)
    n = srf.vertex_normals(v, f)[0]
    torch.testing.assert_close(n[0], -torch.ones(3) / 3**0.5)
    torch.testing.assert_close(n[1], torch.tensor([1.0, 0, 0]))
    assert sr.Mesh(v, f).num_faces == 4

    # cameras: a point (0.5, 0.25, 0) seen from (0, 0, -d)
    p = torch.tensor([[[0.5, 0.25, 0.0]]])
    d = 2.732
    hand = torch.tensor([[[0.5 / (d * TAN30), 0.25 / (d * TAN30), d]]])
    torch.testing.assert_close(srf.perspective(srf.look_at(p, [0.0, 0.0, -d])), hand)
    torch.testing.assert_close(srf.perspective(srf.look(p, [0.0, 0.0, -d])), hand)
    torch.testing.assert_close(sr.LookAt(eye=[0.0, 0.0, -d])(p), hand)
    torch.testing.assert_close(sr.Look(eye=[0.0, 0.0, -d])(p), hand)
    moved = sr.Transform(eye=[0.0, 0.0, -d])(sr.Mesh(p.expand(1, 3, 3), [[0, 1, 2]]))
    torch.testing.assert_close(moved.vertices, hand.expand(1, 3, 3))
    torch.testing.assert_close(srf.orthogonal(srf.look_at(p, [0.0, 0.0, -d]), 2.0), torch.tensor([[[1.0, 0.5, d]]]))
    assert srf.get_points_from_angles(d, 0.0, 90.0)[0].tolist() == pytest.approx([d, 0.0, 0.0], abs=1e-6)
    # pinhole: f = 256, principal point (256, 256), 512 x 512, camera 2 in front: (u, v) = (320, 288)
    P = torch.tensor([[[256.0, 0, 256, 512], [0, 256, 256, 512], [0, 0, 1, 2]]])  # K [I | (0, 0, 2)]
    expected = torch.tensor([[[2 * 320 / 512 - 1, 1 - 2 * 288 / 512, 2.0]]])
    torch.testing.assert_close(srf.projection(p, P, orig_size=512), expected)
    torch.testing.assert_close(sr.Projection(P, orig_size=512)(p), expected)

    # lighting: ambient adds I c; directional adds I c max(0, n . d)
    light = torch.zeros(1, 3, 3)
    ambient = torch.tensor([[0.4, 0.2, 0.0]] * 3)[None]
    torch.testing.assert_close(srf.ambient_lighting(light, 0.4, (1.0, 0.5, 0.0)), ambient)
    torch.testing.assert_close(sr.AmbientLighting(0.4, (1.0, 0.5, 0.0))(light), ambient)
    normals = torch.tensor([[[0.0, 1, 0], [0.6, 0.8, 0], [0, -1, 0]]])
    lit = torch.tensor([0.5, 0.4, 0.0])[None, :, None].expand(1, 3, 3)
    torch.testing.assert_close(srf.directional_lighting(light, normals, 0.5, (1.0, 1.0, 1.0), (0.0, 2.0, 0.0)), lit)
    torch.testing.assert_close(sr.DirectionalLighting(0.5, (1, 1, 1), (0, 1, 0))(light, normals), lit)
    # a grey face facing up (+y, towards the light) and one facing down: 0.5 * (0.5 + 0.5) and 0.5 * 0.5
    flat_v = torch.tensor([[0.0, 0, 0], [0, 0, 1], [1, 0, 0]])
    flat = sr.Mesh(flat_v, torch.tensor([[0, 1, 2], [0, 2, 1]]), torch.full((2, 1, 3), 0.5))
    torch.testing.assert_close(sr.Lighting()(flat).textures[0, :, 0, 0], torch.tensor([0.5, 0.25]))

    # losses: the Laplacian of K4 (the corner tetrahedron) is x_i - mean of the other three:
    # |0 - (1,1,1)/3|^2 + 3 |e_k - (sum of the other two)/3|^2 = 1/3 + 3 * 11/9 = 4
    torch.testing.assert_close(sr.LaplacianLoss(v[0], f[0])(v), torch.tensor([4.0]))
    # a regular tetrahedron: cos(dihedral) = 1/3 on each of its 6 edges -> 6 (1/3 + 1)^2 = 32/3
    tet = torch.tensor([[[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]], dtype=torch.float64)
    tet_f = torch.tensor([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])
    torch.testing.assert_close(sr.FlattenLoss(tet_f)(tet), torch.tensor([32 / 3], dtype=torch.float64))

    # OBJ: a hand-written file loads 0-based; saving and loading returns it
    (tmp_path / "tri.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 2 0\nf 1 2 3\n")
    tv, tf = srf.load_obj(tmp_path / "tri.obj")
    torch.testing.assert_close(tv, torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 2, 0]]))
    assert tf.tolist() == [[0, 1, 2]]
    srf.save_obj(tmp_path / "copy.obj", tv, tf)
    assert [torch.equal(a, b) for a, b in zip(srf.load_obj(tmp_path / "copy.obj"), (tv, tf))] == [True, True]

    # voxels: the cube [-0.25, 0.25]^3 at S = 4 maps to [1.25, 2.75]^3: voxels 1 and 2 on each axis
    cube_v = torch.tensor([[x, y, z] for x in (-0.25, 0.25) for y in (-0.25, 0.25) for z in (-0.25, 0.25)])
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    cube_f = torch.tensor([t for a, b, c, e in quads for t in ((a, b, c), (a, c, e))])
    vox = srf.voxelization(cube_v[cube_f][None], size=4)
    expected_vox = torch.zeros(1, 4, 4, 4, dtype=torch.bool)
    expected_vox[0, 1:3, 1:3, 1:3] = True
    assert torch.equal(vox, expected_vox)
    # one occupied voxel (1, 2, 3) is written as its 6 faces: 12 triangles spanning [1, 2] x [2, 3] x [3, 4]
    one = torch.zeros(4, 4, 4, dtype=torch.bool)
    one[1, 2, 3] = True
    srf.save_voxel(tmp_path / "vox.obj", one)
    ov, of = srf.load_obj(tmp_path / "vox.obj")
    assert of.shape == (12, 3)
    assert ov.min(0).values.tolist() == [1.0, 2.0, 3.0] and ov.max(0).values.tolist() == [2.0, 3.0, 4.0]

    # rasterizers: alpha 1 inside, 0.5 on the edge (D = sigmoid(0)), 0 outside
    fv = _edge_triangle_ndc()
    white = torch.ones(1, 1, 1, 3)
    row = torch.tensor([1.0, 1.0, 0.5, 0.0])
    torch.testing.assert_close(srf.soft_rasterize(fv[None], white, image_size=4)[0, 3], row.expand(4, 4))
    projected = sr.Mesh(fv[0], [[0, 1, 2]])
    torch.testing.assert_close(sr.SoftRasterizer(image_size=4)(projected)[0, 3], row.expand(4, 4))
    # the hard renderer covers the closed triangle: the edge pixels count as inside
    hard = sr.Renderer(image_size=4, anti_aliasing=False).rasterizer(projected)[0, 3]
    torch.testing.assert_close(hard, torch.tensor([1.0, 1.0, 1.0, 0.0]).expand(4, 4))
    # the same triangle in the world, seen by SoftRenderer from (0, 0, -2) (x_ndc = x / (2 tan 30))
    world = fv[0].clone()
    world[:, :2] *= 2 * TAN30
    world[:, 2] = 0.0
    img = sr.SoftRenderer(image_size=4, eye=[0.0, 0.0, -2.0])(world[None], torch.tensor([[[0, 1, 2]]]))
    torch.testing.assert_close(img[0, 3], row.expand(4, 4), atol=1e-5, rtol=0)


def test_eye_count_mismatch_raises():
    m = _sphere()
    r = sr.SoftRenderer(image_size=16)
    r.transform.set_eyes(srf.get_points_from_angles(2.732, 0, torch.tensor([0.0, 90.0])))
    with pytest.raises(ValueError, match="eye"):
        r.render_mesh([m, m, m])  # 3 images, 2 eyes
    two = sr.Mesh(torch.cat([m.vertices] * 2), m.faces[0])
    r.transform.set_eyes(srf.get_points_from_angles(2.732, 0, torch.tensor([0.0, 90.0, 180.0])))
    with pytest.raises(ValueError, match="eye"):
        r.render_mesh(two)  # a batch of 2 meshes, 3 eyes
