"""Loss modules: mesh regularizers and the soft IoU (docs: softras-math.md, section 5).

Each module analyses the (fixed) template topology once in its constructor, keeps the result
in buffers (so ``.to(device)`` / ``.cuda()`` move it) and calls the stateless function of
:mod:`softras.functional.losses` in ``forward``. The buffers are not persistent: they are
derived from the template mesh and stay out of ``state_dict``.

Constructors follow the original SoftRas: ``LaplacianLoss(vertices, faces, average=False)``
and ``FlattenLoss(faces, average=False)``; ``forward`` takes batched vertices ``[B, V, 3]``
and returns ``[B]`` (or the batch mean with ``average=True``).
"""

from __future__ import annotations

import torch
from torch import nn

from .functional import losses as _L

__all__ = ["LaplacianLoss", "FlattenLoss", "IoULoss", "EdgeLengthLoss", "NormalConsistencyLoss"]


class LaplacianLoss(nn.Module):
    """Uniform Laplacian smoothness ``sum_v ||(L x)_v||^2`` with ``L = I - D^-1 A`` (sparse).

    Args:
        vertices: template vertices ``[V, 3]`` (only V is used; a ``[1, V, 3]`` batch is fine).
        faces: ``[F, 3]`` integer vertex indices.
        average: ``forward`` returns the batch mean instead of ``[B]``.

    ``L`` is stored as the buffers ``laplacian_indices`` ``[2, nnz]`` (int64) and
    ``laplacian_values`` ``[nnz]`` (built in float64 so that a later ``.double()`` stays exact;
    ``forward`` casts ``L`` to the input's dtype); :attr:`laplacian` assembles the sparse COO
    matrix. Memory is O(V + E) (``nnz = V + 2E``), so 100k+ vertex meshes are fine.
    """

    def __init__(self, vertices: torch.Tensor, faces: torch.Tensor, average: bool = False) -> None:
        super().__init__()
        vertices = torch.as_tensor(vertices)
        self.nv = int(vertices.shape[-2])
        faces = _L.as_faces(faces)
        self.nf = int(faces.shape[0])
        self.average = bool(average)
        L = _L.uniform_laplacian(faces, self.nv, dtype=torch.float64)
        self.register_buffer("laplacian_indices", L.indices(), persistent=False)
        self.register_buffer("laplacian_values", L.values(), persistent=False)

    @property
    def laplacian(self) -> torch.Tensor:
        """The sparse COO ``[V, V]`` Laplacian, on the module's device."""
        return torch.sparse_coo_tensor(
            self.laplacian_indices,
            self.laplacian_values,
            (self.nv, self.nv),
            is_coalesced=True,
            check_invariants=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x ``[B, V, 3]`` -> ``[B]`` (scalar if ``average``)."""
        return _L.laplacian_loss(x, average=self.average, laplacian=self.laplacian)

    def extra_repr(self) -> str:
        return f"nv={self.nv}, nf={self.nf}, nnz={self.laplacian_values.numel()}, average={self.average}"


class FlattenLoss(nn.Module):
    """Flatten loss ``sum over interior edges of (cos θ + 1)^2`` (see ``flatten_loss``).

    Args:
        faces: ``[F, 3]`` integer vertex indices. Boundary edges (open meshes) and
            non-manifold edges (3+ faces) are skipped.
        average: ``forward`` returns the batch mean instead of ``[B]``.

    Buffer ``edges`` ``[E, 4]``: rows ``(a, b, c1, c2)`` of the interior edges.
    """

    def __init__(self, faces: torch.Tensor, average: bool = False) -> None:
        super().__init__()
        faces = _L.as_faces(faces)
        self.nf = int(faces.shape[0])
        self.average = bool(average)
        self.register_buffer("edges", _L.interior_edges(faces.cpu()), persistent=False)

    def forward(self, vertices: torch.Tensor, eps: float = _L.EPS) -> torch.Tensor:
        """vertices ``[B, V, 3]`` -> ``[B]`` (scalar if ``average``)."""
        return _L.flatten_loss(vertices, average=self.average, eps=eps, edges=self.edges)

    def extra_repr(self) -> str:
        return f"nf={self.nf}, interior_edges={self.edges.shape[0]}, average={self.average}"


class NormalConsistencyLoss(nn.Module):
    """Mean over interior edges of ``1 - cos`` between adjacent face normals (per mesh).

    Args:
        faces: ``[F, 3]`` integer vertex indices.
        average: ``forward`` returns the batch mean instead of ``[B]``.
    """

    def __init__(self, faces: torch.Tensor, average: bool = False) -> None:
        super().__init__()
        faces = _L.as_faces(faces)
        self.average = bool(average)
        self.register_buffer("edges", _L.interior_edges(faces.cpu()), persistent=False)

    def forward(self, vertices: torch.Tensor, eps: float = _L.EPS) -> torch.Tensor:
        """vertices ``[B, V, 3]`` -> ``[B]`` (scalar if ``average``)."""
        return _L.normal_consistency_loss(vertices, average=self.average, eps=eps, edges=self.edges)


class EdgeLengthLoss(nn.Module):
    """Mean over the unique edges of ``(|e| - target_length)^2`` (per mesh).

    Args:
        faces: ``[F, 3]`` integer vertex indices.
        target_length: preferred edge length (0: mean squared edge length).
        average: ``forward`` returns the batch mean instead of ``[B]``.
    """

    def __init__(self, faces: torch.Tensor, target_length: float = 0.0, average: bool = False) -> None:
        super().__init__()
        faces = _L.as_faces(faces)
        self.target_length = float(target_length)
        self.average = bool(average)
        self.register_buffer("edges", _L.mesh_edges(faces.cpu()), persistent=False)

    def forward(self, vertices: torch.Tensor) -> torch.Tensor:
        """vertices ``[B, V, 3]`` -> ``[B]`` (scalar if ``average``)."""
        return _L.edge_length_loss(vertices, target_length=self.target_length, average=self.average, edges=self.edges)


class IoULoss(nn.Module):
    """Soft IoU loss ``1 - sum(p t) / (sum(p + t - p t) + eps)`` per sample.

    Args:
        eps: added to the union.
        average: mean over the batch (default, as the paper) instead of ``[B]``.
    """

    def __init__(self, eps: float = _L.EPS, average: bool = True) -> None:
        super().__init__()
        self.eps = float(eps)
        self.average = bool(average)

    def forward(self, predict: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """predict, target ``[B, ...]`` -> scalar (``[B]`` if not ``average``)."""
        return _L.iou_loss(predict, target, eps=self.eps, average=self.average)
