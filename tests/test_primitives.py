"""Primitives: geometry checked by independent statements (signed volume by the divergence
theorem, normals by hand, the occluder seen through ``look_at``)."""

from __future__ import annotations

import pytest
import torch

from softras.functional import look_at
from softras.primitives import CUBE_COLORS, box, cube, occluder_mesh

D = torch.float64


def _normals(v, f):
    t = v[f].double()
    return torch.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0], dim=-1)


def test_box_outward_with_volume_and_side_order():
    v, f = box([0.5, 1.0, 2.0])
    assert v.shape == (8, 3) and f.shape == (12, 3)
    assert sorted(v[:, 0].unique().tolist()) == [-0.5, 0.5]
    # divergence theorem: the signed volume is positive for outward winding, = 1 * 2 * 4
    t = v[f]
    volume = (t[:, 0] * torch.cross(t[:, 1], t[:, 2], dim=-1)).sum() / 6
    assert float(volume) == pytest.approx(8.0, abs=1e-12)
    n = torch.nn.functional.normalize(_normals(v, f), dim=-1)
    sides = torch.tensor([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=D)
    torch.testing.assert_close(n, sides.repeat_interleave(2, 0), rtol=0, atol=1e-15)


def test_cube_colours_per_side():
    v, f, tex = cube(0.25, texture_res=2)
    assert v.dtype == torch.float32 and v.abs().max() == 0.25
    assert tex.shape == (12, 4, 3)
    expected = torch.tensor(CUBE_COLORS, dtype=torch.float32).repeat_interleave(2, 0)
    for k in range(4):
        assert torch.equal(tex[:, k], expected)
    # the +z side (faces 8, 9) is red in the default palette and lies at z = +0.25
    assert (v[f[8:10]][..., 2] == 0.25).all()
    with pytest.raises(ValueError, match="colors: expected 18 numbers, got 3"):
        cube(1.0, colors=[(1.0, 0.0, 0.0)])
    with pytest.raises(ValueError, match="texture_res: expected an int >= 1, got 0"):
        cube(1.0, texture_res=0)
    with pytest.raises(ValueError, match="half_size: expected a value > 0, got -1"):
        cube(-1)


@pytest.mark.parametrize("kind", ["box", "plane"])
def test_occluder_in_camera_space(kind):
    eye = torch.tensor([1.0, 1.5, -2.5])
    size = [0.6, 0.4, 0.2] if kind == "box" else [0.6, 0.4]
    v, f = occluder_mesh(kind, 1.5, [0.1, -0.2], size, eye)
    cam = look_at(v[None].double(), eye.double())[0]  # camera space: x right, y up, z forward
    lo, hi = cam.min(0).values, cam.max(0).values
    depth = 0.2 if kind == "box" else 0.0
    torch.testing.assert_close((lo + hi) / 2, torch.tensor([0.1, -0.2, 1.5], dtype=D), rtol=0, atol=1e-6)
    torch.testing.assert_close(hi - lo, torch.tensor([0.6, 0.4, depth], dtype=D), rtol=0, atol=1e-6)
    # the faces turned to the camera are front-facing: in camera space their normal points to -z
    n = _normals(cam, f)
    if kind == "plane":
        assert (n[:, 2] < 0).all()
    else:
        centre = cam.mean(0)
        assert ((cam[f].mean(1) - centre) * n).sum(-1).gt(0).all()


def test_occluder_bad_input():
    eye = torch.tensor([0.0, 0.0, -3.0])
    with pytest.raises(ValueError, match="kind: expected one of 'box', 'plane', got 'disc'"):
        occluder_mesh("disc", 1.0, [0, 0], [1, 1], eye)
    with pytest.raises(ValueError, match=r"size: expected 3 numbers \(width, height, depth\), got 2"):
        occluder_mesh("box", 1.0, [0, 0], [1, 1], eye)
    with pytest.raises(ValueError, match="offset: expected 2 numbers, got 3"):
        occluder_mesh("plane", 1.0, [0, 0, 0], [1, 1], eye)
