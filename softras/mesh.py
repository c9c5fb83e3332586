"""Batched triangle meshes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .functional.cameras import face_vertices as _face_vertices
from .functional.lighting import surface_normals as _surface_normals
from .functional.lighting import vertex_normals as _vertex_normals
from .functional.texture import texel_index

TEXTURE_TYPES = ("surface", "vertex")


def _tensor(name: str, value, dtype: torch.dtype, device=None) -> torch.Tensor:
    """``value`` as a tensor. Floating ``dtype``: a tensor keeps its floating dtype (float64
    stays float64); integers, numpy arrays and lists become ``dtype`` (numpy's float64
    default would otherwise give a float64 mesh, unlike the original SoftRas's ``.float()``).
    Integer ``dtype``: indices, as int64."""
    converted = not isinstance(value, torch.Tensor)
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name}: expected a tensor or array, got {type(value).__name__}") from None
    if dtype.is_floating_point and (converted or not value.dtype.is_floating_point):
        value = value.to(dtype)
    elif not dtype.is_floating_point:
        if value.dtype.is_floating_point:
            raise ValueError(f"{name}: expected integer indices, got dtype {value.dtype}")
        value = value.long()
    return value if device is None else value.to(device)


def _reversed_texel_order(texture_res: int) -> torch.Tensor:
    """perm [R*R]: texel t of a face with reversed corners (v2, v1, v0) covers the same
    sub-triangle as texel perm[t] of the face (v0, v1, v2)."""
    from .io import texel_barycentrics

    w = torch.from_numpy(texel_barycentrics(texture_res))  # centroids, in the reversed face's barycentrics
    return texel_index(w[:, 2], w[:, 1], int(texture_res))


class Mesh:
    """A batch of triangle meshes sharing a face count.

    vertices [B, V, 3] (or [V, 3]), faces [B, F, 3] (or [F, 3]), textures ``surface``
    [B, F, R*R, 3] or ``vertex`` [B, V, 3] (white when omitted). Numpy inputs become tensors
    on the default device; nothing is moved to CUDA unless asked (``.to``). Derived
    quantities (face vertices, normals) are computed from the current tensors on each access,
    so they are never stale. Operations whose names end in ``_`` change the mesh in place.
    """

    def __init__(self, vertices, faces, textures=None, texture_res: int = 1, texture_type: str = "surface"):
        if texture_type not in TEXTURE_TYPES:
            raise ValueError(f"texture_type: expected 'surface' or 'vertex', got {texture_type!r}")
        vertices = _tensor("vertices", vertices, torch.get_default_dtype())
        faces = _tensor("faces", faces, torch.int64, vertices.device)
        if vertices.dim() == 2:
            vertices = vertices[None]
        if faces.dim() == 2:
            faces = faces[None]
        if vertices.dim() != 3 or vertices.shape[-1] != 3:
            raise ValueError(f"vertices: expected shape [B, V, 3] or [V, 3], got {list(vertices.shape)}")
        if faces.dim() != 3 or faces.shape[-1] != 3:
            raise ValueError(f"faces: expected shape [B, F, 3] or [F, 3], got {list(faces.shape)}")
        if faces.shape[0] == 1 and vertices.shape[0] > 1:
            faces = faces.expand(vertices.shape[0], -1, -1)
        if faces.shape[0] != vertices.shape[0]:
            raise ValueError(f"faces: expected batch size {vertices.shape[0]} (as vertices), got {faces.shape[0]}")
        if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= vertices.shape[1]):
            lo, hi = int(faces.min()), int(faces.max())
            raise ValueError(f"faces: expected indices in [0, {vertices.shape[1]}), got [{lo}, {hi}]")
        self.texture_type = texture_type
        self._vertices, self._faces = vertices, faces
        if textures is None:
            B, V, F = vertices.shape[0], vertices.shape[1], faces.shape[1]
            shape = (B, F, texture_res**2, 3) if texture_type == "surface" else (B, V, 3)
            textures = torch.ones(shape, dtype=vertices.dtype, device=vertices.device)
        self.textures = textures
        self._fill_back = False
        self._origin = (self._vertices, self._faces, self._textures)

    # ---- tensors ------------------------------------------------------------------------
    @property
    def vertices(self) -> torch.Tensor:  # [B, V, 3]
        return self._vertices

    @vertices.setter
    def vertices(self, vertices) -> None:
        vertices = _tensor("vertices", vertices, torch.get_default_dtype(), self._vertices.device)
        if vertices.dim() != 3 or vertices.shape[-1] != 3:
            raise ValueError(f"vertices: expected shape [B, V, 3], got {list(vertices.shape)}")
        self._vertices = vertices

    @property
    def faces(self) -> torch.Tensor:  # [B, F, 3]
        return self._faces

    @faces.setter
    def faces(self, faces) -> None:
        faces = _tensor("faces", faces, torch.int64, self._vertices.device)
        if faces.dim() != 3 or faces.shape[-1] != 3:
            raise ValueError(f"faces: expected shape [B, F, 3], got {list(faces.shape)}")
        self._faces = faces

    @property
    def textures(self) -> torch.Tensor:  # [B, F, R*R, 3] or [B, V, 3]
        return self._textures

    @textures.setter
    def textures(self, textures) -> None:
        textures = _tensor("textures", textures, self._vertices.dtype, self._vertices.device)
        B, V, F = self.batch_size, self.num_vertices, self.num_faces
        if self.texture_type == "surface":
            if textures.dim() == 3:
                textures = textures[None]
            r2 = textures.shape[2] if textures.dim() == 4 else 0
            ok = textures.dim() == 4 and textures.shape[1] == F and textures.shape[3] == 3
            ok = ok and r2 >= 1 and round(r2**0.5) ** 2 == r2 and textures.shape[0] in (1, B)
            if not ok:
                raise ValueError(f"textures: expected surface shape [{B}, {F}, R*R, 3], got {list(textures.shape)}")
        else:
            if textures.dim() == 2:
                textures = textures[None]
            if textures.dim() != 3 or textures.shape[1:] != (V, 3) or textures.shape[0] not in (1, B):
                raise ValueError(f"textures: expected vertex shape [{B}, {V}, 3], got {list(textures.shape)}")
        if textures.shape[0] == 1 and B > 1:
            textures = textures.expand(B, *textures.shape[1:])
        self._textures = textures

    @property
    def batch_size(self) -> int:
        return self._vertices.shape[0]

    @property
    def num_vertices(self) -> int:
        return self._vertices.shape[1]

    @property
    def num_faces(self) -> int:
        return self._faces.shape[1]

    @property
    def texture_res(self) -> int:
        return round(self._textures.shape[2] ** 0.5) if self.texture_type == "surface" else 1

    @property
    def device(self) -> torch.device:
        return self._vertices.device

    # ---- derived ------------------------------------------------------------------------
    @property
    def face_vertices(self) -> torch.Tensor:  # [B, F, 3, 3]
        return _face_vertices(self._vertices, self._faces)

    @property
    def surface_normals(self) -> torch.Tensor:  # [B, F, 3]
        return _surface_normals(self._vertices, self._faces)

    @property
    def vertex_normals(self) -> torch.Tensor:  # [B, V, 3]
        return _vertex_normals(self._vertices, self._faces)

    @property
    def face_textures(self) -> torch.Tensor:  # [B, F, R*R, 3] or [B, F, 3, 3]
        if self.texture_type == "surface":
            return self._textures
        return _face_vertices(self._textures, self._faces)

    # ---- in place -----------------------------------------------------------------------
    def fill_back_(self) -> Mesh:
        """Adds a reversed copy of every face (double-sided geometry); idempotent."""
        if not self._fill_back:
            faces = torch.cat([self._faces, self._faces[:, :, [2, 1, 0]]], dim=1)
            if self.texture_type == "surface":
                # the reversed face (v2, v1, v0) swaps w0 and w2: its texel t covers the
                # sub-triangle that is texel perm[t] of the original face
                perm = _reversed_texel_order(self.texture_res).to(self._textures.device)
                textures = torch.cat([self._textures, self._textures[:, :, perm]], dim=1)
                self._faces = faces
                self.textures = textures
            else:
                self._faces = faces
            self._fill_back = True
        return self

    def reset_(self) -> Mesh:
        """Restores the vertices, faces and textures the mesh was made with."""
        self._vertices, self._faces, self._textures = self._origin
        self._fill_back = False
        return self

    # ---- copies -------------------------------------------------------------------------
    def with_(self, vertices=None, textures=None) -> Mesh:
        """A new mesh sharing this one's faces, with other vertices and/or textures."""
        v = self._vertices if vertices is None else vertices
        t = self._textures if textures is None else textures
        faces = self._faces
        if isinstance(v, torch.Tensor) and v.dim() == 3 and v.shape[0] != faces.shape[0] and faces.shape[0] == 1:
            faces = faces.expand(v.shape[0], -1, -1)
        if isinstance(t, torch.Tensor) and t.shape[0] == 1 and faces.shape[0] > 1:
            t = t.expand(faces.shape[0], *t.shape[1:])
        return Mesh(v, faces, t, texture_type=self.texture_type)

    def to(self, device) -> Mesh:
        """A copy on ``device``."""
        mesh = Mesh(
            self._vertices.to(device),
            self._faces.to(device),
            self._textures.to(device),
            texture_type=self.texture_type,
        )
        mesh._fill_back = self._fill_back
        mesh._origin = tuple(t.to(device) for t in self._origin)
        return mesh

    def cuda(self) -> Mesh:
        return self.to("cuda")

    def cpu(self) -> Mesh:
        return self.to("cpu")

    def detach(self) -> Mesh:
        return Mesh(self._vertices.detach(), self._faces, self._textures.detach(), texture_type=self.texture_type)

    # ---- files --------------------------------------------------------------------------
    @classmethod
    def from_obj(
        cls,
        filename_obj: str | Path,
        normalization: bool = False,
        load_texture: bool = False,
        texture_res: int = 1,
        texture_type: str = "surface",
    ) -> Mesh:
        """A mesh from an OBJ file, with its texture baked at ``texture_res`` if asked."""
        from .io import load_obj

        if load_texture:
            vertices, faces, textures = load_obj(
                filename_obj,
                normalization=normalization,
                load_texture=True,
                texture_res=texture_res,
                texture_type=texture_type,
            )
        else:
            vertices, faces = load_obj(filename_obj, normalization=normalization)
            textures = None
        return cls(vertices, faces, textures, texture_res=texture_res, texture_type=texture_type)

    def save_obj(self, filename_obj: str | Path, save_texture: bool = False, texture_res_out: int = 16) -> None:
        """Writes the mesh (batch size 1) as OBJ, with MTL + PNG atlas or vertex colours."""
        from .io import save_obj

        if self.batch_size != 1:
            raise ValueError(f"save_obj: expected a mesh of batch size 1, got {self.batch_size}")
        save_obj(
            filename_obj,
            self._vertices[0],
            self._faces[0],
            textures=self._textures[0] if save_texture else None,
            texture_res_out=texture_res_out,
            texture_type=self.texture_type,
        )

    def voxelize(self, voxel_size: int = 32) -> torch.Tensor:
        """Occupancy [B, S, S, S] of the mesh (assumed inside [-0.5, 0.5]^3)."""
        from .functional.voxelization import voxelization

        return voxelization(self.face_vertices, voxel_size, normalize=True)

    def __repr__(self) -> str:
        return (
            f"Mesh(batch_size={self.batch_size}, vertices={self.num_vertices}, faces={self.num_faces}, "
            f"texture_type={self.texture_type!r}, device={self.device})"
        )
