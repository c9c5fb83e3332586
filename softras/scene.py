"""A posed object, a static occluder and a fixed look_at camera (the pose-fitting scene)."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from .functional.cameras import face_vertices, look_at, perspective
from .functional.rasterize import soft_rasterize_packed
from .functional.settings import RasterSettings


class Scene(nn.Module):
    """Renders a batch of poses (R [B, 3, 3], t [B, 3]: ``v' = R v + t``) of one object
    (vertices [V, 3], faces [F, 3], surface textures [F, R*R, 3]) with a static occluder
    (vertices [V', 3], faces [F', 3], one colour) seen from ``eye`` [3] looking at the origin.

    The raster options are one ``RasterSettings``; sigma and gamma change per call through
    ``dataclasses.replace``. With ``composite`` the colour is laid over the background by
    alpha (``rgb a + bg (1 - a)``); with ``layered`` the object is rendered alone and the
    occluder's own rendering laid over it by the occluder's alpha (it is in front by
    construction), so that blurry settings do not make the occluder see-through.
    """

    def __init__(
        self,
        obj_v: torch.Tensor,
        obj_f: torch.Tensor,
        obj_tex: torch.Tensor,
        occ_v: torch.Tensor,
        occ_f: torch.Tensor,
        occ_color,
        eye: torch.Tensor,
        viewing_angle: float,
        settings: RasterSettings,
        backend: str = "auto",
        composite: bool = True,
        layered: bool = False,
    ):
        super().__init__()
        self.composite, self.layered = bool(composite), bool(layered)
        self.settings = settings
        self.viewing_angle = float(viewing_angle)
        self.backend = backend
        self._occ_cache: tuple | None = None
        rr = obj_tex.shape[1]
        occ_tex = torch.as_tensor(occ_color, dtype=obj_tex.dtype, device=obj_tex.device)
        occ_tex = occ_tex.reshape(1, 1, 3).expand(occ_f.shape[0], rr, 3)
        for name, value in (("obj_v", obj_v), ("obj_f", obj_f), ("obj_tex", obj_tex), ("occ_v", occ_v)):
            self.register_buffer(name, value)
        self.register_buffer("occ_f", occ_f)
        self.register_buffer("occ_tex", occ_tex.contiguous())
        self.register_buffer("eye", eye)
        self.register_buffer("faces", torch.cat([obj_f, occ_f + obj_v.shape[0]]))
        self.register_buffer("textures", torch.cat([obj_tex, self.occ_tex]))
        # white object, black occluder: the visible object's mask in the red channel
        self.register_buffer("mask_textures", torch.cat([torch.ones_like(obj_tex), torch.zeros_like(self.occ_tex)]))

    @property
    def num_object_faces(self) -> int:
        return self.obj_f.shape[0]

    @property
    def has_occluder(self) -> bool:
        return self.occ_f.shape[0] > 0

    def _face_vertices(self, R: torch.Tensor, t: torch.Tensor, occluder: bool = True) -> torch.Tensor:
        B = R.shape[0]
        v = self.obj_v[None] @ R.transpose(1, 2) + t[:, None, :]  # [B, V, 3]
        faces = self.obj_f
        if occluder and self.has_occluder:
            v = torch.cat([v, self.occ_v[None].expand(B, -1, -1)], 1)
            faces = self.faces
        v = perspective(look_at(v, self.eye), self.viewing_angle, self.settings.image_size)
        return face_vertices(v, faces[None].expand(B, -1, -1))

    def rasterize(self, fv, tex, sigma: float, gamma: float, background=None, return_fragments: bool = False):
        """RGBA [B, 4, H, W] of face vertices [B, F, 3, 3] with one texture [F, R*R, 3]."""
        changes = {"sigma_val": float(sigma), "gamma_val": float(gamma)}
        if background is not None:
            changes["background_color"] = tuple(background)
        settings = dataclasses.replace(self.settings, **changes)
        B, F = fv.shape[:2]
        first = torch.arange(B, device=fv.device) * F
        tex = tex[None].expand(B, *tex.shape).reshape(B * F, *tex.shape[1:])
        out = soft_rasterize_packed(
            fv.reshape(B * F, 3, 3), tex, first, settings, backend=self.backend, return_fragments=return_fragments
        )
        if not return_fragments:
            return out
        rgba, frags = out
        local = torch.where(frags.face_index >= 0, frags.face_index - first.view(B, 1, 1), frags.face_index)
        return rgba, frags._replace(face_index=local)

    def _occluder_layer(self, sigma: float, gamma: float) -> torch.Tensor:
        """RGBA [1, 4, H, W] of the occluder alone (it never moves: one render per sigma, gamma)."""
        if self._occ_cache is None or self._occ_cache[0] != (sigma, gamma):
            v = perspective(look_at(self.occ_v[None], self.eye), self.viewing_angle, self.settings.image_size)
            with torch.no_grad():
                rgba = self.rasterize(face_vertices(v, self.occ_f[None]), self.occ_tex, sigma, gamma)
            self._occ_cache = ((sigma, gamma), rgba)
        return self._occ_cache[1]

    def _over_background(self, rgba: torch.Tensor) -> torch.Tensor:
        if not self.composite:
            return rgba[:, :3]
        bg = torch.as_tensor(self.settings.background_color, dtype=rgba.dtype, device=rgba.device)[None, :, None, None]
        a = rgba[:, 3:]
        return rgba[:, :3] * a + bg * (1 - a)

    def forward(self, R: torch.Tensor, t: torch.Tensor, sigma: float, gamma: float) -> torch.Tensor:
        """RGB [B, 3, H, W] of the posed objects with the occluder."""
        if self.has_occluder and self.layered:
            obj = self._over_background(
                self.rasterize(self._face_vertices(R, t, occluder=False), self.obj_tex, sigma, gamma)
            )
            layer = self._occluder_layer(sigma, gamma)
            a = layer[:, 3:]
            return layer[:, :3] * a + obj * (1 - a)
        tex = self.textures if self.has_occluder else self.obj_tex
        return self._over_background(self.rasterize(self._face_vertices(R, t), tex, sigma, gamma))

    render = forward

    def render_mask(self, R: torch.Tensor, t: torch.Tensor, sigma: float, gamma: float) -> torch.Tensor:
        """The soft mask [B, H, W] of the object's visible (not occluded) pixels."""
        if self.has_occluder and self.layered:
            alpha = self.rasterize(self._face_vertices(R, t, occluder=False), self.obj_tex, sigma, gamma)[:, 3]
            return alpha * (1 - self._occluder_layer(sigma, gamma)[:, 3])
        tex = self.mask_textures if self.has_occluder else torch.ones_like(self.obj_tex)
        rgba = self.rasterize(self._face_vertices(R, t), tex, sigma, gamma, background=(0.0, 0.0, 0.0))
        return rgba[:, 0] * rgba[:, 3] if self.composite else rgba[:, 0]

    @torch.no_grad()
    def occluded_fraction(self, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """[B]: the fraction of the object's silhouette pixels (nearest face an object face,
        without the occluder) that the occluder hides (nearest face an occluder face, with it)."""
        tex = torch.ones_like(self.obj_tex)
        _, frag_obj = self.rasterize(self._face_vertices(R, t, occluder=False), tex, 1e-5, 1e-4, return_fragments=True)
        silhouette = frag_obj.face_index >= 0
        if not self.has_occluder:
            return torch.zeros(R.shape[0], device=R.device)
        _, frag = self.rasterize(self._face_vertices(R, t), self.textures, 1e-5, 1e-4, return_fragments=True)
        hidden = silhouette & (frag.face_index >= self.num_object_faces)
        return hidden.flatten(1).sum(1).float() / silhouette.flatten(1).sum(1).clamp_min(1).float()
