"""Camera modules: LookAt, Look, Projection and the Transform that picks one.

Conventions are those of :mod:`softras.functional.cameras`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn

from .functional import cameras as C
from .functional.settings import ImageSize
from .mesh import Mesh

CAMERA_MODES = ("look_at", "look", "projection")


def default_eye(viewing_angle: float) -> list[float]:
    """The eye used when none is given: on -z at distance 1/tan(angle) + 1."""
    return [0.0, 0.0, -(1.0 / math.tan(math.radians(viewing_angle)) + 1.0)]


def _as_eyes(eye) -> torch.Tensor:
    if isinstance(eye, np.ndarray):
        eye = torch.from_numpy(eye)
    eye = torch.as_tensor(eye)
    if not eye.dtype.is_floating_point:
        eye = eye.to(torch.get_default_dtype())
    if eye.shape[-1:] != (3,) or eye.dim() > 2:
        raise ValueError(f"eye: expected shape [3] or [B, 3], got {list(eye.shape)}")
    return eye


class _Viewer(nn.Module):
    """Shared part of LookAt and Look: the eye, then perspective or orthographic."""

    def __init__(self, perspective=True, viewing_angle=30, viewing_scale=1.0, eye=None, image_size=None):
        super().__init__()
        self.perspective = perspective
        self.viewing_angle = viewing_angle
        self.viewing_scale = viewing_scale
        self.image_size: ImageSize | None = image_size
        self._eye = _as_eyes(default_eye(viewing_angle) if eye is None else eye)

    @property
    def eyes(self) -> torch.Tensor:
        return self._eye

    def _to_camera(self, vertices: torch.Tensor, eye: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, vertices: torch.Tensor, eye=None) -> torch.Tensor:  # [B, V, 3] -> [B', V, 3]
        eye = self._eye if eye is None else _as_eyes(eye)
        eye = eye.to(device=vertices.device, dtype=vertices.dtype)
        if eye.dim() == 2 and eye.shape[0] > 1 and vertices.shape[0] == 1:
            vertices = vertices.expand(eye.shape[0], -1, -1)  # one mesh, many views
        if eye.dim() == 2 and eye.shape[0] not in (1, vertices.shape[0]):
            raise ValueError(
                f"eye: expected 1 or {vertices.shape[0]} eyes (one per mesh of the batch), got {eye.shape[0]}"
            )
        v = self._to_camera(vertices, eye)
        if self.perspective:
            return C.perspective(v, self.viewing_angle, self.image_size)
        return C.orthogonal(v, self.viewing_scale, self.image_size)


class LookAt(_Viewer):
    """Camera at ``eye`` looking at the origin (y up), then perspective/orthographic."""

    def __init__(self, perspective=True, viewing_angle=30, viewing_scale=1.0, eye=None, image_size=None):
        super().__init__(perspective, viewing_angle, viewing_scale, eye, image_size)

    def _to_camera(self, vertices, eye):
        return C.look_at(vertices, eye)


class Look(_Viewer):
    """Camera at ``eye`` looking along ``camera_direction`` (y up)."""

    def __init__(
        self,
        camera_direction=(0, 0, 1),
        perspective=True,
        viewing_angle=30,
        viewing_scale=1.0,
        eye=None,
        image_size=None,
    ):
        super().__init__(perspective, viewing_angle, viewing_scale, eye, image_size)
        self.camera_direction = camera_direction

    def _to_camera(self, vertices, eye):
        return C.look(vertices, eye, self.camera_direction)


class Projection(nn.Module):
    """Pinhole projection by ``P = K [R | t]`` [B, 3, 4] with OpenCV distortion [B, 5]."""

    def __init__(self, P, dist_coeffs=None, orig_size: ImageSize = 512):
        super().__init__()
        if isinstance(P, np.ndarray):
            P = torch.from_numpy(P)
        if not isinstance(P, torch.Tensor) or P.dim() != 3 or P.shape[1:] != (3, 4):
            shape = list(P.shape) if isinstance(P, torch.Tensor) else type(P).__name__
            raise ValueError(f"P: expected a [B, 3, 4] projection matrix, got {shape}")
        self.P = P.float() if not P.dtype.is_floating_point else P
        self.dist_coeffs = None if dist_coeffs is None else torch.as_tensor(dist_coeffs)
        self.orig_size = orig_size

    def forward(self, vertices: torch.Tensor, eye=None) -> torch.Tensor:
        P = self.P.to(vertices.device)
        if P.shape[0] > 1 and vertices.shape[0] == 1:
            vertices = vertices.expand(P.shape[0], -1, -1)
        d = None if self.dist_coeffs is None else self.dist_coeffs.to(vertices.device)
        return C.projection(vertices, P, d, self.orig_size)


class Transform(nn.Module):
    """World to NDC by ``camera_mode``: 'look_at' (default), 'look' or 'projection'."""

    def __init__(
        self,
        camera_mode: str = "look_at",
        P=None,
        dist_coeffs=None,
        orig_size: ImageSize = 512,
        perspective: bool = True,
        viewing_angle: float = 30,
        viewing_scale: float = 1.0,
        eye=None,
        camera_direction: Sequence[float] = (0, 0, 1),
        image_size: ImageSize | None = None,
    ):
        super().__init__()
        if camera_mode not in CAMERA_MODES:
            raise ValueError(f"camera_mode: expected one of {', '.join(map(repr, CAMERA_MODES))}, got {camera_mode!r}")
        self.camera_mode = camera_mode
        if camera_mode == "projection":
            self.transformer = Projection(P, dist_coeffs, orig_size)
        elif camera_mode == "look":
            self.transformer = Look(camera_direction, perspective, viewing_angle, viewing_scale, eye, image_size)
        else:
            self.transformer = LookAt(perspective, viewing_angle, viewing_scale, eye, image_size)

    def forward(self, mesh, eye=None):
        """Projects a Mesh (returns a new Mesh; the input is unchanged) or vertices [B, V, 3]."""
        if isinstance(mesh, Mesh):
            return mesh.with_(vertices=self.transformer(mesh.vertices, eye))
        return self.transformer(mesh, eye)

    def _check_eyes(self) -> None:
        if self.camera_mode not in ("look", "look_at"):
            raise ValueError(f"camera_mode: {self.camera_mode!r} has no eye to set (use 'look' or 'look_at')")

    def set_eyes_from_angles(self, distances, elevations, azimuths) -> None:
        """Eyes on spheres around the origin, angles in degrees (see get_points_from_angles)."""
        self._check_eyes()
        self.transformer._eye = C.get_points_from_angles(distances, elevations, azimuths)

    def set_eyes(self, eyes) -> None:
        self._check_eyes()
        self.transformer._eye = _as_eyes(eyes)

    @property
    def eyes(self) -> torch.Tensor:
        self._check_eyes()
        return self.transformer._eye
