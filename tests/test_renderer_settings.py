"""The renderer modules hold one RasterSettings: SoftRas constructor signatures, attribute
assignment and set_sigma/set_gamma/set_texture_mode all go through it, checked."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch

import softras as sr
from softras.functional import RasterSettings


def test_positional_softras_signature_builds_the_settings():
    # (image_size, background_color, near, far, anti_aliasing, fill_back, eps, sigma_val, dist_func)
    r = sr.SoftRasterizer(32, [1, 0.5, 0], 0.5, 50, True, False, 1e-2, 1e-3, "barycentric")
    s = r.raster_settings
    assert isinstance(s, RasterSettings)
    assert (s.image_size, s.background_color, s.near, s.far) == ((32, 32), (1.0, 0.5, 0.0), 0.5, 50.0)
    assert (s.fill_back, s.eps, s.sigma_val, s.dist_func) == (False, 1e-2, 1e-3, "barycentric")
    assert r.settings().image_size == (64, 64)  # anti-aliased: rendered at twice the size
    for f in fields(RasterSettings):  # every option is readable as a SoftRas attribute
        assert getattr(r, f.name) == getattr(s, f.name)


def test_renderer_passes_every_option_through():
    r = sr.SoftRenderer(image_size=(24, 40), near=0.1, far=9.0, gamma_val=3e-2, aggr_func_alpha="sum", eps=1e-4)
    s = r.rasterizer.raster_settings
    assert (s.image_size, s.near, s.far, s.gamma_val, s.aggr_func_alpha, s.eps) == (
        (24, 40),
        0.1,
        9.0,
        3e-2,
        "sum",
        1e-4,
    )
    hard = sr.Renderer(image_size=16).rasterizer
    assert (hard.dist_func, hard.aggr_func_rgb, hard.aggr_func_alpha, hard.eps) == ("hard", "hard", "hard", 1e-6)
    assert hard.anti_aliasing and hard.settings().image_size == (32, 32)


def test_changes_replace_the_frozen_settings_and_are_checked():
    r = sr.SoftRenderer(image_size=16)
    before = r.rasterizer.raster_settings
    r.set_sigma(2e-3)
    r.set_gamma(5e-2)
    after = r.rasterizer.raster_settings
    assert after is not before and before.sigma_val == 1e-5  # the old settings are untouched
    assert (after.sigma_val, after.gamma_val) == (2e-3, 5e-2)
    r.rasterizer.dist_eps = 1e-3  # SoftRas-style attribute assignment
    assert r.rasterizer.raster_settings.dist_eps == 1e-3
    with pytest.raises(ValueError, match="sigma_val: expected a value > 0, got -1.0"):
        r.set_sigma(-1.0)
    with pytest.raises(ValueError, match="aggr_func_rgb: expected one of 'hard', 'softmax', got 'max'"):
        r.rasterizer.aggr_func_rgb = "max"
    with pytest.raises(ValueError, match="mode: expected 'surface' or 'vertex', got 'uv'"):
        r.set_texture_mode("uv")


def test_from_settings_renders_like_the_keyword_constructor():
    s = RasterSettings(image_size=(12, 16), sigma_val=1e-3, gamma_val=1e-2, background_color=(0.2, 0.2, 0.2))
    a = sr.SoftRasterizer.from_settings(s, backend="reference")
    b = sr.SoftRasterizer(image_size=(12, 16), sigma_val=1e-3, gamma_val=1e-2, background_color=(0.2,) * 3)
    b.backend = "reference"
    v = torch.tensor([[[-0.5, -0.5, 2.0], [0.5, -0.5, 2.0], [0.0, 0.6, 2.0]]])
    mesh = sr.Mesh(v, torch.tensor([[0, 2, 1]]))
    torch.testing.assert_close(a(mesh), b(mesh), rtol=0, atol=0)
    with pytest.raises(TypeError, match="settings: expected RasterSettings, got dict"):
        sr.SoftRasterizer.from_settings({"sigma_val": 1e-3})
