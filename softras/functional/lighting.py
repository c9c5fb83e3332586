"""Normals and lighting (stateless, differentiable).

``L = I_a c_a + sum_k I_k c_k max(0, n . d_k)``; textures are multiplied by L before
rasterizing (per face in ``surface`` mode, per vertex in ``vertex`` mode).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .cameras import face_vertices


def _colour(value, like: torch.Tensor, name: str) -> torch.Tensor:
    c = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if c.shape[-1:] != (3,) or c.dim() > 2:
        raise ValueError(f"{name}: expected 3 values or [B, 3], got {list(c.shape)}")
    return c if c.dim() == 2 else c[None]


def surface_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit face normals [B, F, 3]: normalize((v2 - v1) x (v0 - v1))."""
    fv = face_vertices(vertices, faces)
    n = torch.cross(fv[:, :, 2] - fv[:, :, 1], fv[:, :, 0] - fv[:, :, 1], dim=-1)
    return F.normalize(n, dim=-1, eps=1e-6)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit vertex normals [B, V, 3]: the normalized sum of the unnormalized normals of the
    faces around each vertex."""
    fv = face_vertices(vertices, faces)
    n = torch.cross(fv[:, :, 2] - fv[:, :, 1], fv[:, :, 0] - fv[:, :, 1], dim=-1)  # [B, F, 3]
    out = torch.zeros_like(vertices)
    idx = faces.long().reshape(faces.shape[0], -1, 1).expand(-1, -1, 3)  # [B, 3F, 3]
    out = out.scatter_add(1, idx, n.repeat_interleave(3, dim=1))
    return F.normalize(out, dim=-1, eps=1e-6)


def ambient_lighting(
    light: torch.Tensor,  # [B, N, 3]
    light_intensity: float = 0.5,
    light_color: Sequence[float] | torch.Tensor = (1.0, 1.0, 1.0),
) -> torch.Tensor:
    """Adds ambient light: ``light + I_a c_a``."""
    return light + light_intensity * _colour(light_color, light, "light_color")[:, None, :]


def directional_lighting(
    light: torch.Tensor,  # [B, N, 3]
    normals: torch.Tensor,  # [B, N, 3], unit
    light_intensity: float = 0.5,
    light_color: Sequence[float] | torch.Tensor = (1.0, 1.0, 1.0),
    light_direction: Sequence[float] | torch.Tensor = (0.0, 1.0, 0.0),
) -> torch.Tensor:
    """Adds a directional light: ``light + I c max(0, n . d)`` (d is normalized)."""
    d = F.normalize(_colour(light_direction, light, "light_direction"), dim=-1, eps=1e-6)
    cosine = F.relu((normals * d[:, None, :]).sum(-1))  # [B, N]
    return light + light_intensity * _colour(light_color, light, "light_color")[:, None, :] * cosine[..., None]
