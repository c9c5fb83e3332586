"""The texel rule against a geometric statement: the texel of a point is the sub-triangle of
the R x R barycentric grid that contains it, found by point-in-triangle tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from softras.functional.texture import texel_index


def _containing_texel(p, R):
    """Brute force: test p (in grid units, p = (w0 R, w1 R)) against every sub-triangle.
    Lower cell (a, b): corners (a, b), (a+1, b), (a, b+1), texel b R + a; upper cell (a, b):
    corners (a+1, b), (a+1, b+1), (a, b+1), texel (R-1-b) R + (R-1-a) (docs, section 2)."""

    def inside(p, t):
        (x0, y0), (x1, y1), (x2, y2) = t
        d = (y1 - y2) * (x0 - x2) + (x2 - x1) * (y0 - y2)
        l0 = ((y1 - y2) * (p[0] - x2) + (x2 - x1) * (p[1] - y2)) / d
        l1 = ((y2 - y0) * (p[0] - x2) + (x0 - x2) * (p[1] - y2)) / d
        return min(l0, l1, 1 - l0 - l1) > 1e-9  # strictly inside: the points avoid the edges

    found = []
    for b in range(R):
        for a in range(R - b):
            if inside(p, ((a, b), (a + 1, b), (a, b + 1))):
                found.append(b * R + a)
            if a + b <= R - 2 and inside(p, ((a + 1, b), (a + 1, b + 1), (a, b + 1))):
                found.append((R - 1 - b) * R + (R - 1 - a))
    assert len(found) == 1, (p, found)
    return found[0]


@pytest.mark.parametrize("R", [1, 2, 3, 5])
def test_texel_index_is_the_containing_sub_triangle(R):
    rng = np.random.default_rng(R)
    w = rng.dirichlet([1.0, 1.0, 1.0], size=400)[:, :2]
    expected = [_containing_texel(tuple(p * R), R) for p in w]
    got = texel_index(torch.from_numpy(w[:, 0]), torch.from_numpy(w[:, 1]), R)
    assert got.dtype == torch.int64
    assert got.tolist() == expected
    # every texel is used once the points are dense enough
    if R <= 3:
        assert sorted(set(expected)) == list(range(R * R))


def test_texel_index_clamps_at_the_corners():
    # w0 = 1 (corner 0) would be cell R without the clamp: it is the lower cell (R-1, 0)
    R = 4
    w0 = torch.tensor([1.0, 0.0, 0.0])
    w1 = torch.tensor([0.0, 1.0, 0.0])
    assert texel_index(w0, w1, R).tolist() == [R - 1, (R - 1) * R, 0]
