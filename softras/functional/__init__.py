"""Stateless operations of softras (SoftRas-compatible names)."""

from ..io import load_obj, save_obj, save_voxel
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
from .voxelization import voxel_iou, voxelization, voxelize_mesh

__all__ = [
    "Fragments",
    "RasterSettings",
    "ambient_lighting",
    "directional_lighting",
    "edge_length_loss",
    "face_vertices",
    "flatten_loss",
    "get_points_from_angles",
    "interior_edges",
    "iou_loss",
    "laplacian_loss",
    "load_obj",
    "look",
    "look_at",
    "mesh_edges",
    "normal_consistency_loss",
    "orthogonal",
    "perspective",
    "projection",
    "save_obj",
    "save_voxel",
    "soft_rasterize",
    "soft_rasterize_packed",
    "surface_normals",
    "uniform_laplacian",
    "vertex_normals",
    "voxel_iou",
    "voxelization",
    "voxelize_mesh",
]
