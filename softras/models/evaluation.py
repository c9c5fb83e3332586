"""Rendering and scoring reconstructions of the benchmark (docs: softras-math.md, 6).

``render_meshes`` draws a batch of meshes, one camera each, in one rasterizer call (the
training loss and the pictures use it); ``reconstruction_iou`` reconstructs objects of a
:class:`~softras.datasets.ShapeNetRenderings` split from some of their views and scores the
voxels of each prediction (``softras.datasets.mesh_to_dataset_voxels``, the one voxel
convention) against the stored grid, as the original evaluation does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from ..datasets.shapenet import VIEWING_ANGLE, VIEWS, ShapeNetRenderings
from ..datasets.voxels import mesh_to_dataset_voxels, voxel_iou
from ..functional.cameras import face_vertices, look_at, perspective
from ..functional.lighting import surface_normals
from ..functional.rasterize import soft_rasterize_packed
from ..functional.settings import RasterSettings

__all__ = ["evaluation_views", "lit_colors", "reconstruction_iou", "render_meshes"]


def lit_colors(
    vertices: torch.Tensor,  # [B, V, 3]
    faces: torch.Tensor,  # [F, 3]
    colors: torch.Tensor,  # [B, F, 3] albedo in [0, 1]
) -> torch.Tensor:
    """Face colours under the dataset's lighting (ambient 0.5 + directional 0.5 from +y, per
    face, world normals) -> ``[B, F, 3]``, as ``softras.datasets.render_views`` lights them."""
    normals = surface_normals(vertices, faces[None].expand(len(vertices), -1, -1))  # [B, F, 3]
    return colors * (0.5 + 0.5 * normals[..., 1:2].clamp_min(0))


def render_meshes(
    vertices: torch.Tensor,  # [B, V, 3]
    faces: torch.Tensor,  # [F, 3], shared
    eyes: torch.Tensor,  # [B, 3], one camera per mesh (look_at the origin)
    settings: RasterSettings,
    viewing_angle: float = VIEWING_ANGLE,
    colors: torch.Tensor | None = None,  # [B, F, 3] per-face colours (white without)
    backend: str = "auto",
) -> torch.Tensor:
    """RGBA ``[B, 4, H, W]`` of mesh ``b`` seen from ``eyes[b]`` (differentiable)."""
    if vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices: expected shape [B, V, 3], got {list(vertices.shape)}")
    if eyes.shape != (len(vertices), 3):
        raise ValueError(f"eyes: expected shape [{len(vertices)}, 3], got {list(eyes.shape)}")
    B, F_ = len(vertices), len(faces)
    v = perspective(look_at(vertices, eyes), viewing_angle, settings.image_size)
    fv = face_vertices(v, faces[None].expand(B, -1, -1)).reshape(-1, 3, 3)  # [B*F, 3, 3]
    if colors is None:
        tex = torch.ones(1, 1, 3, dtype=fv.dtype, device=fv.device).expand(B * F_, 1, 3)
    else:
        if colors.shape != (B, F_, 3):
            raise ValueError(f"colors: expected shape [{B}, {F_}, 3], got {list(colors.shape)}")
        tex = colors.reshape(B * F_, 1, 3)
    first = torch.arange(B, device=fv.device) * F_
    return soft_rasterize_packed(fv, tex, first, settings, backend=backend)


def evaluation_views(n: int) -> list[int]:
    """``n`` of the 24 views, evenly spaced from view 0 (all 24 for ``n >= 24``)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"views: expected an integer >= 1, got {n!r}")
    n = min(n, VIEWS)
    return [(k * VIEWS) // n for k in range(n)]


@torch.no_grad()
def reconstruction_iou(
    model: nn.Module,
    dataset: ShapeNetRenderings,
    items: torch.Tensor,  # [n, 2] (class_index, obj_index) rows, e.g. a shard of dataset.items()
    views: Sequence[int] = tuple(range(VIEWS)),
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Voxel IoU ``[n, len(views)]`` of the mesh the model predicts from each view of each
    item, against the item's stored voxels. The model maps float RGBA ``[B, 4, 64, 64]`` to
    ``(vertices [B, V, 3], faces [F, 3], ...)``; it is put in eval mode and restored."""
    items = torch.as_tensor(items).reshape(-1, 2).long()
    views = [int(k) for k in views]
    was_training = model.training
    model.eval()
    rows = torch.repeat_interleave(torch.arange(len(items)), len(views))
    view_idx = torch.tensor(views, dtype=torch.long).repeat(len(items))
    out = torch.zeros(len(rows))
    try:
        for s in range(0, len(rows), batch_size):
            r, k = rows[s : s + batch_size], view_idx[s : s + batch_size]
            cls, obj = items[r, 0], items[r, 1]
            images = dataset.gather_images(cls, obj, k, as_float=True).to(device)
            vertices, faces = model(images)[:2]
            pred = mesh_to_dataset_voxels(vertices.float(), faces)
            out[s : s + len(r)] = voxel_iou(pred.cpu(), dataset.gather_voxels(cls, obj)).float()
    finally:
        model.train(was_training)
    return out.view(len(items), len(views))
