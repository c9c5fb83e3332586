"""The texel rule of surface textures (docs, section 2), written once on the Python side.

A surface texture holds R*R colours per face, one per sub-triangle of the face split by an
R x R grid of barycentric cells (the native backends use the same rule, ``texel_index`` in
``csrc/rasterize.h``).
"""

from __future__ import annotations

import torch

__all__ = ["texel_index"]


def texel_index(
    w0: torch.Tensor,  # [...] barycentric of corner 0 (clipped to [0, 1])
    w1: torch.Tensor,  # [...] barycentric of corner 1, broadcastable with w0
    R: int,
) -> torch.Tensor:
    """The texel [...] (int64, in [0, R*R)) whose sub-triangle holds barycentrics (w0, w1).

    With a = floor(w0 R) and b = floor(w1 R), both clamped to [0, R-1] (and b to R-1-a): the
    lower sub-triangle of cell (a, b), where ``(w0 + w1) R - a - b <= 1``, is texel ``b R + a``;
    the upper one is ``(R-1-b) R + (R-1-a)``. Cells on the outer diagonal (a + b = R - 1) only
    have their lower half inside the face, so they always take it.
    """
    a = torch.floor(w0 * R).clamp(0, R - 1)
    b = torch.minimum(torch.floor(w1 * R).clamp(0, R - 1), R - 1 - a)
    lower = (a + b == R - 1) | ((w0 + w1) * R - a - b <= 1)
    return torch.where(lower, b * R + a, (R - 1 - b) * R + (R - 1 - a)).long()
