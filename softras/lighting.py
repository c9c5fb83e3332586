"""Lighting modules: ambient plus one or several directional lights."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn

from .functional.lighting import ambient_lighting, directional_lighting
from .mesh import Mesh


class AmbientLighting(nn.Module):
    def __init__(self, light_intensity: float = 0.5, light_color: Sequence[float] = (1, 1, 1)):
        super().__init__()
        self.light_intensity = light_intensity
        self.light_color = light_color

    def forward(self, light: torch.Tensor) -> torch.Tensor:  # [B, N, 3] -> [B, N, 3]
        return ambient_lighting(light, self.light_intensity, self.light_color)


class DirectionalLighting(nn.Module):
    def __init__(
        self,
        light_intensity: float = 0.5,
        light_color: Sequence[float] = (1, 1, 1),
        light_direction: Sequence[float] = (0, 1, 0),
    ):
        super().__init__()
        self.light_intensity = light_intensity
        self.light_color = light_color
        self.light_direction = light_direction

    def forward(self, light: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
        return directional_lighting(light, normals, self.light_intensity, self.light_color, self.light_direction)


def _ndim(v) -> int:
    if isinstance(v, (torch.Tensor, np.ndarray)):
        return v.ndim
    return 1 if isinstance(v, (list, tuple)) else 0


def _is_list_of_vectors(v) -> bool:
    """True for several 3-vectors (a list of them, or an [N, 3] tensor / array), False for one
    (a 0-d tensor has ``__len__`` too, so the test is on dimensions, not on ``len``)."""
    if isinstance(v, (torch.Tensor, np.ndarray)):
        return v.ndim == 2
    try:
        return len(v) > 0 and _ndim(v[0]) >= 1
    except TypeError:
        return False


class Lighting(nn.Module):
    """``L = I_a c_a + sum_k I_k c_k max(0, n . d_k)``, multiplied into the textures.

    ``light_mode='surface'`` lights each face by its normal (surface textures),
    ``'vertex'`` each vertex by its normal (vertex colours). Several directional lights:
    give ``directions`` as a list of 3-vectors, and ``intensity_directionals`` /
    ``color_directionals`` as one value for all or one per light.
    """

    def __init__(
        self,
        light_mode: str = "surface",
        intensity_ambient: float = 0.5,
        color_ambient: Sequence[float] = (1, 1, 1),
        intensity_directionals=0.5,
        color_directionals=(1, 1, 1),
        directions=(0, 1, 0),
    ):
        super().__init__()
        if light_mode not in ("surface", "vertex"):
            raise ValueError(f"light_mode: expected 'surface' or 'vertex', got {light_mode!r}")
        self.light_mode = light_mode
        self.ambient = AmbientLighting(intensity_ambient, color_ambient)
        dirs = list(directions) if _is_list_of_vectors(directions) else [directions]
        n = len(dirs)
        intens = list(intensity_directionals) if _ndim(intensity_directionals) >= 1 else [intensity_directionals] * n
        colors = list(color_directionals) if _is_list_of_vectors(color_directionals) else [color_directionals] * n
        if len(intens) != n or len(colors) != n:
            raise ValueError(
                f"intensity_directionals, color_directionals: expected 1 or {n} values (one per direction), "
                f"got {len(intens)} and {len(colors)}"
            )
        self.directionals = nn.ModuleList(DirectionalLighting(i, c, d) for i, c, d in zip(intens, colors, dirs))

    def light(self, mesh: Mesh) -> torch.Tensor:
        """The light per face [B, F, 3] (surface) or per vertex [B, V, 3] (vertex)."""
        if self.light_mode == "surface":
            normals = mesh.surface_normals
        else:
            normals = mesh.vertex_normals
        light = self.ambient(torch.zeros_like(normals))
        for directional in self.directionals:
            light = directional(light, normals)
        return light

    def forward(self, mesh: Mesh) -> Mesh:
        """A new mesh whose textures are lit; ``mesh`` is left unchanged."""
        if mesh.texture_type != self.light_mode:
            raise ValueError(
                f"mesh.texture_type: expected {self.light_mode!r} (the light mode), got {mesh.texture_type!r}"
            )
        light = self.light(mesh)
        textures = mesh.textures * (light[:, :, None, :] if self.light_mode == "surface" else light)
        return mesh.with_(textures=textures)
