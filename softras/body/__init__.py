"""Body models (SMPL, SMPL+H, SMPL-X) through ``smplx``, and a bundled synthetic SMPL-format model.

``load_body_model(None)`` gives the synthetic model (generated on first use); an official file or
folder loads without chumpy or scipy.
"""

from .files import BodyModelUnpickler, read_model_file
from .model import BODY_TYPES, GENDERS, NUM_JOINTS, find_model_file, load_body_model, read_body_model
from .parts import (
    body_height,
    face_part_colors,
    face_parts,
    face_textures_from_vertex_colors,
    joint_palette,
    part_of_vertices,
    vertex_part_colors,
)
from .synthetic import SMPL_JOINT_NAMES, SMPL_PARENTS, synthetic_model, synthetic_model_path, write_synthetic_model

__all__ = [
    "BODY_TYPES",
    "GENDERS",
    "NUM_JOINTS",
    "SMPL_JOINT_NAMES",
    "SMPL_PARENTS",
    "BodyModelUnpickler",
    "body_height",
    "face_part_colors",
    "face_parts",
    "face_textures_from_vertex_colors",
    "find_model_file",
    "joint_palette",
    "load_body_model",
    "part_of_vertices",
    "read_body_model",
    "read_model_file",
    "synthetic_model",
    "synthetic_model_path",
    "vertex_part_colors",
    "write_synthetic_model",
]
