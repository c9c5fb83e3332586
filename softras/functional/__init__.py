"""Stateless operations of softras (SoftRas-compatible names).

This layer sits below the modules of ``softras`` and imports none of them. The SoftRas names
``load_obj``, ``save_obj`` and ``save_voxel`` (reading and writing files, ``softras.io``) are
attached to this module by ``softras/__init__.py``, so ``softras.functional.load_obj`` keeps
working for SoftRas scripts without this layer importing ``softras.io``.
"""

from .cameras import face_vertices, get_points_from_angles, look, look_at, orthogonal, perspective, projection
from .lighting import ambient_lighting, directional_lighting, surface_normals, vertex_normals
from .losses import (
    edge_length_loss,
    flatten_loss,
    interior_edges,
    iou_loss,
    laplacian_loss,
    mesh_edges,
    normal_consistency_loss,
    uniform_laplacian,
)
from .rasterize import Fragments, RasterSettings, soft_rasterize, soft_rasterize_packed
from .rotations import (
    axis_angle_to_matrix,
    euler_to_matrix,
    matrix_to_rotation_6d,
    matrix_to_rotvec,
    rotation_6d_to_matrix,
    rotation_error_deg,
    rotvec_to_matrix,
)
from .voxelization import voxel_iou, voxelization, voxelize_mesh

__all__ = [
    "Fragments",
    "RasterSettings",
    "ambient_lighting",
    "axis_angle_to_matrix",
    "directional_lighting",
    "edge_length_loss",
    "euler_to_matrix",
    "face_vertices",
    "flatten_loss",
    "get_points_from_angles",
    "interior_edges",
    "iou_loss",
    "laplacian_loss",
    "look",
    "look_at",
    "matrix_to_rotation_6d",
    "matrix_to_rotvec",
    "mesh_edges",
    "normal_consistency_loss",
    "orthogonal",
    "perspective",
    "projection",
    "rotation_6d_to_matrix",
    "rotation_error_deg",
    "rotvec_to_matrix",
    "soft_rasterize",
    "soft_rasterize_packed",
    "surface_normals",
    "uniform_laplacian",
    "vertex_normals",
    "voxel_iou",
    "voxelization",
    "voxelize_mesh",
]
