"""Simple meshes built in code: an axis-aligned box, a cube with coloured sides and a
camera-facing occluder (box or plane).

Faces are wound counter-clockwise about their outward normal, which is what the rasterizer
counts as front-facing under ``look_at`` (docs, section 2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .functional.cameras import look_at_rotation

__all__ = ["CUBE_COLORS", "OCCLUDER_KINDS", "box", "cube", "occluder_mesh"]

# the six side colours of the default cube: +x, -x, +y, -y, +z, -z. Opposite sides hold a
# primary and the secondary that contains it (blue/magenta, green/cyan, red/yellow), so that
# no colour of three sides meeting at a corner is the mixture of the other two (which a blurry
# rendering of the other two would imitate)
CUBE_COLORS = ((0.15, 0.25, 1.0), (0.9, 0.1, 0.9), (0.1, 0.9, 0.1), (0.1, 0.9, 0.9), (1.0, 0.1, 0.1), (1.0, 0.9, 0.1))
OCCLUDER_KINDS = ("box", "plane")

# vertex k of a box has the bits (x, y, z) = (k >> 2, k >> 1, k) & 1
_BOX_FACES = (
    (4, 5, 7), (4, 7, 6),  # +x
    (0, 2, 3), (0, 3, 1),  # -x
    (2, 6, 7), (2, 7, 3),  # +y
    (0, 1, 5), (0, 5, 4),  # -y
    (1, 3, 7), (1, 7, 5),  # +z
    (0, 4, 6), (0, 6, 2),  # -z
)  # fmt: skip


def wind_outward(
    vertices: torch.Tensor,  # [V, 3]
    faces: torch.Tensor,  # [F, 3]
    centre: torch.Tensor,  # [3]
) -> torch.Tensor:
    """``faces`` re-wound counter-clockwise about their outward normal (the side away from
    ``centre``); a new tensor [F, 3]."""
    v = vertices[faces]  # [F, 3, 3]
    n = torch.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], dim=-1)
    out = ((v.mean(1) - centre) * n).sum(-1) < 0
    faces = faces.clone()
    faces[out] = faces[out][:, [0, 2, 1]]
    return faces


def _floats(name: str, value: object, count: int) -> torch.Tensor:
    try:
        t = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name}: expected {count} numbers, got {value!r}") from None
    if t.numel() != count:
        raise ValueError(f"{name}: expected {count} numbers, got {t.numel()}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: expected finite numbers, got {t.tolist()}")
    return t


def box(half: torch.Tensor | Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:  # half: [3]
    """An axis-aligned box centred at 0 with half-sizes ``half`` [3]: vertices [8, 3] (float64),
    faces [12, 3] (two per side, in the order +x, -x, +y, -y, +z, -z), wound outward."""
    half = _floats("half", half, 3)
    if bool((half < 0).any()):
        raise ValueError(f"half: expected sizes >= 0, got {half.tolist()}")
    bits = torch.tensor([[(k >> 2) & 1, (k >> 1) & 1, k & 1] for k in range(8)], dtype=torch.float64)
    v = (bits * 2 - 1) * half
    return v, wind_outward(v, torch.tensor(_BOX_FACES), torch.zeros(3, dtype=torch.float64))


def cube(
    half_size: float, texture_res: int = 1, colors: Sequence[Sequence[float]] = CUBE_COLORS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A cube of half-size ``half_size`` whose six sides (+x, -x, +y, -y, +z, -z) have the six
    ``colors``: vertices [8, 3] and surface textures [12, R*R, 3] (float32), faces [12, 3]."""
    if isinstance(texture_res, bool) or not isinstance(texture_res, int) or texture_res < 1:
        raise ValueError(f"texture_res: expected an int >= 1, got {texture_res!r}")
    if not float(half_size) > 0:
        raise ValueError(f"half_size: expected a value > 0, got {half_size!r}")
    v, f = box(torch.full((3,), float(half_size)))
    colors = _floats("colors", colors, 18).float().reshape(6, 3).repeat_interleave(2, 0)
    return v.float(), f, colors[:, None, :].expand(-1, texture_res * texture_res, -1).contiguous()


def occluder_mesh(
    kind: str,
    distance: float,
    offset: Sequence[float],
    size: Sequence[float],
    eye: torch.Tensor,  # [3]
) -> tuple[torch.Tensor, torch.Tensor]:
    """A static occluder aligned with the axes of a ``look_at`` camera at ``eye`` looking at
    the origin, centred ``distance`` in front of the camera on its view axis and shifted by
    ``offset`` (right, up): a ``box`` of full sizes ``size`` (width, height, depth along the
    view) or a ``plane`` (width, height; a third size is ignored) facing the camera.
    Vertices [V, 3] (world, float32), faces [F, 3] wound outward (the plane toward the camera).
    """
    if kind not in OCCLUDER_KINDS:
        raise ValueError(f"kind: expected one of {', '.join(map(repr, OCCLUDER_KINDS))}, got {kind!r}")
    if not isinstance(eye, torch.Tensor):
        raise TypeError(f"eye: expected a torch.Tensor [3], got {type(eye).__name__}")
    offset = _floats("offset", offset, 2)
    sizes = torch.as_tensor(size, dtype=torch.float64).reshape(-1)
    if sizes.numel() not in ((3,) if kind == "box" else (2, 3)):
        expected = "3 numbers (width, height, depth)" if kind == "box" else "2 numbers (width, height)"
        raise ValueError(f"size: expected {expected}, got {sizes.numel()}")
    if kind == "plane" and sizes.numel() == 2:
        sizes = torch.cat([sizes, sizes.new_zeros(1)])
    eye = eye.double().reshape(3)
    axes = look_at_rotation(eye)[0]  # rows: the camera's x, y, z in world space
    c = eye + float(distance) * axes[2] + float(offset[0]) * axes[0] + float(offset[1]) * axes[1]
    s = sizes / 2
    if kind == "box":
        v, f = box(s)
    else:  # the box's -z side (the one facing the camera)
        v = torch.tensor([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], dtype=torch.float64) * s
        # wound to face the camera (its normal along the camera's -z)
        f = wind_outward(v, torch.tensor([[0, 1, 2], [0, 2, 3]]), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    return (v @ axes + c).float(), f
