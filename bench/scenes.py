"""Procedural meshes for the benchmarks."""

from __future__ import annotations

import math

import torch


def icosahedron() -> tuple[torch.Tensor, torch.Tensor]:
    """The regular icosahedron on the unit sphere: vertices [12, 3] float64, faces [20, 3] int64.

    Faces are counter-clockwise seen from outside (outward normals by the right-hand rule).
    """
    t = (1.0 + math.sqrt(5.0)) / 2.0
    v = torch.tensor(
        [
            [-1, t, 0],
            [1, t, 0],
            [-1, -t, 0],
            [1, -t, 0],
            [0, -1, t],
            [0, 1, t],
            [0, -1, -t],
            [0, 1, -t],
            [t, 0, -1],
            [t, 0, 1],
            [-t, 0, -1],
            [-t, 0, 1],
        ],
        dtype=torch.float64,
    )
    f = torch.tensor(
        [
            [0, 11, 5],
            [0, 5, 1],
            [0, 1, 7],
            [0, 7, 10],
            [0, 10, 11],
            [1, 5, 9],
            [5, 11, 4],
            [11, 10, 2],
            [10, 7, 6],
            [7, 1, 8],
            [3, 9, 4],
            [3, 4, 2],
            [3, 2, 6],
            [3, 6, 8],
            [3, 8, 9],
            [4, 9, 5],
            [2, 4, 11],
            [6, 2, 10],
            [8, 6, 7],
            [9, 8, 1],
        ],
        dtype=torch.int64,
    )
    return v / v.norm(dim=1, keepdim=True), f


def subdivide(vertices: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One loop-free 1-to-4 subdivision: a new vertex at the midpoint of every edge (shared by the
    two faces of the edge), each face (a, b, c) -> (a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca).
    Orientation is kept."""
    V = vertices.shape[0]
    a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
    edges = torch.stack([torch.stack([a, b], 1), torch.stack([b, c], 1), torch.stack([c, a], 1)], 1)  # [F,3,2]
    lo, hi = edges.min(-1).values, edges.max(-1).values
    key = lo * V + hi  # [F, 3]
    uniq, inv = torch.unique(key.reshape(-1), return_inverse=True)
    mid = (vertices[uniq // V] + vertices[uniq % V]) / 2
    new_vertices = torch.cat([vertices, mid])
    m = (inv + V).reshape(-1, 3)  # midpoints of edges ab, bc, ca
    ab, bc, ca = m[:, 0], m[:, 1], m[:, 2]
    new_faces = torch.cat(
        [
            torch.stack([a, ab, ca], 1),
            torch.stack([b, bc, ab], 1),
            torch.stack([c, ca, bc], 1),
            torch.stack([ab, bc, ca], 1),
        ]
    )
    return new_vertices, new_faces


def icosphere(subdivisions: int = 6, radius: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Icosphere: an icosahedron subdivided ``subdivisions`` times, every vertex pushed onto the
    sphere of ``radius``. 20 * 4**n faces and 10 * 4**n + 2 vertices (n = 6: 81,920 / 40,962).

    Returns vertices [V, 3] float32 and faces [F, 3] int64 (counter-clockwise seen from outside).
    """
    if subdivisions < 0:
        raise ValueError(f"subdivisions: expected >= 0, got {subdivisions}")
    v, f = icosahedron()
    for _ in range(subdivisions):
        v, f = subdivide(v, f)
        v = v / v.norm(dim=1, keepdim=True)
    return (v * radius).to(torch.float32), f
