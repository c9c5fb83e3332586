"""The voxel axis convention of the reconstruction benchmark, in one place.

A mesh predicted (or normalized) into the cube ``[-0.5, 0.5]^3`` of the world frame in which
the dataset's views are rendered (y up, the camera of view 0 on -z) is voxelized at ``S = 32``
as follows; the dataset writer (``softras.datasets.writer``) and the evaluation of a predicted
mesh both call :func:`mesh_to_dataset_voxels`, so the two always agree.

1. Voxel units: mesh coordinate ``v`` lands at ``u = v (S - 1) + S / 2`` (the original
   evaluation's ``v (S - 1) / S + 0.5`` into the unit cube, times ``S``; ``v = +-0.5`` maps to
   ``0.5`` and ``S - 0.5``). Voxel index ``a`` along an axis spans ``a <= u <= a + 1``.
2. Solid voxels: the voxels a triangle overlaps, plus every voxel that the exterior cannot
   reach through empty voxels (``softras.functional.voxelization``). A union of overlapping
   closed parts is therefore filled as the union of the parts.
3. Dataset layout: the grid is stored as ``[i, j, k] = (y = i, x = j, z = S - 1 - k)``, i.e.
   ``grid_xyz.transpose(1, 0, 2)[:, :, ::-1]``: the layout of the public ShapeNet rendering
   set's ``*_voxels.npz`` files, with which the original SoftRas evaluation compared its
   prediction after ``transpose(0, 2, 1, 3)[:, :, :, ::-1]``.

So a point ``(x, y, z)`` of a mesh falls into dataset voxel
``[floor(y 31 + 16), floor(x 31 + 16), 31 - floor(z 31 + 16)]``.
"""

from __future__ import annotations

import torch

from ..functional.voxelization import to_dataset_axes, voxelize_mesh
from ..functional.voxelization import voxel_iou as _voxel_iou

__all__ = ["VOXEL_SIZE", "mesh_to_dataset_voxels", "dataset_to_xyz", "point_to_dataset_index", "voxel_iou"]

VOXEL_SIZE = 32


def mesh_to_dataset_voxels(
    vertices: torch.Tensor,  # [B, V, 3] or [V, 3], inside [-0.5, 0.5]
    faces: torch.Tensor,  # [F, 3] (shared) or [B, F, 3]
    size: int = VOXEL_SIZE,
) -> torch.Tensor:
    """Solid voxels of mesh(es) in the dataset's layout (see the module docstring).

    Returns:
        ``[B, S, S, S]`` bool (``[S, S, S]`` for unbatched vertices), indexed ``[b, y, x, S-1-z]``.
        No gradients.
    """
    if not isinstance(vertices, torch.Tensor):
        raise TypeError(f"vertices: expected a torch.Tensor [B, V, 3] or [V, 3], got {type(vertices).__name__}")
    if vertices.dim() not in (2, 3) or vertices.shape[-1] != 3:
        raise ValueError(f"vertices: expected shape [B, V, 3] or [V, 3], got {list(vertices.shape)}")
    faces = torch.as_tensor(faces, device=vertices.device)
    if faces.dim() not in (2, 3) or faces.shape[-1] != 3 or faces.dtype.is_floating_point:
        raise ValueError(f"faces: expected integer indices [F, 3] or [B, F, 3], got {faces.dtype} {list(faces.shape)}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"size: expected an int >= 2, got {size!r}")
    batched = vertices.dim() == 3
    vox = voxelize_mesh(vertices if batched else vertices[None], faces, size, normalize=True, fill=True)
    vox = to_dataset_axes(vox)
    return vox if batched else vox[0]


def dataset_to_xyz(voxels: torch.Tensor) -> torch.Tensor:
    """The inverse layout change: dataset ``[b, y, x, S-1-z]`` -> ``[b, x, y, z]`` (for
    ``softras.io.save_voxel`` or plots in the mesh's own frame)."""
    if voxels.dim() != 4:
        raise ValueError(f"voxels: expected shape [B, S, S, S], got {list(voxels.shape)}")
    return voxels.flip(-1).permute(0, 2, 1, 3)


def point_to_dataset_index(point, size: int = VOXEL_SIZE) -> tuple[int, int, int]:
    """Dataset voxel index ``(i, j, k)`` of a mesh point ``(x, y, z)`` in ``[-0.5, 0.5]^3``."""
    x, y, z = (float(c) * (size - 1) + size / 2 for c in point)
    clamp = lambda a: min(max(int(a // 1), 0), size - 1)  # noqa: E731
    return clamp(y), clamp(x), size - 1 - clamp(z)


def voxel_iou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """``|P ∩ G| / |P ∪ G|`` per sample of two ``[B, S, S, S]`` grids in the same layout
    (bool or numbers, nonzero = occupied); ``[B]`` float32, 1 where both are empty."""
    pred, gt = torch.as_tensor(pred), torch.as_tensor(gt)
    if pred.dim() != 4 or pred.shape != gt.shape:
        raise ValueError(
            f"pred, gt: expected two grids of the same shape [B, S, S, S], got {list(pred.shape)} and {list(gt.shape)}"
        )
    return _voxel_iou(pred, gt)
