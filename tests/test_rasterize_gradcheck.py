"""``torch.autograd.gradcheck`` (float64, finite differences) of the soft rasterizer.

The backward pass is the exact derivative of the forward wherever the forward is smooth.
Scenes are small, random, fixed-seed, and kept away from the measure-zero kinks (region
changes, clipping of the barycentrics, the culling cut at D = dist_eps): no degenerate
face, nothing behind or across the camera plane, and every seed used here was checked to
be away from them. Tolerances are never loosened to hide a mismatch.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import random_scene

from softras.functional import soft_rasterize

H, W = 6, 7

# (dist_func, aggr_func_rgb, texture_type, R)
COLOUR_MODES = [
    ("euclidean", "softmax", "surface", 2),
    ("euclidean", "softmax", "vertex", 1),
    ("euclidean", "hard", "vertex", 1),
    ("barycentric", "softmax", "surface", 2),
    ("barycentric", "softmax", "vertex", 1),
    ("barycentric", "hard", "vertex", 1),
]
CASES = list(itertools.product(COLOUR_MODES, ["prod", "sum"], [True, False]))


def _case_id(case) -> str:
    (dist, rgb, tex, R), alpha, fill = case
    return f"{dist}-{rgb}-{tex}{R if tex == 'surface' else ''}-{alpha}-{'double' if fill else 'single'}"


def _gradcheck(backend, fv, tex, **kw):
    """Full Jacobians for the native backend; the (slow) reference, whose backward is
    autograd's, is checked in gradcheck's fast mode (random projections of the Jacobian)."""

    def fn(f, t):
        return soft_rasterize(f, t, backend=backend, **kw)

    inputs = (fv.clone().requires_grad_(True), tex.clone().requires_grad_(True))
    fast = backend == "reference"
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=fast)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_gradcheck(backend, case):
    (dist, rgb, tex_kind, R), alpha, fill = case
    seed = 11 + CASES.index(case) % 4
    fv, tex = random_scene(1, 3, tex_kind, R, torch.float64, seed=seed, special=False, xy=1.0)
    kw = dict(
        image_size=(H, W),
        near=1.0,
        far=8.0,
        sigma_val=2e-2,
        gamma_val=1e-1,
        dist_func=dist,
        aggr_func_rgb=rgb,
        aggr_func_alpha=alpha,
        texture_type=tex_kind,
        fill_back=fill,
        background_color=(0.3, 0.6, 0.1),
    )
    out = soft_rasterize(fv, tex, backend="reference", **kw)
    # not vacuous: soft alpha and some colour on the screen
    assert bool(((out[:, 3] > 0.05) & (out[:, 3] < 0.95)).any())
    _gradcheck(backend, fv, tex, **kw)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_gradcheck_two_meshes_four_faces(backend):
    """B = 2 meshes of 4 faces, softmax colour with vertex colours, product alpha."""
    fv, tex = random_scene(2, 4, "vertex", 1, torch.float64, seed=3, special=False, xy=1.0)
    kw = dict(image_size=(H, W), near=1.0, far=8.0, sigma_val=3e-2, gamma_val=1e-1, texture_type="vertex")
    _gradcheck(backend, fv, tex, **kw)
