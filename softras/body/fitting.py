"""Pieces of fitting a body model to images: poses from Euler angles, the right hand's joints,
a camera (look_at or a pinhole matrix), rendering with per-part colours, and what is hidden.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ..functional.cameras import face_vertices, get_points_from_angles, look_at, perspective, projection
from ..functional.lighting import ambient_lighting, directional_lighting, surface_normals
from ..functional.rasterize import Fragments, soft_rasterize_packed
from ..functional.rotations import euler_to_matrix, matrix_to_rotvec
from ..functional.settings import RasterSettings
from .model import NUM_JOINTS
from .parts import body_height
from .synthetic import SMPL_JOINT_NAMES

__all__ = [
    "BodyCamera",
    "body_pose_from_euler",
    "hidden_fraction",
    "num_body_joints",
    "render_body",
    "right_hand_joints",
]

# joints in ``body_pose`` (the ones after the root): SMPL 23; SMPL+H and SMPL-X 21 (the hands apart)
_BODY_POSE_JOINTS = {"smpl": 23, "smplh": 21, "smplx": 21}


def num_body_joints(body_type: str) -> int:
    """The joints ``body_pose`` holds (3 numbers each) for ``body_type``."""
    if body_type not in _BODY_POSE_JOINTS:
        raise ValueError(f"body_type: expected one of {', '.join(_BODY_POSE_JOINTS)}, got {body_type!r}")
    return _BODY_POSE_JOINTS[body_type]


def right_hand_joints(body_type: str) -> tuple[int, ...]:
    """The right wrist and the joints of the right hand in ``body_type``'s skeleton: SMPL (21, 23);
    SMPL+H 21 and its right-hand finger joints 37-51; SMPL-X 21 and 40-54."""
    num_body_joints(body_type)
    if body_type == "smpl":
        return (21, 23)
    first = NUM_JOINTS[body_type] - 15
    return (21, *range(first, first + 15))


def body_pose_from_euler(
    joint_degrees: Mapping[str | int, Sequence[float]],
    body_type: str = "smpl",
) -> torch.Tensor:
    """``body_pose`` [3 * J] (rotation vectors, J from :func:`num_body_joints`) with the given
    joints (SMPL names such as ``r_shoulder`` or indices 1-21) set to Euler angles (x, y, z) in
    degrees, ``R = Rz Ry Rx``, in the parent's frame; every other joint at zero."""
    J = num_body_joints(body_type)
    pose = torch.zeros(J, 3, dtype=torch.float64)
    for key, degrees in joint_degrees.items():
        joint = SMPL_JOINT_NAMES.index(key) if key in SMPL_JOINT_NAMES else key
        if isinstance(joint, bool) or not isinstance(joint, int) or not 1 <= joint <= J:
            names = ", ".join(SMPL_JOINT_NAMES[1 : J + 1])
            raise ValueError(f"joint_degrees: expected joint names ({names}) or indices 1..{J}, got {key!r}")
        pose[joint - 1] = matrix_to_rotvec(euler_to_matrix(degrees))
    return pose.reshape(-1).float()


@dataclass(frozen=True)
class BodyCamera:
    """A set of views: look_at eyes [N, 3] toward ``at``, or one pinhole matrix ``P`` [1, 3, 4]
    (``K [R | t]`` in pixels of an ``orig_size`` image)."""

    eyes: torch.Tensor | None = None  # [N, 3]
    at: tuple[float, float, float] = (0.0, 0.0, 0.0)
    up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    P: torch.Tensor | None = None  # [1, 3, 4]
    orig_size: tuple[int, int] = (512, 512)

    @classmethod
    def from_angles(cls, distance: float, elevation: float, azimuths: Sequence[float], at=(0, 0, 0), up=(0, 1, 0)):
        """Views from ``distance`` and ``elevation`` at each of ``azimuths`` (degrees) around ``at``."""
        at_t = torch.tensor([float(a) for a in at])
        eyes = get_points_from_angles(float(distance), float(elevation), torch.tensor([float(a) for a in azimuths]))
        return cls(eyes=eyes + at_t, at=tuple(float(a) for a in at), up=tuple(float(u) for u in up))

    @property
    def num_views(self) -> int:
        return 1 if self.eyes is None else int(self.eyes.shape[0])

    def project(
        self,
        vertices: torch.Tensor,  # [V, 3], world
        viewing_angle: float,
        image_size: tuple[int, int],
    ) -> torch.Tensor:  # [N, V, 3]: NDC x, y and depth, one row per view
        N = self.num_views
        v = vertices[None].expand(N, -1, -1)
        if self.P is not None:
            return projection(v, self.P.to(vertices), orig_size=self.orig_size)
        eyes = self.eyes.to(vertices)
        return perspective(look_at(v, eyes, at=self.at, up=self.up), viewing_angle, image_size)


def render_body(
    vertices: torch.Tensor,  # [V, 3]
    faces: torch.Tensor,  # [F, 3]
    colors: torch.Tensor,  # [F, 3]: one colour per face (surface textures, R = 1)
    camera: BodyCamera,
    settings: RasterSettings,
    viewing_angle: float = 30.0,
    light: tuple[float, float, Sequence[float]] | None = (0.6, 0.4, (0.0, 0.5, 1.0)),
    backend: str = "auto",
    return_fragments: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, Fragments]:
    """RGBA [N, 4, H, W] of the body seen from each of the camera's views. ``light`` is
    (ambient, directional intensity, direction in world) or None for flat colours; with
    ``return_fragments`` also the nearest face per pixel (indices into ``faces``)."""
    faces = faces.long()
    tex = colors.to(vertices)[None]
    if light is not None:
        ambient, directional, direction = light
        normals = surface_normals(vertices[None], faces[None])  # [1, F, 3]
        lit = ambient_lighting(torch.zeros_like(normals), ambient)
        lit = directional_lighting(lit, normals, directional, light_direction=tuple(direction))
        tex = tex * lit
    N, F = camera.num_views, faces.shape[0]
    fv = face_vertices(camera.project(vertices, viewing_angle, settings.image_size), faces[None].expand(N, -1, -1))
    textures = tex[:, :, None].expand(N, -1, -1, -1).reshape(N * F, 1, 3)
    first = torch.arange(N, device=vertices.device) * F
    out = soft_rasterize_packed(fv.reshape(-1, 3, 3), textures, first, settings, backend, return_fragments)
    if not return_fragments:
        return out
    rgba, frags = out
    index = torch.where(frags.face_index >= 0, frags.face_index - first[:, None, None], frags.face_index)
    return rgba, Fragments(frags.depth, index)


def standing_height(body: torch.nn.Module, betas: torch.Tensor) -> torch.Tensor:
    """The height of the shaped body in its rest pose (SMPL's T-pose, pose-independent):
    ``body_height`` of ``v_template`` plus smplx's shape blend shapes of ``betas`` [..., B] -> [...]."""
    from smplx.lbs import blend_shapes

    dirs, n = body.shapedirs, betas.shape[-1]
    if n > dirs.shape[-1]:
        raise ValueError(f"betas: expected at most {dirs.shape[-1]} shape coefficients, got {n}")
    shaped = body.v_template + blend_shapes(betas.reshape(-1, n), dirs[..., :n])
    return body_height(shaped).reshape(betas.shape[:-1])


def hidden_fraction(
    face_index: torch.Tensor,  # [N, H, W]: nearest face per pixel, -1 for none
    part_faces: torch.Tensor,  # [F] bool: the faces of the part
) -> float:
    """The fraction of the part's faces that are nearest at no pixel of any view (1: all hidden)."""
    total = int(part_faces.sum())
    if total == 0:
        raise ValueError("part_faces: expected at least one face of the part, got none")
    seen = face_index[face_index >= 0].unique()
    visible = int(part_faces.to(seen.device)[seen].sum())
    return 1.0 - visible / total
