"""sr.SoftRenderer / sr.SoftRasterizer / sr.Renderer: the SoftRas-compatible modules and names."""

from __future__ import annotations

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


def test_gradients_reach_vertices_and_textures():
    m = _spot(R=1)
    v = m.vertices.clone().requires_grad_(True)
    t = m.textures.clone().requires_grad_(True)
    r = sr.SoftRenderer(image_size=32, sigma_val=1e-4)
    img = r(v, m.faces, t)
    img.sum().backward()
    assert torch.isfinite(v.grad).all() and float(v.grad.abs().sum()) > 0
    assert torch.isfinite(t.grad).all() and float(t.grad.abs().sum()) > 0


def test_compatibility_names_exist():
    for name in [
        "Mesh",
        "SoftRenderer",
        "SoftRasterizer",
        "Renderer",
        "LookAt",
        "Look",
        "Projection",
        "Transform",
        "Lighting",
        "AmbientLighting",
        "DirectionalLighting",
        "LaplacianLoss",
        "FlattenLoss",
    ]:
        assert callable(getattr(sr, name)), name
    for name in [
        "face_vertices",
        "vertex_normals",
        "look_at",
        "look",
        "perspective",
        "orthogonal",
        "projection",
        "get_points_from_angles",
        "ambient_lighting",
        "directional_lighting",
        "load_obj",
        "save_obj",
        "save_voxel",
        "soft_rasterize",
        "voxelization",
    ]:
        assert callable(getattr(srf, name)), name


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
