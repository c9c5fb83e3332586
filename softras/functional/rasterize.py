"""The soft rasterizer: public functions, input checks and backend dispatch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from .. import _native
from . import _torch_impl
from .settings import BACKENDS, ImageSize, RasterSettings, check_raster_memory, settings_from

__all__ = ["soft_rasterize", "soft_rasterize_packed", "RasterSettings", "Fragments"]


class Fragments(NamedTuple):
    """What ``return_fragments=True`` adds: the nearest covering face per pixel.

    ``depth`` [B, H, W] is its perspective-correct depth and ``face_index`` [B, H, W] its
    index (within its mesh for padded inputs, in the packed array for packed inputs); both
    are -1 where no face covers the pixel. Covering means the pixel is inside the triangle
    or on its boundary, the depth lies in [near, far] and, unless ``fill_back``, the face is
    front-facing. Neither carries a gradient.
    """

    depth: torch.Tensor
    face_index: torch.Tensor


def _shape(t: torch.Tensor) -> list[int]:
    return list(t.shape)


def _check_float(name: str, t: object) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{name}: expected dtype float32 or float64, got {t.dtype}")
    return t


def _check_textures(textures: torch.Tensor, faces_shape: Sequence[int], texture_type: str) -> None:
    lead = list(faces_shape)
    if texture_type == "surface":
        ok = textures.dim() == len(lead) + 2 and list(textures.shape[: len(lead)]) == lead
        ok = ok and textures.shape[-1] == 3
        if ok:
            r2 = textures.shape[-2]
            ok = r2 >= 1 and round(r2**0.5) ** 2 == r2
        expected = f"shape {lead + ['R*R', 3]} (surface texture, R*R texels per face)"
    else:
        ok = textures.dim() == len(lead) + 2 and list(textures.shape) == lead + [3, 3]
        expected = f"shape {lead + [3, 3]} (vertex colours)"
    if not ok:
        raise ValueError(f"textures: expected {expected}, got {_shape(textures)}")


def _all_finite(t: torch.Tensor) -> bool:
    """Whether every value is finite; a broadcast (expanded) tensor is checked on its own
    values only, and a finite sum proves it without a second pass."""
    t = t.detach()[tuple(0 if st == 0 and n > 1 else slice(None) for st, n in zip(t.stride(), t.shape))]
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def _resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    if backend == "auto":
        kind = "cuda" if device.type == "cuda" else "cpu"
        if device.type not in ("cpu", "cuda"):
            return "reference"
        try:
            _native.load(kind)
            return kind
        except _native.BackendUnavailable as err:
            _native.warn_once(kind, f"softras: the {kind} backend is unavailable ({err}); using the slow reference")
            return "reference"
    if backend in ("cpu", "cuda") and device.type != backend:
        raise ValueError(f"backend: {backend!r} needs tensors on {backend}, got tensors on {device}")
    return backend


def soft_rasterize_packed(
    face_vertices: torch.Tensor,  # [F_total, 3, 3]
    textures: torch.Tensor,  # [F_total, R*R, 3] (surface) or [F_total, 3, 3] (vertex)
    mesh_first_face: torch.Tensor,  # [B] int64
    settings: RasterSettings,
    backend: str = "auto",
    return_fragments: bool = False,
):
    """Soft rasterization of a batch of meshes with different face counts, without padding.

    Mesh ``b`` owns faces ``mesh_first_face[b]`` up to (not including) ``mesh_first_face[b+1]``
    (the last one up to ``F_total``); each mesh makes one image. Returns RGBA
    ``[B, 4, H, W]``, and with ``return_fragments`` also :class:`Fragments` whose face
    index is into the packed array. See :func:`soft_rasterize` for the semantics.
    """
    _check_float("face_vertices", face_vertices)
    _check_float("textures", textures)
    if not isinstance(settings, RasterSettings):
        raise TypeError(f"settings: expected RasterSettings, got {type(settings).__name__}")
    if face_vertices.dim() != 3 or face_vertices.shape[1:] != (3, 3):
        raise ValueError(f"face_vertices: expected shape [F, 3, 3], got {_shape(face_vertices)}")
    _check_textures(textures, face_vertices.shape[:1], settings.texture_type)
    if textures.dtype != face_vertices.dtype:
        raise ValueError(f"textures: expected dtype {face_vertices.dtype} (as face_vertices), got {textures.dtype}")
    if textures.device != face_vertices.device:
        raise ValueError(f"textures: expected device {face_vertices.device} (as face_vertices), got {textures.device}")
    if not isinstance(mesh_first_face, torch.Tensor) or mesh_first_face.dim() != 1:
        raise ValueError(f"mesh_first_face: expected a 1-D integer tensor [B], got {mesh_first_face!r}")
    if mesh_first_face.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"mesh_first_face: expected an integer dtype, got {mesh_first_face.dtype}")
    first = mesh_first_face.to(device=face_vertices.device, dtype=torch.int64)
    F = face_vertices.shape[0]
    if first.numel() > 0:
        ends = torch.cat([first[1:], first.new_tensor([F])])
        if bool((first < 0).any()) or bool((first > ends).any()):
            raise ValueError(
                f"mesh_first_face: expected non-decreasing values in [0, {F}], got {mesh_first_face.tolist()}"
            )
    # fast path: a finite sum proves every value finite; otherwise look closer
    for name, t in (("face_vertices", face_vertices), ("textures", textures)):
        if F > 0 and not _all_finite(t):
            raise ValueError(f"{name}: expected finite values, got NaN or Inf")
    # refuse what cannot fit before building a backend or allocating anything
    planned = backend if backend in ("reference", "cpu", "cuda") else face_vertices.device.type
    check_raster_memory(settings, first.numel(), planned, face_vertices.dtype, face_vertices.device)

    kind = _resolve_backend(backend, face_vertices.device)
    if kind == "reference":
        rgba, depth, index = _torch_impl.soft_rasterize_packed(face_vertices, textures, first, settings)
    else:
        rgba, depth, index = _native.NativeRasterize.apply(face_vertices, textures, first, settings, kind)
    return (rgba, Fragments(depth, index)) if return_fragments else rgba


def soft_rasterize(
    face_vertices: torch.Tensor,  # [B, F, 3, 3]
    textures: torch.Tensor,  # [B, F, R*R, 3] (surface) or [B, F, 3, 3] (vertex)
    image_size: ImageSize = 256,
    background_color: Sequence[float] = (0, 0, 0),
    near: float = 1,
    far: float = 100,
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
    return_fragments: bool = False,
):
    """Soft rasterization: RGBA images [B, 4, H, W] of B meshes of F faces each.

    ``face_vertices`` are projected vertices: x, y in NDC ([-1, 1], y up, row 0 of the image at
    the top) and z = depth from the camera. ``textures`` hold R*R texels per face (``surface``)
    or one colour per face corner (``vertex``). ``image_size`` is an int or ``(H, W)``.

    Every face contributes to every pixel through the probability
    ``D = sigmoid(delta * d^2 / sigma_val)`` (``dist_func``: ``euclidean`` distance to the
    triangle's boundary, ``barycentric`` smallest coordinate, or ``hard`` inside/outside),
    except where it is certainly negligible: outside the triangle with ``d^2 >= T`` where
    ``T = sigma_val * ln(1/dist_eps - 1)`` (there ``D <= dist_eps``), or outside its bounding box
    grown by ``sqrt(T)``. Alpha aggregates D (``prod``: 1 - prod(1 - D); ``sum``: mean over the
    mesh's faces; ``hard``: any D > 0.5). Colour is a softmax over normalised inverse depth
    with temperature ``gamma_val`` and a background logit ``eps`` (computed with a running
    maximum, so no overflow for any gamma), or the nearest covering face (``hard``). Faces
    whose depth lies outside [near, far] or, unless ``fill_back``, that face away (counter-
    clockwise on screen) take no part in colour; alpha ignores both.

    ``backend``: ``reference`` (pure PyTorch, slow, the oracle), ``cpu`` (C++), ``cuda``,
    or ``auto`` (by device; the reference where no native build is possible). With
    ``return_fragments`` the result is ``(rgba, Fragments(depth, face_index))``.
    Gradients flow to ``face_vertices`` (x, y, z) and ``textures``.
    """
    settings = settings_from(locals())
    _check_float("face_vertices", face_vertices)
    _check_float("textures", textures)
    if face_vertices.dim() != 4 or face_vertices.shape[2:] != (3, 3):
        raise ValueError(f"face_vertices: expected shape [B, F, 3, 3], got {_shape(face_vertices)}")
    B, F = face_vertices.shape[:2]
    _check_textures(textures, (B, F), texture_type)
    first = torch.arange(B, device=face_vertices.device, dtype=torch.int64) * F
    out = soft_rasterize_packed(
        face_vertices.reshape(B * F, 3, 3),
        textures.reshape(B * F, *textures.shape[2:]),
        first,
        settings,
        backend=backend,
        return_fragments=return_fragments,
    )
    if not return_fragments:
        return out
    rgba, frags = out
    local = frags.face_index - first.view(B, 1, 1)
    return rgba, Fragments(frags.depth, torch.where(frags.face_index >= 0, local, frags.face_index))
