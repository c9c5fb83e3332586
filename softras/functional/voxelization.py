"""Solid voxelization of triangle meshes and the voxel IoU metric (docs: softras-math.md, 5).

Pipeline of :func:`voxelization` (all vectorized PyTorch; CPU and CUDA; no gradients):

1. Coordinates. With ``normalize=True`` the face vertices (a mesh inside ``[-0.5, 0.5]^3``) are
   mapped into the unit cube by ``v * (S - 1) / S + 0.5`` (the evaluation of the
   reconstruction experiment), then to voxel units by ``* S``; so mesh coordinate ``v`` lands
   at voxel coordinate ``v * (S - 1) + S / 2``. With ``normalize=False`` the input is taken to
   be in the unit cube already and is only multiplied by ``S``.
2. Surface. Voxel ``(i, j, k)`` is the closed box ``[i, i+1] x [j, j+1] x [k, k+1]`` in voxel
   units (centre ``(i + 0.5, j + 0.5, k + 0.5)``). A voxel is a surface voxel when a triangle
   overlaps it, by the exact separating-axis triangle/box test (Akenine-Moeller: the triangle's
   normal and the 9 edge x box-axis cross products; the 3 box axes are implied by the
   candidate range). Candidates per triangle are the voxels ``floor(min) .. floor(max)`` of
   its bounding box, so a point exactly on a voxel boundary plane belongs to the upper voxel
   (``floor``), and a triangle lying exactly in a boundary plane also marks the lower voxels
   it touches along the other axes. Keep geometry off exact integer coordinates when an exact
   count matters. Degenerate triangles are voxelized as their segment / point; triangles with
   non-finite vertices are dropped; geometry outside the grid is clipped.
3. Fill. Exterior = the empty (non-surface) voxels connected to an empty voxel of the grid's
   border through 6-connected empty voxels; result = everything else (surface | interior).
   The flood fill runs as repeated full-line sweeps along x, y and z (a cummax per line: an
   empty voxel is exterior when an exterior voxel precedes it on its line with no surface
   voxel in between) until nothing changes; each round is O(S^3) work, and the number of
   rounds is the number of axis-aligned turns of the longest escape path (a handful).
   An open mesh whose holes are larger than a voxel is therefore NOT filled.

Axis order (our choice): the result is ``[B, S, S, S]`` indexed ``[b, x, y, z]`` (index 1 is the
first coordinate of the vertices, index 3 the last), the order of the original SoftRas
voxelization kernels (``voxels[bn, c0, c1, c2]``). The original reconstruction evaluation
compared with the ShapeNet voxel files of the recon dataset (``[N, 32, 32, 32]``) after
``voxels.transpose(0, 2, 1, 3)[:, :, :, ::-1]``, i.e. ``[b, y, x, S-1-z]``; use
:func:`to_dataset_axes` for that layout; the benchmark's convention as a whole is stated and
tested once, in ``softras.datasets.voxels`` (``mesh_to_dataset_voxels``). Note that the
original kernels sampled triangle columns at integer coordinates (not voxel centres), so their
voxels are offset by up to half a voxel from ours along some axes.
"""

from __future__ import annotations

import torch

__all__ = [
    "voxelization",
    "voxelize_mesh",
    "surface_voxels",
    "fill_interior",
    "voxel_iou",
    "to_dataset_axes",
]

# (triangle, candidate voxel) pairs tested at once; bounds the temporary memory (< 1 kB a pair).
MAX_PAIRS = 1 << 18


def _triangle_box_overlap(tri: torch.Tensor, half: float = 0.5, coord_scale: float = 1.0) -> torch.Tensor:
    """Separating-axis test of triangles against axis-aligned boxes centred at the origin.

    Args:
        tri: ``[P, 3, 3]`` triangle vertices relative to the box centre.
        half: box half size.
        coord_scale: magnitude of the coordinates the vertices were computed from (the grid
            size); sets the rounding tolerance.

    Returns:
        ``[P]`` bool, True where the triangle and the closed box overlap (touching counts),
        assuming their bounding boxes overlap (the 3 box-axis tests are not repeated here).

    A separating axis must separate by more than a rounding tolerance (about 1e-9 relative
    to ``coord_scale``): the normal of a (nearly) degenerate triangle is rounding noise and
    must not separate anything; such a triangle is then bounded by its edge axes alone, i.e.
    voxelized as its segment.
    """
    # component-wise on [P, 3] tensors (small-dim reductions and einsum are slow here)
    vx, vy, vz = tri.unbind(-1)  # [P, 3(vertex)] each
    opp = [2, 0, 1]  # edge k = v[k+1] - v[k]; its opposite vertex is v[k+2]
    ox, oy, oz = vx[:, opp], vy[:, opp], vz[:, opp]  # [P, 3(edge)]
    ex, ey, ez = vx[:, [1, 2, 0]] - vx, vy[:, [1, 2, 0]] - vy, vz[:, [1, 2, 0]] - vz  # [P, 3(edge)]
    tol = 1e-9 * (1.0 + coord_scale)
    lmax = torch.maximum(torch.maximum(ex.abs(), ey.abs()), ez.abs()).amax(-1)  # [P] longest |e|_inf
    # triangle normal n = e0 x e1: plane/box overlap
    nx = ey[:, 0] * ez[:, 1] - ez[:, 0] * ey[:, 1]
    ny = ez[:, 0] * ex[:, 1] - ex[:, 0] * ez[:, 1]
    nz = ex[:, 0] * ey[:, 1] - ey[:, 0] * ex[:, 1]
    d = nx * vx[:, 0] + ny * vy[:, 0] + nz * vz[:, 0]  # [P]
    r = half * (nx.abs() + ny.abs() + nz.abs()) + 9 * tol * lmax * lmax
    sep = d.abs() > r  # [P]
    # 9 axes e_k x unit_j: (e x x^) = (0, e_z, -e_y), (e x y^) = (-e_z, 0, e_x), (e x z^) = (e_y, -e_x, 0).
    # The edge's two end points project to the same value; the opposite vertex is the other.
    tol_e = 3 * tol * lmax[:, None]  # [P, 1]
    sep_e = torch.zeros_like(ex, dtype=torch.bool)  # [P, 3(edge)]
    for (au, pu, qu), (av, pv, qv) in (
        ((ez, vy, oy), (-ey, vz, oz)),  # e x x^
        ((-ez, vx, ox), (ex, vz, oz)),  # e x y^
        ((ey, vx, ox), (-ex, vy, oy)),  # e x z^
    ):
        p0 = au * pu + av * pv  # [P, 3] projection of the edge's end points
        p1 = au * qu + av * qv  # [P, 3] projection of the opposite vertex
        rad = half * (au.abs() + av.abs()) + tol_e
        sep_e |= (torch.minimum(p0, p1) > rad) | (torch.maximum(p0, p1) < -rad)
    return ~(sep | sep_e[:, 0] | sep_e[:, 1] | sep_e[:, 2])


def surface_voxels(face_vertices: torch.Tensor, size: int = 32, max_pairs: int = MAX_PAIRS) -> torch.Tensor:
    """Voxels overlapped by at least one triangle (no fill).

    Args:
        face_vertices: ``[B, F, 3, 3]`` in VOXEL units (voxel ``(i, j, k)`` spans
            ``[i, i+1] x [j, j+1] x [k, k+1]``).
        size: S.
        max_pairs: how many (triangle, voxel) candidates are tested at once.

    Returns:
        ``[B, S, S, S]`` bool, indexed ``[b, x, y, z]``.
    """
    if face_vertices.dim() != 4 or face_vertices.shape[-2:] != (3, 3):
        raise ValueError(f"face_vertices must be [B, F, 3, 3], got {tuple(face_vertices.shape)}")
    S = int(size)
    B, F = face_vertices.shape[:2]
    device = face_vertices.device
    out = torch.zeros(B * S * S * S, dtype=torch.bool, device=device)
    tri = face_vertices.detach().to(torch.float64).reshape(B * F, 3, 3)  # [N, 3, 3]
    bidx = torch.arange(B, device=device).repeat_interleave(F)  # [N]
    finite = torch.isfinite(tri).flatten(1).all(1)
    tri, bidx = tri[finite], bidx[finite]
    if tri.shape[0] == 0:
        return out.view(B, S, S, S)
    lo = tri.amin(1).clamp(-1, S).floor().long().clamp_min(0)  # [N, 3]
    hi = tri.amax(1).clamp(-1, S).floor().long().clamp_max(S - 1)  # [N, 3]
    ext = (hi - lo + 1).clamp_min(0)  # [N, 3] candidate voxels per axis
    counts = ext.prod(1)  # [N]
    keep = counts > 0
    tri, bidx, lo, ext, counts = tri[keep], bidx[keep], lo[keep], ext[keep], counts[keep]
    N = tri.shape[0]
    if N == 0:
        return out.view(B, S, S, S)
    # chunks of consecutive triangles with at most max_pairs candidates (a bigger triangle alone)
    cum = torch.cumsum(counts, 0).cpu()
    bounds = [0]
    while bounds[-1] < N:
        start = bounds[-1]
        base = int(cum[start - 1]) if start > 0 else 0
        end = int(torch.searchsorted(cum, torch.tensor(base + max_pairs), right=True))
        bounds.append(max(end, start + 1))
    for s, e in zip(bounds[:-1], bounds[1:]):
        c = counts[s:e]  # [n]
        P = int(cum[e - 1]) - (int(cum[s - 1]) if s > 0 else 0)
        fid = torch.repeat_interleave(torch.arange(e - s, device=device), c, output_size=P)  # [P]
        local = torch.arange(P, device=device) - (torch.cumsum(c, 0) - c)[fid]  # [P]
        n = ext[s:e][fid]  # [P, 3]
        nyz = n[:, 1] * n[:, 2]
        ijk = lo[s:e][fid] + torch.stack(
            [local // nyz, (local % nyz) // n[:, 2], local % n[:, 2]], dim=1
        )  # [P, 3] voxel indices
        centre = ijk.to(tri.dtype) + 0.5  # [P, 3]
        hit = _triangle_box_overlap(tri[s:e][fid] - centre[:, None, :], coord_scale=S)  # [P]
        flat = ((bidx[s:e][fid] * S + ijk[:, 0]) * S + ijk[:, 1]) * S + ijk[:, 2]  # [P]
        out[flat[hit]] = True
    return out.view(B, S, S, S)


def _sweep(ext: torch.Tensor, surface: torch.Tensor, dim: int) -> torch.Tensor:
    """Spreads ``ext`` along whole lines of axis ``dim`` through non-surface voxels."""
    S = ext.shape[dim]
    shape = [1] * ext.dim()
    shape[dim] = S
    pos = torch.arange(S, device=ext.device, dtype=torch.int16 if S < 32767 else torch.int64)
    pos = pos.view(shape).expand_as(ext)
    out = ext.clone()
    for flip in (False, True):
        e, s, p = (ext, surface, pos) if not flip else (ext.flip(dim), surface.flip(dim), pos)
        last_ext = torch.where(e, p, -1).cummax(dim).values
        last_surf = torch.where(s, p, -1).cummax(dim).values
        reach = last_ext > last_surf  # an exterior voxel after the last surface voxel
        out |= reach.flip(dim) if flip else reach
    return out & ~surface


def fill_interior(surface: torch.Tensor) -> torch.Tensor:
    """Surface plus interior: the complement of the empty voxels 6-connected to the border.

    Args:
        surface: ``[B, X, Y, Z]`` bool (or 0/1) surface voxels.

    Returns:
        ``[B, X, Y, Z]`` bool.
    """
    surface = surface.bool()
    if surface.dim() != 4:
        raise ValueError(f"surface must be [B, X, Y, Z], got {tuple(surface.shape)}")
    border = torch.zeros_like(surface)
    border[:, 0] = border[:, -1] = True
    border[:, :, 0] = border[:, :, -1] = True
    border[:, :, :, 0] = border[:, :, :, -1] = True
    ext = border & ~surface  # seeds: empty border voxels
    count = int(ext.sum())
    while True:
        for dim in (1, 2, 3):
            ext = _sweep(ext, surface, dim)
        new_count = int(ext.sum())
        if new_count == count:
            break
        count = new_count
    return ~ext


def voxelization(
    face_vertices: torch.Tensor,
    size: int = 32,
    normalize: bool = True,
    fill: bool = True,
) -> torch.Tensor:
    """Solid voxelization of a batch of meshes (see the module docstring).

    Args:
        face_vertices: ``[B, F, 3, 3]`` (``[F, 3, 3]`` is taken as a batch of one).
        size: S, the grid resolution.
        normalize: map ``v -> (v * (S - 1) / S + 0.5) * S`` (meshes in ``[-0.5, 0.5]^3``); if
            False the input is in the unit cube already and is only scaled by S.
        fill: fill the interior (False: the surface voxels only).

    Returns:
        ``[B, S, S, S]`` bool, indexed ``[b, x, y, z]`` (``.to(torch.uint8)`` if needed).
    """
    if face_vertices.dim() == 3:
        face_vertices = face_vertices[None]
    S = int(size)
    with torch.no_grad():
        fv = face_vertices.detach().to(torch.float64)
        fv = (fv * (S - 1) / S + 0.5) * S if normalize else fv * S
        vox = surface_voxels(fv, S)
        return fill_interior(vox) if fill else vox


def voxelize_mesh(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    size: int = 32,
    normalize: bool = True,
    fill: bool = True,
) -> torch.Tensor:
    """:func:`voxelization` of mesh(es) given as vertices and faces.

    Args:
        vertices: ``[V, 3]`` or ``[B, V, 3]``.
        faces: ``[F, 3]`` (shared) or ``[B, F, 3]`` integer indices.
        size, normalize, fill: as :func:`voxelization`.

    Returns:
        ``[S, S, S]`` for unbatched vertices, else ``[B, S, S, S]``; bool, ``[.., x, y, z]``.
    """
    batched = vertices.dim() == 3
    if not batched:
        vertices = vertices[None]
    faces = torch.as_tensor(faces, device=vertices.device).long()
    if faces.dim() == 2:
        faces = faces[None].expand(vertices.shape[0], -1, -1)
    B, F = faces.shape[:2]
    idx = faces.reshape(B, F * 3, 1).expand(-1, -1, 3)  # [B, F*3, 3]
    fv = torch.gather(vertices, 1, idx).reshape(B, F, 3, 3)  # [B, F, 3, 3]
    vox = voxelization(fv, size, normalize=normalize, fill=fill)
    return vox if batched else vox[0]


def voxel_iou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """IoU of occupancy grids: ``|P ∩ G| / |P ∪ G|`` per sample.

    Args:
        pred, gt: ``[B, X, Y, Z]`` (bool or numbers; nonzero = occupied), same shape.

    Returns:
        ``[B]`` float32; 1 where both grids are empty.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ")
    p = pred != 0
    g = gt.to(pred.device) != 0
    dims = tuple(range(1, p.dim()))
    inter = (p & g).sum(dims).float()
    union = (p | g).sum(dims).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def to_dataset_axes(voxels: torch.Tensor) -> torch.Tensor:
    """``[b, x, y, z]`` -> ``[b, y, x, S-1-z]``: the layout the original SoftRas evaluation
    compared with the recon dataset's voxel files (``transpose(0, 2, 1, 3)[:, :, :, ::-1]``).
    """
    return voxels.permute(0, 2, 1, 3).flip(-1)
