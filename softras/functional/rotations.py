"""Rotations: the 6D representation, axis-angle, rotation vectors, Euler angles and the
geodesic error between two rotations (stateless, differentiable where stated).

Matrices act on column vectors (``v' = R v``). The 6D representation (Zhou et al., "On the
Continuity of Rotation Representations in Neural Networks", CVPR 2019) is the first two
columns of R: every rotation has one and the map back (Gram-Schmidt) is smooth everywhere,
so an optimizer sees no singularity (Euler angles have gimbal lock, axis-angle one at pi)
and no double cover (a quaternion and its negative are the same rotation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "axis_angle_to_matrix",
    "euler_to_matrix",
    "matrix_to_rotation_6d",
    "matrix_to_rotvec",
    "rotation_6d_to_matrix",
    "rotation_error_deg",
    "rotvec_to_matrix",
]

# below this squared angle, sin(t)/t and (1 - cos t)/t^2 come from their Taylor series
# (the first omitted terms, t^6/5040 and t^6/40320, are below 1e-27)
_SMALL_ANGLE2 = 1e-8


def _check_last(name: str, t: object, size: int) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dim() < 1 or t.shape[-1] != size:
        raise ValueError(f"{name}: expected shape [..., {size}], got {list(t.shape)}")
    if not t.dtype.is_floating_point:
        raise ValueError(f"{name}: expected a floating dtype, got {t.dtype}")
    return t


def _check_matrix(name: str, t: object) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dim() < 2 or t.shape[-2:] != (3, 3):
        raise ValueError(f"{name}: expected shape [..., 3, 3], got {list(t.shape)}")
    return t


def _skew(v: torch.Tensor) -> torch.Tensor:
    """[..., 3] -> the cross-product matrices [..., 3, 3] (``skew(v) u = v x u``)."""
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*x.shape, 3, 3)


def rotation_6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """[..., 6] -> rotation matrices [..., 3, 3]: Gram-Schmidt on the two 3-vectors, which
    become the first two columns; the third is their cross product (Zhou et al. 2019)."""
    _check_last("d6", d6, 6)
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = F.normalize(a1, dim=-1, eps=1e-8)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1, eps=1e-8)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rotation_6d(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] -> their 6D representation [..., 6] (the first two columns)."""
    _check_matrix("R", R)
    return torch.cat([R[..., :, 0], R[..., :, 1]], dim=-1)


def axis_angle_to_matrix(
    axis: torch.Tensor,  # [..., 3]
    angle: torch.Tensor,  # [...]
) -> torch.Tensor:
    """Rodrigues: axes [..., 3] (normalized here) and angles [...] in radians -> [..., 3, 3]."""
    _check_last("axis", axis, 3)
    axis = F.normalize(axis, dim=-1, eps=1e-12)
    K = _skew(axis)
    s, c = torch.sin(angle)[..., None, None], torch.cos(angle)[..., None, None]
    eye = torch.eye(3, dtype=axis.dtype, device=axis.device).expand_as(K)
    return eye + s * K + (1 - c) * (K @ K)


def rotvec_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:  # [..., 3]
    """Rotation vectors (axis times angle in radians) [..., 3] -> [..., 3, 3].

    ``R = I + a K + b K^2`` with ``K = skew(rotvec)``, ``a = sin(t)/t`` and
    ``b = (1 - cos t)/t^2 = 2 sin^2(t/2)/t^2`` (no cancellation); below t = 1e-4 both come from
    their Taylor series, so the value and the gradient are exact and finite at 0 (where
    ``dR/drotvec_i = skew(e_i)``).
    """
    _check_last("rotvec", rotvec, 3)
    t2 = (rotvec * rotvec).sum(-1)
    small = t2 < _SMALL_ANGLE2
    t = torch.sqrt(torch.where(small, torch.ones_like(t2), t2))
    half_sinc = torch.sin(t / 2) / t
    a = torch.where(small, 1 - t2 / 6 + t2 * t2 / 120, torch.sin(t) / t)
    b = torch.where(small, 0.5 - t2 / 24 + t2 * t2 / 720, 2 * half_sinc * half_sinc)
    K = _skew(rotvec)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device).expand_as(K)
    return eye + a[..., None, None] * K + b[..., None, None] * (K @ K)


def matrix_to_rotvec(R: torch.Tensor) -> torch.Tensor:  # [..., 3, 3]
    """Rotation matrices [..., 3, 3] -> rotation vectors [..., 3] with angles in [0, pi].

    The angle is ``atan2(|w|, (tr R - 1)/2)`` with ``w`` the skew part (``sin(t) n``). Below
    90 degrees the axis is ``w / |w|``; above, it is the largest column of the symmetric part
    ``(R + R^T)/2 - cos(t) I = (1 - cos t) n n^T`` with the sign of ``w``, which stays accurate
    up to 180 degrees (where ``w`` vanishes and either sign is the same rotation).
    """
    _check_matrix("R", R)
    w = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1) / 2
    c = ((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    s = w.norm(dim=-1)
    angle = torch.atan2(s, c)
    # t / sin(t) -> 1 + t^2/6 as t -> 0
    ratio = torch.where(s < 1e-6, 1 + s * s / 6, angle / torch.where(s < 1e-6, torch.ones_like(s), s))
    near_zero = w * ratio[..., None]
    eye = torch.eye(3, dtype=R.dtype, device=R.device)
    B = (R + R.transpose(-1, -2)) / 2 - c[..., None, None] * eye
    j = B.diagonal(dim1=-2, dim2=-1).argmax(-1)
    col = torch.take_along_dim(B, j[..., None, None].expand(*j.shape, 3, 1), dim=-1)[..., 0]
    n = F.normalize(col, dim=-1, eps=1e-12)
    n = torch.where((n * w).sum(-1, keepdim=True) < 0, -n, n)
    near_pi = n * angle[..., None]
    return torch.where((c >= 0)[..., None], near_zero, near_pi)


def euler_to_matrix(degrees: Sequence[float]) -> torch.Tensor:
    """Euler angles (x, y, z) in degrees -> R = Rz Ry Rx (x applied first), float64 [3, 3]."""
    values = [float(a) for a in degrees]
    if len(values) != 3:
        raise ValueError(f"degrees: expected 3 angles (x, y, z), got {len(values)}")
    ax, ay, az = (math.radians(a) for a in values)
    e = torch.eye(3, dtype=torch.float64)
    Rx = axis_angle_to_matrix(e[0], torch.tensor(ax, dtype=torch.float64))
    Ry = axis_angle_to_matrix(e[1], torch.tensor(ay, dtype=torch.float64))
    Rz = axis_angle_to_matrix(e[2], torch.tensor(az, dtype=torch.float64))
    return Rz @ Ry @ Rx


def rotation_error_deg(
    R: torch.Tensor,  # [..., 3, 3]
    R_ref: torch.Tensor,  # [..., 3, 3]
) -> torch.Tensor:
    """Geodesic angle [...] between rotations, degrees (float64, no gradient):
    arccos((tr(R R_ref^T) - 1) / 2), computed as atan2(|sin|, cos) from the skew and symmetric
    parts (accurate near 0 and 180 degrees)."""
    _check_matrix("R", R)
    _check_matrix("R_ref", R_ref)
    M = (R.double() @ R_ref.double().transpose(-1, -2)).detach()
    cos = ((M.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    skew = torch.stack([M[..., 2, 1] - M[..., 1, 2], M[..., 0, 2] - M[..., 2, 0], M[..., 1, 0] - M[..., 0, 1]], -1)
    sin = (skew.norm(dim=-1) / 2).clamp(0, 1)
    return torch.rad2deg(torch.atan2(sin, cos))
