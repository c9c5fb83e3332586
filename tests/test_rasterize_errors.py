"""Bad inputs raise ValueError (TypeError for non-tensors) naming the argument and saying
what was expected and what was given."""

from __future__ import annotations

import math
import re

import pytest
import torch

from softras.functional import RasterSettings, soft_rasterize, soft_rasterize_packed


def _good(B=2, F=4, R=2, dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    fv = torch.rand(B, F, 3, 3, generator=gen).to(dtype) * 2 - 1
    fv[..., 2] = 3.0
    tex = torch.rand(B, F, R * R, 3, generator=gen).to(dtype)
    return fv, tex


def _raises(exc, *patterns):
    """pytest.raises whose message must contain every pattern (regex), in order."""
    return pytest.raises(exc, match=".*".join(patterns))


def test_good_inputs_work():
    fv, tex = _good()
    for backend in ("cpu", "reference"):
        out = soft_rasterize(fv, tex, image_size=(5, 6), backend=backend)
        assert out.shape == (2, 4, 5, 6)


# ---------------------------------------------------------------------------------------
# tensors


@pytest.mark.parametrize("shape", [(4, 3, 3), (2, 4, 3, 2), (2, 4, 2, 3), (2, 4, 3, 3, 1)])
def test_face_vertices_shape(shape):
    _, tex = _good()
    with _raises(ValueError, "face_vertices", r"\[B, F, 3, 3\]", re.escape(str(list(shape)))):
        soft_rasterize(torch.zeros(shape), tex, image_size=8)


@pytest.mark.parametrize(
    "shape",
    [
        (2, 4, 5, 3),  # 5 texels: not a square number
        (2, 4, 2, 3),  # 2 texels: not a square number
        (2, 4, 4, 4),  # 4 channels
        (2, 3, 4, 3),  # wrong face count
        (1, 4, 4, 3),  # wrong batch
        (2, 4, 12),  # flat
    ],
)
def test_surface_textures_shape(shape):
    fv, _ = _good()
    with _raises(ValueError, "textures", "R\\*R", re.escape(str(list(shape)))):
        soft_rasterize(fv, torch.zeros(shape), image_size=8, texture_type="surface")


@pytest.mark.parametrize("shape", [(2, 4, 4, 3), (2, 4, 3, 4), (2, 4, 1, 3), (2, 4, 9)])
def test_vertex_textures_shape(shape):
    fv, _ = _good()
    with _raises(ValueError, "textures", re.escape("[2, 4, 3, 3]"), re.escape(str(list(shape)))):
        soft_rasterize(fv, torch.zeros(shape), image_size=8, texture_type="vertex")


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.float16, torch.bfloat16, torch.bool])
@pytest.mark.parametrize("which", ["face_vertices", "textures"])
def test_dtype(dtype, which):
    fv, tex = _good()
    if which == "face_vertices":
        fv = fv.to(dtype)
    else:
        tex = tex.to(dtype)
    with _raises(ValueError, which, "float32 or float64", re.escape(str(dtype))):
        soft_rasterize(fv, tex, image_size=8)


def test_mismatched_dtypes():
    fv, tex = _good()
    with _raises(ValueError, "textures", "torch.float32", "torch.float64"):
        soft_rasterize(fv, tex.double(), image_size=8)
    with _raises(ValueError, "textures", "torch.float64", "torch.float32"):
        soft_rasterize(fv.double(), tex, image_size=8)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("backend", ["cpu", "reference", "auto"])
def test_non_finite_face_vertices(value, backend):
    fv, tex = _good()
    fv[1, 2, 0, 1] = value
    with _raises(ValueError, "face_vertices", "finite", "NaN or Inf"):
        soft_rasterize(fv, tex, image_size=8, backend=backend)


@pytest.mark.parametrize("value", [[[1.0, 2.0]], "abc", None, 3.0])
def test_non_tensors(value):
    fv, tex = _good()
    with _raises(TypeError, "face_vertices", "torch.Tensor", type(value).__name__):
        soft_rasterize(value, tex, image_size=8)
    with _raises(TypeError, "textures", "torch.Tensor", type(value).__name__):
        soft_rasterize(fv, value, image_size=8)


# ---------------------------------------------------------------------------------------
# settings


@pytest.mark.parametrize("name", ["sigma_val", "gamma_val"])
@pytest.mark.parametrize("value", [0.0, -1e-5, -1.0])
def test_positive_parameters(name, value):
    fv, tex = _good()
    with _raises(ValueError, name, "> 0", re.escape(repr(value))):
        soft_rasterize(fv, tex, image_size=8, **{name: value})


@pytest.mark.parametrize("name", ["sigma_val", "gamma_val", "near", "far", "eps", "dist_eps"])
def test_non_finite_parameters(name):
    fv, tex = _good()
    with _raises(ValueError, name, "finite", "nan"):
        soft_rasterize(fv, tex, image_size=8, **{name: math.nan})


@pytest.mark.parametrize("near,far", [(5.0, 5.0), (10.0, 1.0), (1.0, -1.0)])
def test_near_not_below_far(near, far):
    fv, tex = _good()
    with _raises(ValueError, "near", "far", "near < far", f"near={near!r}", f"far={far!r}"):
        soft_rasterize(fv, tex, image_size=8, near=near, far=far)


@pytest.mark.parametrize(
    "name,value,options",
    [
        ("dist_func", "manhattan", ["hard", "barycentric", "euclidean"]),
        ("aggr_func_rgb", "mean", ["hard", "softmax"]),
        ("aggr_func_alpha", "max", ["hard", "sum", "prod"]),
        ("texture_type", "uv", ["surface", "vertex"]),
        ("dist_func", "Euclidean", ["euclidean"]),
    ],
)
def test_unknown_mode(name, value, options):
    fv, tex = _good()
    with pytest.raises(ValueError, match=name) as info:
        soft_rasterize(fv, tex, image_size=8, **{name: value})
    msg = str(info.value)
    assert "one of" in msg and repr(value) in msg
    for o in options:
        assert repr(o) in msg


def test_unknown_backend():
    fv, tex = _good()
    with pytest.raises(ValueError, match="backend") as info:
        soft_rasterize(fv, tex, image_size=8, backend="metal")
    msg = str(info.value)
    assert "'metal'" in msg
    for o in ("auto", "reference", "cpu", "cuda"):
        assert repr(o) in msg


def test_cuda_backend_with_cpu_tensors():
    """Even with a GPU present: CPU tensors with backend='cuda' are an error, not a copy."""
    fv, tex = _good()
    with _raises(ValueError, "backend", "needs tensors on cuda", "cpu"):
        soft_rasterize(fv, tex, image_size=8, backend="cuda")


@pytest.mark.parametrize("image_size", [0, -3, (0, 5), (5, 0), (-1, 4), (4, 5, 6), (4,), "abc", True, 2.5])
def test_bad_image_size(image_size):
    fv, tex = _good()
    with _raises(ValueError, "image_size", re.escape(repr(image_size))):
        soft_rasterize(fv, tex, image_size=image_size)


@pytest.mark.parametrize("bg", [(0, 0), (0, 0, 0, 0), ("a", 0, 0), (0, math.nan, 0)])
def test_bad_background_color(bg):
    fv, tex = _good()
    with _raises(ValueError, "background_color"):
        soft_rasterize(fv, tex, image_size=8, background_color=bg)


@pytest.mark.parametrize("dist_eps", [0.0, 0.5, 1.0, -1e-4])
def test_bad_dist_eps(dist_eps):
    fv, tex = _good()
    with _raises(ValueError, "dist_eps", re.escape(repr(dist_eps))):
        soft_rasterize(fv, tex, image_size=8, dist_eps=dist_eps)


def test_settings_validated_on_construction():
    with _raises(ValueError, "sigma_val"):
        RasterSettings(sigma_val=0)
    with _raises(ValueError, "aggr_func_alpha"):
        RasterSettings(aggr_func_alpha="mean")
    assert RasterSettings(image_size=7).image_size == (7, 7)
    assert RasterSettings(image_size=(3, 5)).image_size == (3, 5)


# ---------------------------------------------------------------------------------------
# packed inputs


def _packed(F=6, R=1):
    gen = torch.Generator().manual_seed(1)
    fv = torch.rand(F, 3, 3, generator=gen) * 2 - 1
    fv[..., 2] = 3.0
    return fv, torch.rand(F, R * R, 3, generator=gen)


@pytest.mark.parametrize(
    "first",
    [
        [0, 4, 2],  # decreasing
        [3, 1],  # decreasing
        [0, 7],  # past the end (F = 6)
        [-1, 2],  # negative
        [0, 2, 2, 9],  # past the end
    ],
)
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_bad_mesh_first_face(first, backend):
    fv, tex = _packed()
    with _raises(ValueError, "mesh_first_face", "non-decreasing", re.escape("[0, 6]"), re.escape(str(first))):
        soft_rasterize_packed(fv, tex, torch.tensor(first), RasterSettings(image_size=5), backend=backend)


def test_mesh_first_face_type_and_shape():
    fv, tex = _packed()
    s = RasterSettings(image_size=5)
    with _raises(ValueError, "mesh_first_face", "integer", "float32"):
        soft_rasterize_packed(fv, tex, torch.tensor([0.0, 2.0]), s)
    with _raises(ValueError, "mesh_first_face", "1-D"):
        soft_rasterize_packed(fv, tex, torch.tensor([[0, 2]]), s)
    with _raises(ValueError, "mesh_first_face", "1-D"):
        soft_rasterize_packed(fv, tex, [0, 2], s)
    # good values of either integer dtype work, and equal ones make empty meshes
    for first in (torch.tensor([0, 2, 2], dtype=torch.int32), torch.tensor([0, 6], dtype=torch.int64)):
        out = soft_rasterize_packed(fv, tex, first, s, backend="cpu")
        assert out.shape == (first.numel(), 4, 5, 5)


def test_packed_shapes_and_settings():
    fv, tex = _packed()
    first = torch.tensor([0, 3])
    s = RasterSettings(image_size=5)
    with _raises(ValueError, "face_vertices", r"\[F, 3, 3\]", re.escape("[1, 6, 3, 3]")):
        soft_rasterize_packed(fv[None], tex, first, s)
    with _raises(ValueError, "textures", "R\\*R", re.escape("[5, 1, 3]")):
        soft_rasterize_packed(fv, tex[:5], first, s)
    with _raises(TypeError, "settings", "RasterSettings", "dict"):
        soft_rasterize_packed(fv, tex, first, {"image_size": 5})
    with _raises(ValueError, "face_vertices", "finite"):
        bad = fv.clone()
        bad[0, 0, 0] = math.nan
        soft_rasterize_packed(bad, tex, first, s)
