"""Datasets of the reconstruction benchmark: the public ShapeNet rendering format (reading and
writing), procedural shape families and the voxel axis convention."""

from .procedural import PROCEDURAL_CLASSES, load_obj_folder, make_shape, normalize_unit_cube
from .shapenet import (
    CLASS_IDS,
    CLASS_NAMES,
    DISTANCE,
    ELEVATION,
    SPLITS,
    VIEWING_ANGLE,
    VIEWS,
    ShapeNetRenderings,
    class_id_of,
    shard,
    view_eyes,
)
from .voxels import VOXEL_SIZE, dataset_to_xyz, mesh_to_dataset_voxels, voxel_iou
from .writer import (
    default_dataset_dir,
    ensure_procedural_dataset,
    make_obj_dataset,
    make_procedural_dataset,
    procedural_dataset_dir,
    render_views,
    voxelize_meshes,
    write_dataset,
)

__all__ = [
    "CLASS_IDS",
    "CLASS_NAMES",
    "DISTANCE",
    "ELEVATION",
    "PROCEDURAL_CLASSES",
    "SPLITS",
    "VIEWING_ANGLE",
    "VIEWS",
    "VOXEL_SIZE",
    "ShapeNetRenderings",
    "class_id_of",
    "dataset_to_xyz",
    "default_dataset_dir",
    "ensure_procedural_dataset",
    "load_obj_folder",
    "make_obj_dataset",
    "make_procedural_dataset",
    "make_shape",
    "mesh_to_dataset_voxels",
    "normalize_unit_cube",
    "procedural_dataset_dir",
    "render_views",
    "shard",
    "view_eyes",
    "voxel_iou",
    "voxelize_meshes",
    "write_dataset",
]
