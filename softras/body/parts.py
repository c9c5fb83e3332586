"""Body parts from skinning weights: masks, colours per part, and face textures from colours."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "body_height",
    "face_part_colors",
    "face_parts",
    "face_textures_from_vertex_colors",
    "joint_palette",
    "part_of_vertices",
    "vertex_part_colors",
]


def _weights(weights: torch.Tensor) -> torch.Tensor:
    weights = torch.as_tensor(weights)
    if weights.dim() != 2:
        raise ValueError(f"weights: expected shape [V, J], got {list(weights.shape)}")
    return weights


def body_height(vertices: torch.Tensor, axis: int = 1) -> torch.Tensor:
    """The extent of the body along ``axis`` (y, up in SMPL's frame): max - min over the vertices.

    vertices: [..., V, 3] -> [...]
    """
    vertices = torch.as_tensor(vertices)
    if vertices.dim() < 2 or vertices.shape[-1] != 3 or vertices.shape[-2] == 0:
        raise ValueError(f"vertices: expected shape [..., V, 3] with V > 0, got {list(vertices.shape)}")
    y = vertices[..., axis]
    return y.amax(dim=-1) - y.amin(dim=-1)


def part_of_vertices(
    weights: torch.Tensor,  # [V, J] skinning weights
    joints: Sequence[int] = (21, 23),
    threshold: float = 0.5,
) -> torch.Tensor:
    """The vertices skinned mostly to ``joints``: their summed weight exceeds ``threshold``.
    The default is SMPL's right hand (right wrist 21 and right hand 23). -> bool [V]"""
    weights = _weights(weights)
    joints = [int(j) for j in joints]
    if not joints or any(not 0 <= j < weights.shape[1] for j in joints):
        raise ValueError(f"joints: expected indices in [0, {weights.shape[1]}), got {joints}")
    return weights[:, joints].sum(dim=1) > threshold


def joint_palette(num_joints: int) -> torch.Tensor:
    """Distinct, saturated colours, one per joint (hues spaced by the golden ratio). -> [J, 3]"""
    if num_joints < 1:
        raise ValueError(f"num_joints: expected >= 1, got {num_joints}")
    hue = (torch.arange(num_joints, dtype=torch.float64) * 0.6180339887498949) % 1.0
    sat = torch.where(torch.arange(num_joints) % 2 == 0, 0.75, 0.55).to(torch.float64)
    val = torch.where(torch.arange(num_joints) % 3 == 0, 0.95, 0.8).to(torch.float64)
    k = (torch.tensor([5.0, 3.0, 1.0], dtype=torch.float64)[None] + hue[:, None] * 6) % 6  # HSV -> RGB
    rgb = val[:, None] - val[:, None] * sat[:, None] * torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return rgb.float()


def vertex_part_colors(weights: torch.Tensor, palette: torch.Tensor | None = None) -> torch.Tensor:
    """Each vertex gets the colour of the joint it is skinned to most. weights [V, J] -> [V, 3]"""
    weights = _weights(weights)
    palette = joint_palette(weights.shape[1]) if palette is None else torch.as_tensor(palette)
    if palette.dim() != 2 or palette.shape[0] < weights.shape[1] or palette.shape[1] != 3:
        raise ValueError(f"palette: expected shape [>={weights.shape[1]}, 3], got {list(palette.shape)}")
    return palette.to(weights.device)[weights.argmax(dim=1)]


def face_part_colors(
    weights: torch.Tensor,  # [V, J]
    faces: torch.Tensor,  # [F, 3]
    palette: torch.Tensor | None = None,
) -> torch.Tensor:
    """Each face gets the colour of the joint with the largest weight summed over its corners. -> [F, 3]"""
    weights = _weights(weights)
    palette = joint_palette(weights.shape[1]) if palette is None else torch.as_tensor(palette)
    return palette.to(weights.device)[face_parts(weights, faces)]


def face_parts(
    weights: torch.Tensor,  # [V, J]
    faces: torch.Tensor,  # [F, 3]
) -> torch.Tensor:
    """Each face's part: the joint with the largest weight summed over its corners. -> long [F]"""
    weights = _weights(weights)
    faces = torch.as_tensor(faces, device=weights.device).long()
    if faces.dim() != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces: expected shape [F, 3], got {list(faces.shape)}")
    return weights[faces].sum(dim=1).argmax(dim=1)


def face_textures_from_vertex_colors(
    colors: torch.Tensor,  # [V, 3] or [B, V, 3]
    faces: torch.Tensor,  # [F, 3]
    texture_res: int = 1,
) -> torch.Tensor:
    """Surface textures for softras: each face's R*R texels take the mean of its corners' colours
    (flat per face). -> [B, F, R*R, 3]"""
    colors = torch.as_tensor(colors)
    if colors.dim() == 2:
        colors = colors[None]
    if colors.dim() != 3 or colors.shape[-1] != 3:
        raise ValueError(f"colors: expected shape [V, 3] or [B, V, 3], got {list(colors.shape)}")
    faces = torch.as_tensor(faces, device=colors.device).long()
    if faces.dim() != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces: expected shape [F, 3], got {list(faces.shape)}")
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= colors.shape[1]):
        lo, hi = int(faces.min()), int(faces.max())
        raise ValueError(f"faces: expected indices in [0, {colors.shape[1]}), got [{lo}, {hi}]")
    if not isinstance(texture_res, int) or texture_res < 1:
        raise ValueError(f"texture_res: expected a positive int, got {texture_res!r}")
    mean = colors[:, faces].mean(dim=2)  # [B, F, 3]
    return mean[:, :, None].expand(-1, -1, texture_res * texture_res, -1).contiguous()
