"""Solid voxelization and voxel IoU against counts computed by hand.

Voxel ``(i, j, k)`` spans ``[i, i+1] x [j, j+1] x [k, k+1]`` in voxel units (unit-cube
coordinates times S); the test geometry keeps its faces strictly inside voxels (at half-integer
voxel coordinates) so that every expected count is exact.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from softras.functional.voxelization import (
    fill_interior,
    surface_voxels,
    to_dataset_axes,
    voxel_iou,
    voxelization,
    voxelize_mesh,
)
from softras.io import load_obj_geometry

DATA = Path(__file__).resolve().parents[1] / "data"
S = 32
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def cube(lo, hi) -> tuple[torch.Tensor, torch.Tensor]:
    """An axis-aligned box [lo, hi] (per-axis sequences or scalars): 8 vertices, 12 triangles
    wound counter-clockwise seen from outside. Face order: -x, +x, -y, +y, -z, +z (2 each)."""
    lo = torch.as_tensor(lo, dtype=torch.float64).expand(3)
    hi = torch.as_tensor(hi, dtype=torch.float64).expand(3)
    corners = torch.tensor([[(i >> 0) & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], dtype=torch.float64)
    v = lo + corners * (hi - lo)  # vertex i has x = bit 0, y = bit 1, z = bit 2
    quads = [(0, 4, 6, 2), (1, 3, 7, 5), (0, 1, 5, 4), (2, 6, 7, 3), (0, 2, 3, 1), (4, 5, 7, 6)]
    f = torch.tensor([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    return v, f


def box_mask(lo: int, hi: int, size: int = S) -> torch.Tensor:
    """Voxels lo..hi (inclusive) in every axis: [S, S, S] bool."""
    m = torch.zeros(size, size, size, dtype=torch.bool)
    m[lo : hi + 1, lo : hi + 1, lo : hi + 1] = True
    return m


def test_cube_counts_filled_and_surface():
    # faces at voxel coordinates 8.5 and 23.5 (unit cube 8.5/32 .. 23.5/32): voxels 8..23
    v, f = cube(8.5 / S, 23.5 / S)
    solid = voxelize_mesh(v, f, S, normalize=False)
    assert solid.shape == (S, S, S) and solid.dtype == torch.bool
    assert int(solid.sum()) == 16**3 == 4096
    assert torch.equal(solid, box_mask(8, 23))
    shell = voxelize_mesh(v, f, S, normalize=False, fill=False)
    assert int(shell.sum()) == 16**3 - 14**3  # 1352: the one-voxel shell
    assert torch.equal(shell, box_mask(8, 23) & ~box_mask(9, 22))
    # filling the shell alone gives the solid back
    assert torch.equal(fill_interior(shell[None])[0], solid)


def test_cube_normalized_coordinates():
    # normalize: mesh coordinate v lands at voxel coordinate v (S - 1) + S / 2
    a = 7.5 / (S - 1)  # +-a -> 8.5 .. 23.5
    v, f = cube(-a, a)
    solid = voxelization(v[f][None], S, normalize=True)
    assert solid.shape == (1, S, S, S)
    assert torch.equal(solid[0], box_mask(8, 23))
    # a box with different extents per axis shows the axis order [b, x, y, z]
    v, f = cube([2.5 / S, 10.5 / S, 20.5 / S], [5.5 / S, 12.5 / S, 29.5 / S])
    vox = voxelize_mesh(v, f, S, normalize=False)
    want = torch.zeros(S, S, S, dtype=torch.bool)
    want[2:6, 10:13, 20:30] = True
    assert torch.equal(vox, want)
    # the original evaluation's layout: [b, y, x, S-1-z]
    d = to_dataset_axes(vox[None])[0]
    want_d = torch.zeros(S, S, S, dtype=torch.bool)
    want_d[10:13, 2:6, S - 30 : S - 20] = True
    assert torch.equal(d, want_d)


def test_open_cube_is_not_filled():
    v, f = cube(8.5 / S, 23.5 / S)
    open_f = f[:10]  # drop the +z face (its two triangles)
    vox = voxelize_mesh(v, open_f, S, normalize=False)
    shell = box_mask(8, 23) & ~box_mask(9, 22)
    shell[9:23, 9:23, 23] = False  # the missing lid's voxels (its rim belongs to the walls)
    assert int(vox.sum()) == 1352 - 14 * 14 == 1156
    assert torch.equal(vox, shell)


def test_voxel_iou():
    v, f = cube(8.5 / S, 23.5 / S)
    big = voxelize_mesh(v, f, S, normalize=False)[None]
    assert voxel_iou(big, big).tolist() == [1.0]
    vh, fh = cube(8.5 / S, 15.5 / S)  # voxels 8..15: 512, inside the big one
    half = voxelize_mesh(vh, fh, S, normalize=False)[None]
    assert int(half.sum()) == 512
    torch.testing.assert_close(voxel_iou(half, big), torch.tensor([512 / 4096]))
    # shifted by 4 voxels along x: intersection 4 x 8 x 8, union 2 * 512 - 256
    vs, fs = cube([12.5 / S, 8.5 / S, 8.5 / S], [19.5 / S, 15.5 / S, 15.5 / S])
    shifted = voxelize_mesh(vs, fs, S, normalize=False)[None]
    torch.testing.assert_close(voxel_iou(half, shifted), torch.tensor([256 / 768]))
    # batched, numeric inputs, and two empty grids (defined as 1)
    empty = torch.zeros_like(big)
    got = voxel_iou(torch.cat([big, half, empty]).to(torch.uint8), torch.cat([big, big, empty]).int())
    torch.testing.assert_close(got, torch.tensor([1.0, 0.125, 1.0]))


def test_sphere_volume_and_containment():
    v, f = load_obj_geometry(DATA / "sphere_642.obj")
    v = v.double() * 0.5
    vox = voxelize_mesh(v, f, S)  # normalize: centre 16, radius 0.5 (S - 1) = 15.5 voxels
    R = 0.5 * (S - 1)
    count = int(vox.sum())
    # polyhedron inscribed in the ball of radius R; the inradius of the polyhedron:
    fv = v[f] * (S - 1)
    n = torch.cross(fv[:, 1] - fv[:, 0], fv[:, 2] - fv[:, 0], dim=-1)
    r_in = float(((n * fv[:, 0]).sum(-1).abs() / n.norm(dim=-1)).min())
    assert 0.98 * R < r_in < R
    c = torch.arange(S, dtype=torch.float64) + 0.5 - S / 2
    dist = (c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2).sqrt()
    # every voxel centred inside the solid is set; nothing beyond R + half a voxel diagonal
    assert bool(vox[dist < r_in].all())
    assert not bool(vox[dist > R + math.sqrt(3) / 2].any())
    # volume: the ball (4/3) pi R^3 = 15599 plus the outer half of the surface voxels
    # (conservative surface voxelization, a shell ~1.5 voxels thick): about +15 % at S = 32
    ball = 4 / 3 * math.pi * R**3
    assert ball < count < 1.2 * ball
    assert int(vox[dist < r_in].numel()) < count <= int((dist <= R + math.sqrt(3) / 2).sum())
    # symmetric under the mesh's symmetries (x -> -x maps the grid onto itself)
    assert torch.equal(vox, voxelize_mesh(v * torch.tensor([-1.0, 1, 1], dtype=torch.float64), f, S))
    # batched call agrees with single ones; a scaled-down copy is smaller
    both = voxelize_mesh(torch.stack([v, 0.5 * v]), f, S)
    assert torch.equal(both[0], vox) and 0 < int(both[1].sum()) < count / 5


def test_surface_voxels_cover_sampled_triangle_points():
    # random triangles in voxel units, one per batch entry: every point of a triangle lies in a
    # marked voxel (no holes), and every marked voxel is within half a voxel diagonal (plus
    # the sampling spacing) of the triangle: no voxel is marked that the triangle misses
    g = torch.Generator().manual_seed(0)
    tri = 6 + 20 * torch.rand(24, 1, 3, 3, generator=g, dtype=torch.float64)
    tri[:8] = 10 + 3 * torch.rand(8, 1, 3, 3, generator=g, dtype=torch.float64)  # small ones
    tri[8, 0, 2] = tri[8, 0, 0] + 0.25 * (tri[8, 0, 1] - tri[8, 0, 0])  # degenerate: a segment
    surf = surface_voxels(tri, S)
    n = 48
    i, j = torch.meshgrid(torch.arange(n + 1), torch.arange(n + 1), indexing="ij")
    keep = i + j <= n
    w = torch.stack([i[keep], j[keep], n - i[keep] - j[keep]], dim=1).double() / n  # [K, 3]
    for b in range(tri.shape[0]):
        pts = w @ tri[b, 0]  # [K, 3]
        ijk = pts.floor().long().clamp(0, S - 1)
        assert bool(surf[b][ijk[:, 0], ijk[:, 1], ijk[:, 2]].all()), b
        marked = surf[b].nonzero().double() + 0.5  # voxel centres
        spacing = float((tri[b, 0] - tri[b, 0].roll(1, 0)).norm(dim=1).max()) / n
        d = torch.cdist(marked, pts).amin(1)
        assert float(d.max()) <= math.sqrt(3) / 2 + spacing, b


def test_geometry_outside_and_degenerate():
    # a triangle entirely outside the grid, one crossing its border, a point-like one, NaN
    tri = torch.tensor(
        [
            [[-5.0, -5, -5], [-4, -5, -5], [-5, -4, -5]],
            [[30.5, 30.5, 30.5], [40.5, 30.5, 30.5], [30.5, 40.5, 30.5]],
            [[3.5, 4.5, 5.5], [3.5, 4.5, 5.5], [3.5, 4.5, 5.5]],
            [[float("nan"), 1, 1], [2, 2, 2], [3, 3, 3]],
        ],
        dtype=torch.float64,
    )[None]
    surf = surface_voxels(tri, S)
    want = torch.zeros(S, S, S, dtype=torch.bool)
    want[30:32, 30:32, 30] = True  # (x - 30.5) + (y - 30.5) <= 10 holds on the 2 x 2 corner
    want[3, 4, 5] = True
    assert torch.equal(surf[0], want)
    # a grid of nothing: empty result; filling an empty grid keeps it empty
    assert not bool(voxelization(torch.zeros(2, 0, 3, 3), S).any())


def test_chunking_does_not_change_the_result():
    v, f = load_obj_geometry(DATA / "sphere_642.obj")
    fv = ((v.double() * 0.5)[f] * (S - 1) + S / 2)[None]
    assert torch.equal(surface_voxels(fv, S), surface_voxels(fv, S, max_pairs=1000))
    few = fv[:, :60]
    assert torch.equal(surface_voxels(few, S), surface_voxels(few, S, max_pairs=1))


def test_flat_box_and_concave_flood_fill():
    # a flat closed box, z from 4.5 to 10.5: voxels 4..27 x 4..27 x 4..10
    v, f = cube([4.5 / S, 4.5 / S, 4.5 / S], [27.5 / S, 27.5 / S, 10.5 / S])
    want = torch.zeros(S, S, S, dtype=torch.bool)
    want[4:28, 4:28, 4:11] = True
    assert torch.equal(voxelize_mesh(v, f, S, normalize=False), want)
    # a U-shaped (concave) solid, given by its one-voxel shell: the notch between the two
    # towers is exterior, reachable only from above and from the sides
    solid = torch.zeros(S, S, S, dtype=torch.bool)
    solid[4:28, 4:28, 4:28] = True
    solid[12:20, 4:28, 11:28] = False  # the notch
    inner = torch.zeros_like(solid)
    inner[1:-1, 1:-1, 1:-1] = (
        solid[:-2, 1:-1, 1:-1]
        & solid[2:, 1:-1, 1:-1]
        & solid[1:-1, :-2, 1:-1]
        & solid[1:-1, 2:, 1:-1]
        & solid[1:-1, 1:-1, :-2]
        & solid[1:-1, 1:-1, 2:]
    )
    shell = solid & ~inner
    assert int(shell.sum()) < int(solid.sum())
    assert torch.equal(fill_interior(shell[None])[0], solid)
    # a hollow closed box with an inner wall: filled completely
    box = torch.zeros(1, S, S, S, dtype=torch.bool)
    box[0, 2:30, 2:30, 2:30] = True
    box[0, 3:29, 3:29, 3:29] = False
    box[0, 10, 3:20, 3:29] = True
    assert int(fill_interior(box).sum()) == 28**3
    # a one-voxel hole in its wall (6-connected): the whole inside is exterior
    box[0, 2, 5, 5] = False
    assert torch.equal(fill_interior(box), box)
    # a diagonal (26- but not 6-connected) gap does not leak: still filled
    box[0, 2, 5, 5] = True
    box[0, 2, 5, 6] = False
    box[0, 3, 5, 6] = True  # the hole's inner neighbour is wall, a diagonal neighbour is open
    assert int(fill_interior(box).sum()) == 28**3 - 1
    # a spiral corridor that needs many sweep rounds (layer z = 1 of a 16 x 16 x 3 block whose
    # layers z = 0 and z = 2 are solid walls)
    maze = torch.ones(1, 16, 16, 3, dtype=torch.bool)
    for xs, ys in [
        ((0, 15), (1, 2)),  # the entrance from the border x = 0, then along x
        ((14, 15), (1, 15)),
        ((2, 15), (14, 15)),
        ((2, 3), (3, 15)),
        ((2, 13), (3, 4)),
        ((12, 13), (3, 13)),
        ((4, 13), (12, 13)),
        ((4, 5), (5, 13)),
    ]:
        maze[0, xs[0] : xs[1], ys[0] : ys[1], 1] = False
    sealed = maze.clone()
    sealed[0, 0, 1, 1] = True  # closed at the entrance: the corridor becomes interior
    assert torch.equal(fill_interior(maze), maze)
    assert bool(fill_interior(sealed).all())


@cuda
def test_voxelization_cuda_matches_cpu():
    v, f = load_obj_geometry(DATA / "sphere_642.obj")
    vb = torch.stack([v * 0.5, v * 0.3 + 0.1])
    cpu = voxelize_mesh(vb, f, S)
    gpu = voxelize_mesh(vb.cuda(), f.cuda(), S)
    assert gpu.device.type == "cuda"
    assert torch.equal(gpu.cpu(), cpu)
    vc, fc = cube(8.5 / S, 23.5 / S)
    assert int(voxelize_mesh(vc.cuda(), fc.cuda(), S, normalize=False).sum()) == 4096
    torch.testing.assert_close(voxel_iou(gpu, gpu).cpu(), torch.ones(2))
