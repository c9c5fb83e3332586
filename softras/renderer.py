"""Rasterizer and renderer modules with the original SoftRas argument names and defaults.

Two deliberate differences: the default camera is ``look_at`` with the default eye (the
original defaulted to 'projection' without a matrix and raised), and rendering never
changes the mesh it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from .functional.rasterize import soft_rasterize_packed
from .functional.settings import TEXTURE_TYPES, ImageSize, RasterSettings, settings_from
from .lighting import Lighting
from .mesh import Mesh
from .transform import Transform

RASTER_OPTIONS = tuple(f.name for f in fields(RasterSettings))


def _setting(name: str) -> property:
    def get(self: SoftRasterizer):
        return getattr(self.raster_settings, name)

    def set_(self: SoftRasterizer, value) -> None:
        self.raster_settings = replace(self.raster_settings, **{name: value})

    return property(get, set_, doc=f"``raster_settings.{name}``; assigning replaces the settings")


class SoftRasterizer(nn.Module):
    """Soft rasterization of projected meshes; see ``softras.functional.soft_rasterize``.

    The options live in one frozen :class:`RasterSettings`, ``raster_settings``; each option is
    also an attribute (``rasterizer.sigma_val = 1e-4``, as in SoftRas) whose assignment replaces
    the settings with a checked copy. ``anti_aliasing`` renders at twice the size and
    average-pools 2x2.
    """

    def __init__(
        self,
        image_size: ImageSize = 256,
        background_color: Sequence[float] = (0, 0, 0),
        near: float = 1,
        far: float = 100,
        anti_aliasing: bool = False,
        fill_back: bool = True,
        eps: float = 1e-3,
        sigma_val: float = 1e-5,
        dist_func: str = "euclidean",
        dist_eps: float = 1e-4,
        gamma_val: float = 1e-4,
        aggr_func_rgb: str = "softmax",
        aggr_func_alpha: str = "prod",
        texture_type: str = "surface",
        backend: str = "auto",
    ):
        super().__init__()
        self.raster_settings = settings_from(locals())
        self.anti_aliasing = anti_aliasing
        self.backend = backend

    @classmethod
    def from_settings(
        cls, settings: RasterSettings, anti_aliasing: bool = False, backend: str = "auto"
    ) -> SoftRasterizer:
        """A rasterizer holding ``settings`` (at the size of the returned images)."""
        if not isinstance(settings, RasterSettings):
            raise TypeError(f"settings: expected RasterSettings, got {type(settings).__name__}")
        out = cls(anti_aliasing=anti_aliasing, backend=backend)
        out.raster_settings = settings
        return out

    def settings(self) -> RasterSettings:
        """The settings of the rasterization itself (twice the size with ``anti_aliasing``)."""
        if not self.anti_aliasing:
            return self.raster_settings
        H, W = self.raster_settings.image_size
        return replace(self.raster_settings, image_size=(2 * H, 2 * W))

    def forward(self, mesh: Mesh | Sequence[Mesh], mode=None) -> torch.Tensor:
        """RGBA [B, 4, H, W] of projected mesh(es); a list of meshes of different sizes is
        rendered in one call (one image per batch entry of each mesh, in order)."""
        meshes = [mesh] if isinstance(mesh, Mesh) else list(mesh)
        settings = self.settings()
        for m in meshes:
            if m.texture_type != settings.texture_type:
                raise ValueError(f"mesh.texture_type: expected {settings.texture_type!r}, got {m.texture_type!r}")
        fv = [m.face_vertices.reshape(-1, 3, 3) for m in meshes]
        tex = [m.face_textures.reshape(m.batch_size * m.num_faces, *m.face_textures.shape[2:]) for m in meshes]
        counts = [m.num_faces for m in meshes for _ in range(m.batch_size)]
        first = torch.tensor([0] + counts[:-1], device=fv[0].device).cumsum(0)
        images = soft_rasterize_packed(torch.cat(fv), torch.cat(tex), first, settings, backend=self.backend)
        if self.anti_aliasing:
            images = F.avg_pool2d(images, kernel_size=2, stride=2)
        return images


for _name in RASTER_OPTIONS:
    setattr(SoftRasterizer, _name, _setting(_name))
del _name


class SoftRenderer(nn.Module):
    """Lighting, camera and soft rasterization: ``renderer(vertices, faces, textures)`` or
    ``renderer.render_mesh(mesh)`` -> RGBA [B, 4, H, W]."""

    def __init__(
        self,
        image_size: ImageSize = 256,
        background_color: Sequence[float] = (0, 0, 0),
        near: float = 1,
        far: float = 100,
        anti_aliasing: bool = False,
        fill_back: bool = True,
        eps: float = 1e-3,
        sigma_val: float = 1e-5,
        dist_func: str = "euclidean",
        dist_eps: float = 1e-4,
        gamma_val: float = 1e-4,
        aggr_func_rgb: str = "softmax",
        aggr_func_alpha: str = "prod",
        texture_type: str = "surface",
        camera_mode: str = "look_at",
        P=None,
        dist_coeffs=None,
        orig_size: ImageSize = 512,
        perspective: bool = True,
        viewing_angle: float = 30,
        viewing_scale: float = 1.0,
        eye=None,
        camera_direction: Sequence[float] = (0, 0, 1),
        light_mode: str = "surface",
        light_intensity_ambient: float = 0.5,
        light_color_ambient: Sequence[float] = (1, 1, 1),
        light_intensity_directionals=0.5,
        light_color_directionals=(1, 1, 1),
        light_directions=(0, 1, 0),
        backend: str = "auto",
    ):
        super().__init__()
        self.lighting = Lighting(
            light_mode,
            light_intensity_ambient,
            light_color_ambient,
            light_intensity_directionals,
            light_color_directionals,
            light_directions,
        )
        self.transform = Transform(
            camera_mode,
            P,
            dist_coeffs,
            orig_size,
            perspective,
            viewing_angle,
            viewing_scale,
            eye,
            camera_direction,
            image_size=image_size,
        )
        self.rasterizer = SoftRasterizer.from_settings(settings_from(locals()), anti_aliasing, backend)

    def set_sigma(self, sigma: float) -> None:
        self.rasterizer.raster_settings = replace(self.rasterizer.raster_settings, sigma_val=sigma)

    def set_gamma(self, gamma: float) -> None:
        self.rasterizer.raster_settings = replace(self.rasterizer.raster_settings, gamma_val=gamma)

    def set_texture_mode(self, mode: str) -> None:
        if mode not in TEXTURE_TYPES:
            raise ValueError(f"mode: expected 'surface' or 'vertex', got {mode!r}")
        self.lighting.light_mode = mode
        self.rasterizer.raster_settings = replace(self.rasterizer.raster_settings, texture_type=mode)

    def render_mesh(self, mesh: Mesh | Sequence[Mesh], mode=None) -> torch.Tensor:
        """RGBA [B, 4, H, W]; ``mesh`` (or each mesh of a list) is left unchanged.

        With a list, the camera's eyes are either one for all images or one per image.
        """
        meshes = [mesh] if isinstance(mesh, Mesh) else list(mesh)
        if not meshes:
            raise ValueError("mesh: expected a Mesh or a non-empty list of meshes")
        self.set_texture_mode(meshes[0].texture_type)
        if len(meshes) == 1:
            return self.rasterizer(self.transform(self.lighting(meshes[0])), mode)
        eyes = self.transform.eyes if self.transform.camera_mode != "projection" else None
        total = sum(m.batch_size for m in meshes)
        if eyes is not None and eyes.dim() == 2 and eyes.shape[0] not in (1, total):
            raise ValueError(f"eye: expected 1 or {total} eyes (one per image), got {eyes.shape[0]}")
        out, start = [], 0
        for m in meshes:
            eye = None
            if eyes is not None and eyes.dim() == 2 and eyes.shape[0] > 1:
                eye = eyes[start : start + m.batch_size]
            out.append(self.transform(self.lighting(m), eye))
            start += m.batch_size
        return self.rasterizer(out, mode)

    def forward(self, vertices, faces, textures=None, mode=None, texture_type: str = "surface") -> torch.Tensor:
        return self.render_mesh(Mesh(vertices, faces, textures=textures, texture_type=texture_type), mode)


class Renderer(SoftRenderer):
    """The sharp renderer: hard distance, hard colour and hard alpha aggregation,
    anti-aliased by default (no useful gradients with respect to geometry)."""

    def __init__(self, image_size: ImageSize = 256, background_color=(0, 0, 0), near=1, far=100,
                 anti_aliasing=True, fill_back=True, eps=1e-6, **kwargs):  # fmt: skip
        kwargs.update(dist_func="hard", aggr_func_rgb="hard", aggr_func_alpha="hard")
        super().__init__(image_size, background_color, near, far, anti_aliasing, fill_back, eps, **kwargs)
