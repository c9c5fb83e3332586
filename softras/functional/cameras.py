"""Camera transforms (stateless, differentiable).

Conventions: world to camera by ``look_at``; camera space has x right, y up and z forward
(depth > 0 in front of the camera). ``perspective`` maps to NDC x, y in [-1, 1] (y up) and
keeps z as the depth. For an H x W image with H != W the half field of view applies to the
shorter side and the longer axis is scaled by H/W (or W/H) so that pixels stay square; a
square image gives exactly the original SoftRas projection.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from .settings import ImageSize, image_size_hw


def _as_batch3(name: str, v, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=like.dtype, device=like.device)
    if t.shape[-1:] != (3,) or t.dim() > 2:
        raise ValueError(f"{name}: expected shape [3] or [B, 3], got {list(t.shape)}")
    return t if t.dim() == 2 else t[None]


def get_points_from_angles(distance, elevation, azimuth, degrees: bool = True) -> torch.Tensor:
    """Eye positions [B, 3] on a sphere: ``(d cos e sin a, d sin e, -d cos e cos a)``.

    Azimuth 0 puts the camera on -z looking toward +z.
    """
    distance = torch.as_tensor(distance, dtype=torch.get_default_dtype())
    elevation = torch.as_tensor(elevation, dtype=distance.dtype, device=distance.device)
    azimuth = torch.as_tensor(azimuth, dtype=distance.dtype, device=distance.device)
    if degrees:
        elevation, azimuth = elevation * (math.pi / 180), azimuth * (math.pi / 180)
    eye = torch.stack(
        torch.broadcast_tensors(
            distance * torch.cos(elevation) * torch.sin(azimuth),
            distance * torch.sin(elevation),
            -distance * torch.cos(elevation) * torch.cos(azimuth),
        ),
        dim=-1,
    )
    return eye.reshape(-1, 3)


def look_at(
    vertices: torch.Tensor,  # [B, N, 3]
    eye,  # [B, 3] or [3]
    at: Sequence[float] | torch.Tensor = (0.0, 0.0, 0.0),
    up: Sequence[float] | torch.Tensor = (0.0, 1.0, 0.0),
) -> torch.Tensor:
    """World to camera: ``z = normalize(at - eye)``, ``x = normalize(up x z)``, ``y = z x x``."""
    if vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices: expected shape [B, N, 3], got {list(vertices.shape)}")
    eye = _as_batch3("eye", eye, vertices)
    at = _as_batch3("at", at, vertices)
    up = _as_batch3("up", up, vertices)
    z = F.normalize(at - eye, dim=-1, eps=1e-5)
    x = F.normalize(torch.cross(up.expand_as(z), z, dim=-1), dim=-1, eps=1e-5)
    y = F.normalize(torch.cross(z, x, dim=-1), dim=-1, eps=1e-5)
    r = torch.stack([x, y, z], dim=1)  # [B, 3, 3], rows are the camera axes
    return torch.matmul(vertices - eye[:, None, :], r.transpose(1, 2))


def aspect_scale(image_size: ImageSize | None) -> tuple[float, float]:
    """Factors (sx, sy) applied to NDC x, y so that pixels stay square for an H x W image."""
    if image_size is None:
        return 1.0, 1.0
    H, W = image_size_hw(image_size)
    return (H / W, 1.0) if W > H else (1.0, W / H)


def perspective(
    vertices: torch.Tensor,  # [B, N, 3], camera space
    angle: float | torch.Tensor = 30.0,
    image_size: ImageSize | None = None,
) -> torch.Tensor:
    """Perspective projection: ``x / (z tan(angle))``, ``y / (z tan(angle))``, ``z``.

    ``angle`` is the HALF field of view in degrees, applied to the shorter image side.
    """
    angle = torch.as_tensor(angle, dtype=vertices.dtype, device=vertices.device)
    width = torch.tan(angle * (math.pi / 180))
    if width.dim() == 1:
        width = width[:, None]
    sx, sy = aspect_scale(image_size)
    z = vertices[..., 2]
    x = vertices[..., 0] / (z * width) * sx
    y = vertices[..., 1] / (z * width) * sy
    return torch.stack([x, y, z], dim=-1)


def face_vertices(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Per-face vertex attributes: vertices [B, V, C], faces [B, F, 3] -> [B, F, 3, C]."""
    if vertices.dim() != 3:
        raise ValueError(f"vertices: expected shape [B, V, C], got {list(vertices.shape)}")
    if faces.dim() != 3 or faces.shape[-1] != 3 or faces.shape[0] != vertices.shape[0]:
        raise ValueError(f"faces: expected shape [{vertices.shape[0]}, F, 3], got {list(faces.shape)}")
    B, V = vertices.shape[:2]
    idx = faces.long() + (torch.arange(B, device=faces.device) * V)[:, None, None]
    return vertices.reshape(B * V, -1)[idx]
