"""Stateless mesh and silhouette losses (docs: softras-math.md, section 5).

Conventions shared by every function here:

- ``vertices`` are batched, ``[B, V, 3]``; ``faces`` are one shared topology, ``[F, 3]``
  integer vertex indices (0-based). A ``[1, F, 3]`` tensor is accepted too.
- The mesh regularizers return one value per mesh, ``[B]``; with ``average=True`` they return
  the mean over the batch (a scalar), exactly as the original SoftRas modules did
  (``loss.sum() / batch_size``).
- Everything is plain PyTorch (works on CPU and CUDA tensors, differentiable with autograd);
  topology is analysed with sorting, never with Python loops over vertices, faces or edges.

The topology helpers (``mesh_edges``, ``interior_edges``, ``uniform_laplacian``) are cheap
but not free; the modules of :mod:`softras.losses` compute them once in their constructor and
pass them back in through the keyword arguments ``laplacian=`` / ``edges=``.
"""

from __future__ import annotations

import torch

__all__ = [
    "as_faces",
    "mesh_edges",
    "interior_edges",
    "uniform_laplacian",
    "laplacian_loss",
    "flatten_loss",
    "iou_loss",
    "edge_length_loss",
    "normal_consistency_loss",
]

EPS = 1e-6


# ----------------------------------------------------------------------------------------------
# topology
# ----------------------------------------------------------------------------------------------


def as_faces(faces: torch.Tensor) -> torch.Tensor:  # [F, 3] or [1, F, 3]
    """faces as an int64 ``[F, 3]`` tensor (a ``[1, F, 3]`` batch of one is squeezed), checked:
    integer indices, none negative."""
    faces = torch.as_tensor(faces)
    if faces.dim() == 3 and faces.shape[0] == 1:
        faces = faces[0]
    if faces.dim() != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be [F, 3], got {tuple(faces.shape)}")
    if faces.is_floating_point() or faces.is_complex() or faces.dtype == torch.bool:
        raise TypeError(f"faces must hold integer indices, got {faces.dtype}")
    faces = faces.long()
    if faces.numel() and int(faces.min()) < 0:
        raise ValueError("faces hold a negative vertex index")
    return faces


def _check_vertices(vertices: torch.Tensor, what: str = "vertices") -> None:
    if vertices.dim() != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"{what} must be [B, V, 3], got {tuple(vertices.shape)}")


def _sorted_edge_table(faces: torch.Tensor):
    """All 3F directed face edges as undirected keys, sorted.

    Returns (keys [3F] sorted, order [3F] (position in the unsorted table), a [3F], b [3F]
    (edge end points, a <= b, unsorted), opposite [3F] (the face's third vertex, unsorted)).
    Entry k of the unsorted table is edge (k // F) of face (k % F).
    """
    e0 = torch.cat([faces[:, 0], faces[:, 1], faces[:, 2]])  # [3F]
    e1 = torch.cat([faces[:, 1], faces[:, 2], faces[:, 0]])  # [3F]
    opp = torch.cat([faces[:, 2], faces[:, 0], faces[:, 1]])  # [3F]
    a = torch.minimum(e0, e1)
    b = torch.maximum(e0, e1)
    n = int(faces.max()) + 1 if faces.numel() else 1
    keys = a * n + b  # unique per undirected edge (int64: fine for any practical V)
    keys_sorted, order = torch.sort(keys, stable=True)
    return keys_sorted, order, a, b, opp


def mesh_edges(faces: torch.Tensor) -> torch.Tensor:
    """Unique undirected edges of a triangle mesh.

    Args:
        faces: ``[F, 3]`` integer vertex indices.

    Returns:
        ``[E, 2]`` int64, each row ``(a, b)`` with ``a < b`` (edges of degenerate faces with a
        repeated vertex, ``a == b``, are dropped), sorted by ``(a, b)``.
    """
    faces = as_faces(faces)
    if faces.shape[0] == 0:
        return torch.zeros(0, 2, dtype=torch.long, device=faces.device)
    keys_sorted, order, a, b, _ = _sorted_edge_table(faces)
    first = torch.ones_like(keys_sorted, dtype=torch.bool)
    first[1:] = keys_sorted[1:] != keys_sorted[:-1]
    idx = order[first]
    edges = torch.stack([a[idx], b[idx]], dim=1)
    return edges[edges[:, 0] != edges[:, 1]]


def interior_edges(faces: torch.Tensor) -> torch.Tensor:
    """Interior edges with their two opposite vertices: ``[E, 4]`` rows ``(a, b, c1, c2)``.

    An edge counts as interior when exactly two faces share it; ``(a, b, c1)`` and
    ``(a, b, c2)`` are those two triangles (up to winding), with ``a < b``. Boundary edges of
    open meshes (one face) are skipped, and so are non-manifold edges (three faces or more):
    they have no single dihedral angle. Degenerate faces (a repeated vertex) are ignored.
    Fully vectorized: the undirected edge keys of all faces are sorted and runs of equal keys
    of length exactly two are kept.

    Args:
        faces: ``[F, 3]`` integer vertex indices.

    Returns:
        ``[E, 4]`` int64, sorted by ``(a, b)``; ``E = 3F/2`` for a closed manifold mesh.
    """
    faces = as_faces(faces)
    f0, f1, f2 = faces.unbind(1)
    faces = faces[(f0 != f1) & (f1 != f2) & (f2 != f0)]  # drop degenerate faces
    if faces.shape[0] == 0:
        return torch.zeros(0, 4, dtype=torch.long, device=faces.device)
    keys_sorted, order, a, b, opp = _sorted_edge_table(faces)
    _, counts = torch.unique_consecutive(keys_sorted, return_counts=True)  # [U]
    start = torch.cumsum(counts, 0) - counts  # [U] first position of each run
    pair = counts == 2
    i1 = order[start[pair]]  # [E] the two faces' entries in the unsorted table
    i2 = order[start[pair] + 1]
    return torch.stack([a[i1], b[i1], opp[i1], opp[i2]], dim=1)  # [E, 4]


def uniform_laplacian(
    faces: torch.Tensor,
    num_vertices: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The uniform graph Laplacian ``L = I - D^-1 A`` as a sparse COO tensor ``[V, V]``.

    ``A`` is the (binary, symmetric) adjacency of the mesh's vertex graph, ``D`` the vertex
    degrees: row ``i`` holds ``1`` on the diagonal and ``-1/deg(i)`` at each neighbour, so
    ``(L x)_i = x_i - mean of the neighbours of x_i``. This is the matrix of the original
    SoftRas ``LaplacianLoss`` (which built it dense, V x V); ``nnz = V + 2E`` here.
    Vertices referenced by no face (degree 0) get an all-zero row (the original divided by
    zero and produced NaN): they contribute nothing to the loss.

    Args:
        faces: ``[F, 3]`` integer vertex indices, all ``< num_vertices``.
        num_vertices: V.
        dtype, device: of the result (device defaults to that of ``faces``).

    Returns:
        coalesced sparse COO ``[V, V]``.
    """
    faces = as_faces(faces)
    V = int(num_vertices)
    if faces.numel() and int(faces.max()) >= V:
        raise ValueError(f"faces reference vertex {int(faces.max())} but num_vertices is {V}")
    device = faces.device if device is None else torch.device(device)
    faces = faces.to(device)
    edges = mesh_edges(faces)  # [E, 2]
    rows = torch.cat([edges[:, 0], edges[:, 1]])  # [2E]
    cols = torch.cat([edges[:, 1], edges[:, 0]])  # [2E]
    deg = torch.bincount(rows, minlength=V).to(dtype)  # [V]
    off = -1.0 / deg[rows]  # [2E] (deg >= 1 for every row that has an edge)
    diag = torch.nonzero(deg > 0).flatten()  # [V'] vertices on at least one edge
    indices = torch.cat([torch.stack([rows, cols]), torch.stack([diag, diag])], dim=1)
    values = torch.cat([off, torch.ones(diag.numel(), dtype=dtype, device=device)])
    return torch.sparse_coo_tensor(
        indices, values, (V, V), dtype=dtype, device=device, check_invariants=False
    ).coalesce()


# ----------------------------------------------------------------------------------------------
# losses
# ----------------------------------------------------------------------------------------------


def _reduce(loss: torch.Tensor, average: bool) -> torch.Tensor:
    """[B] -> [B], or the batch mean (a scalar) when average."""
    return loss.sum() / loss.shape[0] if average else loss


def laplacian_loss(
    vertices: torch.Tensor,
    faces: torch.Tensor | None = None,
    average: bool = False,
    *,
    laplacian: torch.Tensor | None = None,
) -> torch.Tensor:
    """Uniform Laplacian smoothness: ``sum_v ||(L x)_v||^2`` per mesh.

    Args:
        vertices: ``[B, V, 3]``.
        faces: ``[F, 3]``; used to build ``L`` when ``laplacian`` is not given.
        average: return the mean over the batch (scalar) instead of ``[B]``.
        laplacian: a precomputed ``[V, V]`` matrix (sparse, from :func:`uniform_laplacian`,
            or dense); takes precedence over ``faces``.

    Returns:
        ``[B]``, or a scalar if ``average``.
    """
    _check_vertices(vertices)
    B, V, _ = vertices.shape
    if laplacian is None:
        if faces is None:
            raise ValueError("laplacian_loss needs faces or a precomputed laplacian")
        laplacian = uniform_laplacian(faces, V, dtype=vertices.dtype, device=vertices.device)
    if laplacian.shape != (V, V):
        raise ValueError(f"laplacian is {tuple(laplacian.shape)} but the mesh has V = {V}")
    compute_dtype = vertices.dtype
    if compute_dtype in (torch.float16, torch.bfloat16):  # no half sparse mm on every device
        compute_dtype = torch.float32
    L = laplacian.to(device=vertices.device, dtype=compute_dtype)
    x = vertices.to(compute_dtype).transpose(0, 1).reshape(V, B * 3)  # [V, B*3]
    Lx = torch.sparse.mm(L, x) if L.is_sparse else L @ x  # [V, B*3]
    Lx = Lx.reshape(V, B, 3).transpose(0, 1)  # [B, V, 3]
    loss = Lx.pow(2).sum(dim=(1, 2)).to(vertices.dtype)  # [B]
    return _reduce(loss, average)


def _edge_geometry(vertices: torch.Tensor, edges: torch.Tensor, eps: float):
    """For interior edges (a, b, c1, c2): the edge vector e = b - a [B, E, 3] and the
    components h1, h2 of c1 - a, c2 - a perpendicular to it ([B, E, 3] each)."""
    a, b, c1, c2 = edges.to(vertices.device).unbind(1)  # [E] each
    va = vertices[:, a]  # [B, E, 3]
    e = vertices[:, b] - va  # [B, E, 3]
    u1 = vertices[:, c1] - va  # [B, E, 3]
    u2 = vertices[:, c2] - va  # [B, E, 3]
    ee = (e * e).sum(-1, keepdim=True).clamp_min(eps * eps)  # [B, E, 1]
    h1 = u1 - e * ((u1 * e).sum(-1, keepdim=True) / ee)
    h2 = u2 - e * ((u2 * e).sum(-1, keepdim=True) / ee)
    return e, h1, h2


def _safe_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """|x| over the last dim, at least eps (finite gradient everywhere, exact above eps)."""
    return (x * x).sum(-1).clamp_min(eps * eps).sqrt()


def _interior_edges_for(vertices, faces, edges) -> torch.Tensor:
    if edges is None:
        if faces is None:
            raise ValueError("needs faces or precomputed edges")
        edges = interior_edges(faces)
    if edges.dim() != 2 or edges.shape[1] != 4:
        raise ValueError(f"edges must be [E, 4] (a, b, c1, c2), got {tuple(edges.shape)}")
    return edges


def flatten_loss(
    vertices: torch.Tensor,
    faces: torch.Tensor | None = None,
    average: bool = False,
    eps: float = EPS,
    *,
    edges: torch.Tensor | None = None,
) -> torch.Tensor:
    """Flatten loss: ``sum over interior edges of (cos θ + 1)^2`` per mesh.

    For the interior edge ``(a, b)`` with adjacent triangles ``(a, b, c1)`` and ``(a, b, c2)``,
    ``h1``, ``h2`` are the components of ``c1 - a`` and ``c2 - a`` perpendicular to the edge and
    ``cos θ = h1·h2 / (|h1| |h2|)``: ``θ`` is the dihedral angle between the two faces, so the
    term is 0 when they are coplanar (a flat surface, ``h1 = -h2``), 1 at a 90 degree fold and
    4 when folded completely onto each other. Norms are clamped to at least ``eps`` (this keeps
    degenerate faces finite without biasing ordinary ones). Boundary and non-manifold edges
    are skipped (see :func:`interior_edges`).

    Args:
        vertices: ``[B, V, 3]``.
        faces: ``[F, 3]``; used when ``edges`` is not given.
        average: return the mean over the batch (scalar) instead of ``[B]``.
        eps: norm clamp.
        edges: precomputed :func:`interior_edges` ``[E, 4]``.

    Returns:
        ``[B]``, or a scalar if ``average``.
    """
    _check_vertices(vertices)
    edges = _interior_edges_for(vertices, faces, edges)
    _, h1, h2 = _edge_geometry(vertices, edges, eps)
    cos = (h1 * h2).sum(-1) / (_safe_norm(h1, eps) * _safe_norm(h2, eps))  # [B, E]
    loss = (cos + 1).pow(2).sum(-1)  # [B]
    return _reduce(loss, average)


def normal_consistency_loss(
    vertices: torch.Tensor,
    faces: torch.Tensor | None = None,
    average: bool = False,
    eps: float = EPS,
    *,
    edges: torch.Tensor | None = None,
) -> torch.Tensor:
    """Normal consistency: mean over interior edges of ``1 - cos(n1, n2)`` per mesh.

    As PyTorch3D's ``mesh_normal_consistency``: for the interior edge ``(a, b)`` with opposite
    vertices ``c1``, ``c2``, ``n1 = (b - a) x (c1 - a)`` and ``n2 = -(b - a) x (c2 - a)`` (the
    second face's normal as if it were wound consistently with the first, so the result does
    not depend on the faces' winding). 0 for a flat pair, 1 at a 90 degree fold, 2 when folded
    completely; equal to ``1 + cos θ`` of :func:`flatten_loss`. Differences from PyTorch3D:
    non-manifold edges (3+ faces) are skipped instead of averaging over all their face pairs,
    the norm clamp is ``eps`` on each norm, and a mesh without interior edges gives 0.

    Args:
        vertices: ``[B, V, 3]``.
        faces: ``[F, 3]``; used when ``edges`` is not given.
        average: return the mean over the batch (scalar) instead of ``[B]``.
        eps: norm clamp.
        edges: precomputed :func:`interior_edges` ``[E, 4]``.

    Returns:
        ``[B]``, or a scalar if ``average``.
    """
    _check_vertices(vertices)
    edges = _interior_edges_for(vertices, faces, edges)
    if edges.shape[0] == 0:
        return _reduce(vertices.sum(dim=(1, 2)) * 0, average)
    e, h1, h2 = _edge_geometry(vertices, edges, eps)
    n1 = torch.cross(e, h1, dim=-1)  # [B, E, 3] == e x (c1 - a)
    n2 = -torch.cross(e, h2, dim=-1)  # [B, E, 3] == -e x (c2 - a)
    cos = (n1 * n2).sum(-1) / (_safe_norm(n1, eps) * _safe_norm(n2, eps))  # [B, E]
    loss = (1 - cos).mean(-1)  # [B]
    return _reduce(loss, average)


def edge_length_loss(
    vertices: torch.Tensor,
    faces: torch.Tensor | None = None,
    target_length: float = 0.0,
    average: bool = False,
    *,
    edges: torch.Tensor | None = None,
) -> torch.Tensor:
    """Edge length regularizer: mean over the unique edges of ``(|e| - target_length)^2``.

    With the default ``target_length = 0`` this is the mean squared edge length (as
    PyTorch3D's ``mesh_edge_loss``), computed without a square root; it shrinks the mesh
    overall and keeps edges short and even. Each undirected edge counts once, however many
    faces share it.

    Args:
        vertices: ``[B, V, 3]``.
        faces: ``[F, 3]``; used when ``edges`` is not given.
        target_length: the preferred edge length.
        average: return the mean over the batch (scalar) instead of ``[B]``.
        edges: precomputed :func:`mesh_edges` ``[E, 2]``.

    Returns:
        ``[B]`` (0 for a mesh without edges), or a scalar if ``average``.
    """
    _check_vertices(vertices)
    if edges is None:
        if faces is None:
            raise ValueError("edge_length_loss needs faces or precomputed edges")
        edges = mesh_edges(faces)
    if edges.dim() != 2 or edges.shape[1] != 2:
        raise ValueError(f"edges must be [E, 2], got {tuple(edges.shape)}")
    if edges.shape[0] == 0:
        return _reduce(vertices.sum(dim=(1, 2)) * 0, average)
    edges = edges.to(vertices.device)
    d = vertices[:, edges[:, 1]] - vertices[:, edges[:, 0]]  # [B, E, 3]
    d2 = (d * d).sum(-1)  # [B, E]
    if target_length == 0:
        per_edge = d2
    else:
        per_edge = (d2.clamp_min(EPS * EPS).sqrt() - target_length).pow(2)
    return _reduce(per_edge.mean(-1), average)


def iou_loss(predict: torch.Tensor, target: torch.Tensor, eps: float = EPS, average: bool = True) -> torch.Tensor:
    """Soft IoU loss of the paper: ``1 - sum(p t) / (sum(p + t - p t) + eps)`` per sample.

    Args:
        predict: ``[B, ...]`` soft masks (e.g. rendered alpha, values in [0, 1]).
        target: ``[B, ...]`` the same shape.
        eps: added to the union (two empty masks give a loss of 1, as in the original).
        average: mean over the batch (scalar, the original's behaviour) instead of ``[B]``.

    Returns:
        a scalar, or ``[B]`` if not ``average``.
    """
    if predict.shape != target.shape:
        raise ValueError(f"predict {tuple(predict.shape)} and target {tuple(target.shape)} differ")
    dims = tuple(range(1, predict.dim()))
    intersect = (predict * target).sum(dims)  # [B]
    union = (predict + target - predict * target).sum(dims) + eps  # [B]
    loss = 1 - intersect / union  # [B]
    return loss.mean() if average else loss
