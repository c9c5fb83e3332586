"""Normals and lighting (docs: softras-math.md, section 5), against hand computations:
``L = I_a c_a + sum_k I_k c_k max(0, n . d_k)``; surface normal normalize((v2-v1) x (v0-v1));
vertex normal = normalized sum of the unnormalized normals of the incident faces."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import softras as sr
import softras.functional as srf


def _mesh_with_normals(normals: list[list[float]], texture_type: str = "surface") -> sr.Mesh:
    """One triangle per requested unit normal (counter-clockwise about it), textures white."""
    verts, faces = [], []
    for k, n in enumerate(normals):
        n = torch.tensor(n, dtype=torch.float64)
        a = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
        if abs(float(n @ a)) > 0.9:
            a = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
        t1 = torch.linalg.cross(n, a)
        t1 = t1 / t1.norm()
        t2 = torch.linalg.cross(n, t1)  # (t1, t2, n) right-handed
        verts += [torch.zeros(3, dtype=torch.float64), t1, t2]
        faces.append([3 * k, 3 * k + 1, 3 * k + 2])
    return sr.Mesh(torch.stack(verts)[None], torch.tensor(faces)[None], texture_type=texture_type)


def test_mesh_helper_normals():
    m = _mesh_with_normals([[0, 1, 0], [1, 0, 0], [0, -1, 0]])
    torch.testing.assert_close(
        m.surface_normals[0], torch.tensor([[0, 1.0, 0], [1, 0, 0], [0, -1, 0]], dtype=torch.float64)
    )


# ---------------------------------------------------------------------------------------
# functional


def test_ambient_and_directional_by_hand():
    normals = torch.tensor([[[0, 1.0, 0], [1, 0, 0], [0, -1, 0], [0, math.sqrt(0.5), math.sqrt(0.5)]]])
    light = srf.ambient_lighting(torch.zeros(1, 4, 3), 0.5)
    assert light[0].flatten().tolist() == pytest.approx([0.5] * 12)
    light = srf.directional_lighting(light, normals, 0.5, (1, 1, 1), (0, 1, 0))
    # facing the light: 0.5 + 0.5; perpendicular: 0.5; facing away: 0.5 (clamped); 45 deg
    expected = [1.0, 0.5, 0.5, 0.5 + 0.5 * math.sqrt(0.5)]
    assert light[0, :, 0].tolist() == pytest.approx(expected, abs=1e-6)
    assert torch.equal(light[0, :, 0], light[0, :, 1]) and torch.equal(light[0, :, 0], light[0, :, 2])
    # the light direction is normalized
    light2 = srf.directional_lighting(torch.zeros(1, 4, 3), normals, 0.5, (1, 1, 1), (0, 7, 0))
    assert light2[0, :, 0].tolist() == pytest.approx([0.5, 0, 0, 0.5 * math.sqrt(0.5)], abs=1e-6)


def test_light_colours_by_hand():
    normals = torch.tensor([[[0, 1.0, 0], [1, 0, 0]]])
    light = srf.ambient_lighting(torch.zeros(1, 2, 3), 0.4, (1.0, 0.5, 0.0))
    light = srf.directional_lighting(light, normals, 0.8, (0.0, 0.5, 1.0), (1, 1, 0))
    c = math.sqrt(0.5)  # n . d for both normals
    expected = [0.4, 0.2 + 0.8 * 0.5 * c, 0.8 * c]
    assert light[0, 0].tolist() == pytest.approx(expected, abs=1e-6)
    assert light[0, 1].tolist() == pytest.approx(expected, abs=1e-6)
    # per-batch colours [B, 3]
    light = srf.ambient_lighting(torch.zeros(2, 1, 3), 1.0, torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]))
    assert light[:, 0].tolist() == [[1.0, 0, 0], [0, 0, 1.0]]
    with pytest.raises(ValueError, match="light_color"):
        srf.ambient_lighting(torch.zeros(1, 1, 3), 1.0, (1.0, 0.0))


def test_surface_normals_known_triangle():
    v0, v1, v2 = [0.2, -0.1, 0.3], [1.5, 0.4, -0.2], [-0.3, 1.1, 0.6]
    v = torch.tensor([[v0, v1, v2]], dtype=torch.float64)
    f = torch.tensor([[[0, 1, 2]]])
    a = [v2[i] - v1[i] for i in range(3)]
    b = [v0[i] - v1[i] for i in range(3)]
    n = [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
    norm = math.sqrt(sum(x * x for x in n))
    expected = [x / norm for x in n]
    out = srf.surface_normals(v, f)
    assert out[0, 0].tolist() == pytest.approx(expected, abs=1e-12)
    # counter-clockwise in the xy plane seen from +z: normal +z
    tri = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]])
    assert srf.surface_normals(tri, f)[0, 0].tolist() == pytest.approx([0, 0, 1.0])
    # reversing the order flips it
    assert srf.surface_normals(tri, f[:, :, [2, 1, 0]])[0, 0].tolist() == pytest.approx([0, 0, -1.0])


def test_vertex_normals_hand_example():
    """Two triangles sharing the edge (0, 1): one in the z = 0 plane (area 1/2, normal +z), one in
    the y = 0 plane with twice the area: (v2 - v1) x (v0 - v1) = (0, 0, 2) x (1, 0, 0) = (0, 2, 0).
    Vertices 0 and 1 get the normalized sum of the unnormalized normals (0, 0, 1) + (0, 2, 0);
    vertex 2 (first face only) +z; vertex 3 (second face only) +y."""
    v = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 2]]], dtype=torch.float64)
    f = torch.tensor([[[0, 1, 2], [1, 0, 3]]])
    n = srf.surface_normals(v, f)[0]
    assert n.tolist() == [[0, 0, 1.0], [0, 1.0, 0]]
    out = srf.vertex_normals(v, f)[0]
    s = 1 / math.sqrt(5)
    assert out[0].tolist() == pytest.approx([0, 2 * s, s], abs=1e-12)
    assert out[1].tolist() == pytest.approx([0, 2 * s, s], abs=1e-12)
    assert out[2].tolist() == pytest.approx([0, 0, 1.0], abs=1e-12)
    assert out[3].tolist() == pytest.approx([0, 1.0, 0], abs=1e-12)
    # the Mesh properties agree
    m = sr.Mesh(v, f)
    torch.testing.assert_close(m.vertex_normals[0], out)
    torch.testing.assert_close(m.surface_normals[0], n)


def test_vertex_normals_of_sphere_point_outward():
    m = sr.Mesh.from_obj("data/sphere_642.obj")
    n = m.vertex_normals[0]
    radial = torch.nn.functional.normalize(m.vertices[0], dim=-1)
    assert float((n * radial).sum(-1).min()) > 0.999
    centre = torch.nn.functional.normalize(m.face_vertices[0].mean(1), dim=-1)
    assert float((m.surface_normals[0] * centre).sum(-1).min()) > 0.99


# ---------------------------------------------------------------------------------------
# modules


def test_lighting_module_default_surface():
    m = _mesh_with_normals([[0, 1, 0], [1, 0, 0], [0, -1, 0]])
    m.textures = torch.full((1, 3, 4, 3), 0.8, dtype=torch.float64)
    lit = sr.Lighting()(m)
    assert lit.textures.shape == (1, 3, 4, 3)
    expected = torch.tensor([1.0, 0.5, 0.5], dtype=torch.float64)[:, None, None] * 0.8
    torch.testing.assert_close(lit.textures[0], expected.expand(3, 4, 3))
    # the input mesh is unchanged
    assert float(m.textures.max()) == pytest.approx(0.8)
    torch.testing.assert_close(sr.Lighting().light(m)[0, :, 0], torch.tensor([1.0, 0.5, 0.5], dtype=torch.float64))


def test_several_directional_lights_sum():
    normals = [[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, -1, 0]]
    m = _mesh_with_normals(normals)
    lighting = sr.Lighting(
        intensity_ambient=0.2,
        color_ambient=(1, 1, 1),
        intensity_directionals=[0.3, 0.6],
        color_directionals=[(1, 0, 0), (0, 0, 1)],
        directions=[(0, 1, 0), (1, 0, 0)],
    )
    light = lighting.light(m)[0]
    expected = torch.tensor([[0.5, 0.2, 0.2], [0.2, 0.2, 0.8], [0.2, 0.2, 0.2], [0.2, 0.2, 0.2]], dtype=torch.float64)
    torch.testing.assert_close(light, expected)
    # one intensity / colour for all directions
    both = sr.Lighting(intensity_ambient=0.0, intensity_directionals=0.5, directions=[(0, 1, 0), (1, 0, 0)])
    torch.testing.assert_close(both.light(m)[0, :, 0], torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="intensity_directionals"):
        sr.Lighting(intensity_directionals=[0.1, 0.2, 0.3], directions=[(0, 1, 0), (1, 0, 0)])


def test_lighting_vertex_mode():
    # vertex normals of the hand example above: (0, 2, 1)/sqrt(5) twice, +z, +y
    v = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 2]]], dtype=torch.float64)
    f = torch.tensor([[[0, 1, 2], [1, 0, 3]]])
    colours = torch.tensor([[[1.0, 1, 1], [0.5, 0.5, 0.5], [1, 0, 0], [0, 1, 0]]], dtype=torch.float64)
    m = sr.Mesh(v, f, colours, texture_type="vertex")
    lighting = sr.Lighting(light_mode="vertex", directions=(0, 0, 1))
    s = 1 / math.sqrt(5)
    expected_light = torch.tensor([0.5 + 0.5 * s, 0.5 + 0.5 * s, 1.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(lighting.light(m)[0, :, 0], expected_light)
    lit = lighting(m)
    torch.testing.assert_close(lit.textures, colours * expected_light[None, :, None])
    assert lit.texture_type == "vertex"
    # face textures of the lit mesh: the lit colours of each face's corners
    torch.testing.assert_close(lit.face_textures[0, 1], lit.textures[0, [1, 0, 3]])


def test_lighting_errors():
    with pytest.raises(ValueError, match="light_mode"):
        sr.Lighting(light_mode="face")
    with pytest.raises(ValueError, match="texture_type"):
        sr.Lighting(light_mode="vertex")(_mesh_with_normals([[0, 1, 0]]))
    with pytest.raises(ValueError, match="light_direction"):
        srf.directional_lighting(torch.zeros(1, 1, 3), torch.zeros(1, 1, 3), light_direction=(0, 1))
    with pytest.raises(ValueError, match="light_mode"):
        sr.SoftRenderer(light_mode="phong")


def test_lighting_is_differentiable():
    v = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0.3, 1, 0.2]]], dtype=torch.float64, requires_grad=True)
    f = torch.tensor([[[0, 1, 2]]])
    d = torch.tensor([0.3, 0.8, 0.5], dtype=torch.float64)

    def fn(v):
        n = srf.surface_normals(v, f)
        return srf.directional_lighting(srf.ambient_lighting(torch.zeros_like(n)), n, 0.5, (1, 1, 1), d)

    assert torch.autograd.gradcheck(fn, (v,))


@pytest.mark.parametrize(
    "direction",
    [(0, 1, 0), [0.0, 1.0, 0.0], [[0, 1, 0]], torch.tensor([0.0, 1.0, 0.0]), np.array([0.0, 1.0, 0.0])],
    ids=["tuple", "list", "list-of-one", "tensor", "ndarray"],
)
def test_one_direction_in_any_form(direction):
    """One light direction given as a tuple, list, tensor [3] or array [3] is one light (a 0-d
    tensor has __len__, which once made a tensor [3] count as three directions)."""
    m = _mesh_with_normals([[0, 1, 0], [1, 0, 0]])
    lighting = sr.Lighting(directions=direction, color_directionals=torch.tensor([1.0, 0.5, 0.0]))
    assert len(lighting.directionals) == 1
    torch.testing.assert_close(
        lighting.light(m)[0], torch.tensor([[1.0, 0.75, 0.5], [0.5, 0.5, 0.5]], dtype=torch.float64)
    )


@pytest.mark.parametrize("as_", [list, torch.tensor, np.array])
def test_several_directions_as_tensor_or_array(as_):
    m = _mesh_with_normals([[0, 1, 0], [1, 0, 0]])
    lighting = sr.Lighting(
        intensity_ambient=0.0,
        intensity_directionals=as_([0.25, 0.75]),
        directions=as_([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
    )
    assert len(lighting.directionals) == 2
    torch.testing.assert_close(lighting.light(m)[0, :, 0], torch.tensor([0.25, 0.75], dtype=torch.float64))
