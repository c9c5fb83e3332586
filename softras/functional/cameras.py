"""Camera transforms (stateless, differentiable).

Conventions: world to camera by ``look_at``; camera space has x right, y up and z forward
(depth > 0 in front of the camera). ``perspective`` maps to NDC x, y in [-1, 1] (y up) and
keeps z as the depth. For an H x W image with H != W the half field of view applies to the
shorter side and the longer axis is scaled by H/W (or W/H) so that pixels stay square; a
square image gives exactly the original SoftRas projection.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .settings import ImageSize, image_size_hw

PARALLEL_EPS = 1e-4  # |up x z| <= PARALLEL_EPS |up|: up is taken as parallel to the view
_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, UserWarning, stacklevel=4)


def _up_not_parallel(up: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``up x z`` [B, 3]; where ``up`` is parallel to the viewing direction ``z``, that of a
    valid up instead: world z, or world x when the view is within 25 degrees of world z
    (|z_z| > 0.9), pointing away from the side ``up`` points to. With the default up
    (0, 1, 0), a camera looking straight down gets up (0, 0, 1) and one looking straight up
    (0, 0, -1): the limits of a camera at azimuth 0 approaching the poles, so the image does
    not jump there."""
    cross = torch.cross(up, z, dim=-1)
    parallel = cross.norm(dim=-1) <= PARALLEL_EPS * up.norm(dim=-1)  # [B]
    if not bool(parallel.any()):
        return cross
    _warn_once(
        "up",
        "softras: look_at: up is parallel to the viewing direction (the camera looks straight up or down "
        "along it); using up = world z (or world x when looking along z) instead",
    )
    axis = torch.where(z.detach()[:, 2].abs() > 0.9, 0, 2)  # [B]: world x or world z
    sign = torch.where((up * z).sum(-1) > 0, -1.0, 1.0).to(z.dtype)  # [B]
    new_up = F.one_hot(axis, 3).to(z.dtype) * sign[:, None]
    return torch.where(parallel[:, None], torch.cross(new_up, z, dim=-1), cross)


def _as_batch3(name: str, v, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=like.dtype, device=like.device)
    if t.shape[-1:] != (3,) or t.dim() > 2:
        raise ValueError(f"{name}: expected shape [3] or [B, 3], got {list(t.shape)}")
    return t if t.dim() == 2 else t[None]


def get_points_from_angles(distance, elevation, azimuth, degrees: bool = True) -> torch.Tensor:
    """Eye positions [B, 3] on a sphere: ``(d cos e sin a, d sin e, -d cos e cos a)``.

    Azimuth 0 puts the camera on -z looking toward +z. The result has the default dtype, or
    float64 when a floating input tensor is float64 (so gradchecks keep their precision).
    """
    dtype, device = torch.get_default_dtype(), None
    for t in (distance, elevation, azimuth):
        if isinstance(t, torch.Tensor):
            device = t.device if device is None else device
            if t.dtype.is_floating_point:
                dtype = torch.promote_types(dtype, t.dtype)
    distance = torch.as_tensor(distance, dtype=dtype, device=device)
    elevation = torch.as_tensor(elevation, dtype=dtype, device=device)
    azimuth = torch.as_tensor(azimuth, dtype=dtype, device=device)
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
    """World to camera: ``z = normalize(at - eye)``, ``x = normalize(up x z)``, ``y = z x x``.

    Where ``up`` is parallel to the viewing direction (a camera looking straight down or up)
    a valid up is chosen instead, with one warning (see ``_up_not_parallel``)."""
    if vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices: expected shape [B, N, 3], got {list(vertices.shape)}")
    eye = _as_batch3("eye", eye, vertices)
    r = look_at_rotation(eye, at, up)
    return torch.matmul(vertices - eye[:, None, :], r.transpose(1, 2))


def look_at_rotation(
    eye: torch.Tensor,  # [B, 3] or [3]
    at: Sequence[float] | torch.Tensor = (0.0, 0.0, 0.0),
    up: Sequence[float] | torch.Tensor = (0.0, 1.0, 0.0),
) -> torch.Tensor:
    """The camera axes of ``look_at`` as the rows of [B, 3, 3] (x right, y up, z forward in
    world space): ``z = normalize(at - eye)``, ``x = normalize(up x z)``, ``y = z x x``."""
    if not isinstance(eye, torch.Tensor) or not eye.dtype.is_floating_point:
        raise TypeError(f"eye: expected a floating torch.Tensor, got {type(eye).__name__}")
    eye = _as_batch3("eye", eye, eye)
    at = _as_batch3("at", at, eye)
    up = _as_batch3("up", up, eye)
    z = F.normalize(at - eye, dim=-1, eps=1e-5)
    x = F.normalize(_up_not_parallel(up.expand_as(z), z), dim=-1, eps=1e-5)
    y = F.normalize(torch.cross(z, x, dim=-1), dim=-1, eps=1e-5)
    return torch.stack([x, y, z], dim=1)  # [B, 3, 3], rows are the camera axes


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

    ``angle`` is the HALF field of view in degrees, applied to the shorter image side. A
    vertex on the camera plane (z = 0 exactly: x / 0) raises ValueError naming its view.
    """
    angle = torch.as_tensor(angle, dtype=vertices.dtype, device=vertices.device)
    width = torch.tan(angle * (math.pi / 180))
    if width.dim() == 1:
        width = width[:, None]
    sx, sy = aspect_scale(image_size)
    z = vertices[..., 2]
    on_plane = (z == 0).flatten(1).any(-1) if z.dim() > 1 else (z == 0).any()[None]
    if bool(on_plane.any()):
        k = int(on_plane.nonzero()[0, 0])
        raise ValueError(f"vertices: a vertex lies on the camera plane (depth 0) of view {k}; move the eye or the mesh")
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
    # index_select's backward (index_add) is much faster than advanced indexing's (index_put)
    out = vertices.reshape(B * V, -1).index_select(0, idx.reshape(-1))
    return out.reshape(*faces.shape, vertices.shape[-1])


def look(
    vertices: torch.Tensor,  # [B, N, 3]
    eye,  # [B, 3] or [3]
    direction: Sequence[float] | torch.Tensor = (0.0, 0.0, 1.0),
    up: Sequence[float] | torch.Tensor = (0.0, 1.0, 0.0),
) -> torch.Tensor:
    """World to camera for a camera at ``eye`` looking along ``direction``: as
    :func:`look_at` with ``z = normalize(direction)``."""
    if vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices: expected shape [B, N, 3], got {list(vertices.shape)}")
    eye = _as_batch3("eye", eye, vertices)
    return look_at(vertices, eye, at=eye + _as_batch3("direction", direction, vertices), up=up)


def orthogonal(vertices: torch.Tensor, scale: float | torch.Tensor = 1.0, image_size: ImageSize | None = None):
    """Orthographic projection: ``(s x, s y, z)``; ``s`` applies to the shorter image side."""
    scale = torch.as_tensor(scale, dtype=vertices.dtype, device=vertices.device)
    if scale.dim() == 1:
        scale = scale[:, None]
    sx, sy = aspect_scale(image_size)
    return torch.stack([vertices[..., 0] * scale * sx, vertices[..., 1] * scale * sy, vertices[..., 2]], dim=-1)


def _rq(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RQ decomposition of [B, 3, 3]: m = K R with K upper triangular (positive diagonal)
    and R orthonormal."""
    flip = torch.flip(torch.eye(3, dtype=m.dtype, device=m.device), dims=[0])
    q, r = torch.linalg.qr((flip @ m).transpose(1, 2))
    K = flip @ r.transpose(1, 2) @ flip
    R = flip @ q.transpose(1, 2)
    sign = torch.diag_embed(torch.sign(torch.diagonal(K, dim1=1, dim2=2)))
    return K @ sign, sign @ R


def projection(
    vertices: torch.Tensor,  # [B, N, 3], world space
    P: torch.Tensor,  # [B, 3, 4] = K [R | t], in pixels of an orig_size image
    dist_coeffs: torch.Tensor | None = None,  # [B, 5]: k1, k2, p1, p2, k3 (OpenCV)
    orig_size: ImageSize = 512,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Projection by a pinhole camera matrix ``P = K [R | t]`` with OpenCV lens distortion.

    Conventions (which the original got wrong): the distortion applies to normalized camera
    coordinates ``(x/z, y/z)`` before ``K``, and image rows grow downward, so pixel
    ``(u, v)`` maps to ``x = 2u/W - 1``, ``y = 1 - 2v/H`` (u, v continuous: the centre of pixel
    column c is at ``u = c + 0.5``). A standard K (principal point at the image centre, fy > 0)
    thus renders upright. ``orig_size`` is the calibrated image's size, int or (H, W). The
    result keeps z = depth in the camera frame. ``P`` is split into ``K`` and ``[R | t]`` by an
    RQ decomposition, which is differentiable.
    """
    if P.dim() != 3 or P.shape[1:] != (3, 4):
        raise ValueError(f"P: expected shape [B, 3, 4], got {list(P.shape)}")
    if vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices: expected shape [B, N, 3], got {list(vertices.shape)}")
    P = P.to(vertices.dtype)
    H, W = image_size_hw(orig_size)
    K, R = _rq(P[:, :, :3])
    t = torch.linalg.solve(K, P[:, :, 3:])  # [B, 3, 1]
    cam = vertices @ R.transpose(1, 2) + t.transpose(1, 2)  # [B, N, 3]
    z = cam[..., 2]
    x_, y_ = cam[..., 0] / (z + eps), cam[..., 1] / (z + eps)
    if dist_coeffs is not None:
        d = torch.as_tensor(dist_coeffs, dtype=vertices.dtype, device=vertices.device).reshape(-1, 5)
        k1, k2, p1, p2, k3 = (d[:, i : i + 1] for i in range(5))
        r2 = x_ * x_ + y_ * y_
        radial = 1 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2
        x_, y_ = (
            x_ * radial + 2 * p1 * x_ * y_ + p2 * (r2 + 2 * x_ * x_),
            y_ * radial + p1 * (r2 + 2 * y_ * y_) + 2 * p2 * x_ * y_,
        )
    pix = torch.stack([x_, y_, torch.ones_like(x_)], dim=-1) @ K.transpose(1, 2)  # [B, N, 3]
    u, v = pix[..., 0] / pix[..., 2], pix[..., 1] / pix[..., 2]
    return torch.stack([2 * u / W - 1, 1 - 2 * v / H, z], dim=-1)
