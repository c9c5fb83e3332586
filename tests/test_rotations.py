"""Rotations against independent references: matrices written by hand, the matrix exponential
of the skew matrix, finite differences (gradcheck) and round trips."""

from __future__ import annotations

import math

import pytest
import torch

from softras.functional import (
    axis_angle_to_matrix,
    euler_to_matrix,
    matrix_to_rotation_6d,
    matrix_to_rotvec,
    rotation_6d_to_matrix,
    rotation_error_deg,
    rotvec_to_matrix,
)

D = torch.float64


def _skew(v):
    x, y, z = (float(c) for c in v)
    return torch.tensor([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]], dtype=D)


def _rx(t):
    c, s = math.cos(t), math.sin(t)
    return torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=D)


def _ry(t):
    c, s = math.cos(t), math.sin(t)
    return torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=D)


def _rz(t):
    c, s = math.cos(t), math.sin(t)
    return torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=D)


def _random_rotvecs(n, seed=0, max_angle=math.pi):
    g = torch.Generator().manual_seed(seed)
    axis = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=D), dim=-1)
    return axis * (torch.rand(n, 1, generator=g, dtype=D) * max_angle)


def test_6d_gram_schmidt_by_hand():
    # a1 = (0, 0, 2) -> b1 = e_z; a2 = (1, 0, 5) minus its e_z part -> b2 = e_x; b3 = e_z x e_x = e_y
    d6 = torch.tensor([0.0, 0.0, 2.0, 1.0, 0.0, 5.0], dtype=D)
    expected = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=D)  # columns b1 b2 b3
    torch.testing.assert_close(rotation_6d_to_matrix(d6), expected, rtol=0, atol=1e-15)


def test_6d_round_trip_and_orthonormal():
    R = torch.linalg.matrix_exp(torch.stack([_skew(v) for v in _random_rotvecs(16)]))
    torch.testing.assert_close(rotation_6d_to_matrix(matrix_to_rotation_6d(R)), R, rtol=0, atol=1e-12)
    g = torch.Generator().manual_seed(1)
    M = rotation_6d_to_matrix(torch.randn(32, 6, generator=g, dtype=D))
    torch.testing.assert_close(M @ M.transpose(-1, -2), torch.eye(3, dtype=D).expand(32, 3, 3), rtol=0, atol=1e-12)
    assert torch.allclose(torch.linalg.det(M), torch.ones(32, dtype=D), atol=1e-12)


def test_axis_angle_known_matrices():
    # a quarter turn about z takes x to y and y to -x
    expected = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=D)
    R = axis_angle_to_matrix(torch.tensor([0.0, 0.0, 5.0], dtype=D), torch.tensor(math.pi / 2, dtype=D))
    torch.testing.assert_close(R, expected, rtol=0, atol=1e-15)
    R = axis_angle_to_matrix(torch.tensor([1.0, 0.0, 0.0], dtype=D), torch.tensor(0.7, dtype=D))
    torch.testing.assert_close(R, _rx(0.7), rtol=0, atol=1e-15)


def test_rotvec_matches_matrix_exponential():
    r = torch.cat(
        [_random_rotvecs(32), torch.tensor([[1e-9, -2e-9, 3e-9], [0.0, 0.0, 0.0], [5e-5, 0.0, 0.0]], dtype=D)]
    )
    expected = torch.linalg.matrix_exp(torch.stack([_skew(v) for v in r]))
    torch.testing.assert_close(rotvec_to_matrix(r), expected, rtol=0, atol=1e-14)
    # the same angles as axis-angle
    angle = r.norm(dim=-1)
    torch.testing.assert_close(rotvec_to_matrix(r[:32]), axis_angle_to_matrix(r[:32], angle[:32]), rtol=0, atol=1e-14)


def test_rotvec_gradient_at_zero_is_the_generators():
    J = torch.autograd.functional.jacobian(rotvec_to_matrix, torch.zeros(3, dtype=D))  # [3, 3, 3(i)]
    for i in range(3):
        e = torch.zeros(3, dtype=D)
        e[i] = 1
        torch.testing.assert_close(J[..., i], _skew(e), rtol=0, atol=0)


@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e-6])
def test_rotvec_gradcheck(scale):
    r = (_random_rotvecs(4, seed=2) * scale).requires_grad_(True)
    assert torch.autograd.gradcheck(rotvec_to_matrix, (r,))


def test_6d_gradcheck():
    d6 = torch.randn(4, 6, generator=torch.Generator().manual_seed(3), dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(rotation_6d_to_matrix, (d6,))


@pytest.mark.parametrize("max_angle", [1e-7, 0.5, math.pi / 2, math.pi - 1e-6])
def test_matrix_to_rotvec_round_trip(max_angle):
    r = _random_rotvecs(64, seed=4, max_angle=max_angle)
    r = r / r.norm(dim=-1, keepdim=True) * max_angle  # exactly at the bound
    R = torch.linalg.matrix_exp(torch.stack([_skew(v) for v in r]))
    torch.testing.assert_close(matrix_to_rotvec(R), r, rtol=0, atol=1e-9)


def test_matrix_to_rotvec_half_turn_and_identity():
    R = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=D))  # a half turn about x
    out = matrix_to_rotvec(R)
    assert out.abs().tolist() == pytest.approx([math.pi, 0.0, 0.0], abs=1e-12)
    assert matrix_to_rotvec(torch.eye(3, dtype=D)).tolist() == [0.0, 0.0, 0.0]


def test_euler_order_x_then_y_then_z():
    a, b, c = 30.0, -45.0, 100.0
    expected = _rz(math.radians(c)) @ _ry(math.radians(b)) @ _rx(math.radians(a))
    torch.testing.assert_close(euler_to_matrix([a, b, c]), expected, rtol=0, atol=1e-15)
    # x first: (90, 90, 0) takes y to z (by Rx) and then z to x (by Ry)
    y = torch.tensor([0.0, 1.0, 0.0], dtype=D)
    torch.testing.assert_close(
        euler_to_matrix([90, 90, 0]) @ y, torch.tensor([1.0, 0.0, 0.0], dtype=D), atol=1e-15, rtol=0
    )
    with pytest.raises(ValueError, match="degrees: expected 3 angles"):
        euler_to_matrix([1.0, 2.0])


@pytest.mark.parametrize("deg", [0.0, 1e-6, 0.5, 90.0, 179.9999, 180.0])
def test_rotation_error_is_the_angle(deg):
    t = math.radians(deg)
    R_ref = torch.linalg.matrix_exp(_skew([0.3, -0.2, 0.9]))
    R = R_ref @ _ry(t) if deg != 1e-6 else _ry(t) @ R_ref
    assert float(rotation_error_deg(R, R_ref)) == pytest.approx(deg, abs=1e-9, rel=1e-7)


def test_rotation_error_batched_float32():
    R = torch.stack([_rz(math.radians(d)) for d in (10.0, 45.0, 170.0)]).float()
    out = rotation_error_deg(R, torch.eye(3).expand(3, 3, 3))
    assert out.dtype == torch.float64
    assert out.tolist() == pytest.approx([10.0, 45.0, 170.0], abs=1e-4)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match=r"d6: expected shape \[..., 6\], got \[3\]"):
        rotation_6d_to_matrix(torch.zeros(3))
    with pytest.raises(TypeError, match="rotvec: expected a torch.Tensor, got list"):
        rotvec_to_matrix([0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"R_ref: expected shape \[..., 3, 3\], got \[3\]"):
        rotation_error_deg(torch.eye(3), torch.zeros(3))
    with pytest.raises(ValueError, match="axis: expected a floating dtype"):
        axis_angle_to_matrix(torch.tensor([0, 0, 1]), torch.tensor(1.0))
