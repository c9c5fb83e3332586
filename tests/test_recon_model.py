"""The reconstruction model: layer sizes of the paper, output shapes, the sigmoid/tanh
parametrization (hand values, and inside the cube for any input), and the per-class prior."""

from __future__ import annotations

import math

import pytest
import torch

from softras.models.recon import Decoder, Encoder, ReconModel, class_prior_voxels, deform_template


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ReconModel()


def test_layer_sizes_of_the_paper(model):
    convs = [m for m in model.encoder.conv if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (4, 64, (5, 5), (2, 2)),
        (64, 128, (5, 5), (2, 2)),
        (128, 256, (5, 5), (2, 2)),
    ]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.encoder.conv) == 3
    fc = [(m.in_features, m.out_features) for m in model.encoder.fc if isinstance(m, torch.nn.Linear)]
    assert fc == [(256 * 8 * 8, 1024), (1024, 1024), (1024, 512)]  # 64 -> 32 -> 16 -> 8 pixels
    dec = [(m.in_features, m.out_features) for m in model.decoder.fc if isinstance(m, torch.nn.Linear)]
    assert dec == [(512, 1024), (1024, 2048)]
    assert (model.decoder.fc_centroid.in_features, model.decoder.fc_centroid.out_features) == (2048, 3)
    assert (model.decoder.fc_bias.in_features, model.decoder.fc_bias.out_features) == (2048, 642 * 3)
    assert model.encoder.conv(torch.zeros(2, 4, 64, 64)).shape == (2, 256, 8, 8)


def test_lighter_encoder_widths():
    light = ReconModel(encoder_channels=(32, 64, 128))
    convs = [(m.in_channels, m.out_channels) for m in light.encoder.conv if isinstance(m, torch.nn.Conv2d)]
    assert convs == [(4, 32), (32, 64), (64, 128)]
    assert light.encoder.fc[0].in_features == 128 * 8 * 8
    v, _, _ = light.eval()(torch.rand(2, 4, 64, 64))
    assert v.shape == (2, 642, 3)
    for bad in [(32, 64), (32, 0, 128), (32.0, 64, 128), (True, 64, 128)]:
        with pytest.raises(ValueError, match=r"encoder_channels: expected three integers >= 1, got "):
            ReconModel(encoder_channels=bad)


def test_forward_shapes(model):
    model.eval()
    v, f, c = model(torch.rand(3, 4, 64, 64))
    assert v.shape == (3, 642, 3) and f.shape == (1280, 3) and f.dtype == torch.int64 and c is None
    assert int(f.min()) == 0 and int(f.max()) == 641
    torch.manual_seed(1)
    colour = ReconModel(color=True).eval()
    with torch.no_grad():
        v, f, c = colour(torch.rand(2, 4, 64, 64))
    assert c.shape == (2, 1280, 3) and float(c.min()) > 0 and float(c.max()) < 1


def test_template_is_the_quarter_sphere(model):
    # zero displacement and centre: sigmoid(logit(0.5 |s|)) sign(s) x 0.5 = 0.25 s
    from softras.io import load_obj_geometry
    from softras.paths import data_file

    s, _ = load_obj_geometry(data_file("sphere_642.obj"))
    s = torch.where(s.abs() < 2e-4, torch.full_like(s, 2e-4), s)  # zeros are moved to +1e-4 (x 0.5)
    torch.testing.assert_close(model.template_vertices, 0.25 * s, atol=1e-6, rtol=0)


def test_parametrization_by_hand():
    v0 = torch.tensor([[0.5, -0.5, 0.25]])
    base, sign = torch.logit(v0.abs()), torch.sign(v0)
    d = torch.tensor([[[0.0, math.log(3.0), 0.0]]])  # sigmoid(logit(0.5) + ln 3) = 0.75
    c = torch.tensor([[math.atanh(0.5), 0.0, math.atanh(-0.2)]])
    # x: 0.5 (1 - 0.5) + 0.5 = 0.75; y: -0.75; z: 0.25 (1 + 0.2) - 0.2 = 0.1; then x 0.5
    torch.testing.assert_close(deform_template(base, sign, d, c), torch.tensor([[[0.375, -0.375, 0.05]]]))


def test_vertices_stay_inside_the_cube():
    g = torch.Generator().manual_seed(0)
    v0 = torch.rand(50, 3, generator=g) * 1.8 - 0.9
    base, sign = torch.logit(v0.abs()), torch.sign(v0)
    d = torch.randn(8, 50, 3, generator=g) * 1e4
    c = torch.randn(8, 3, generator=g) * 1e4
    v = deform_template(base, sign, d, c)
    assert torch.isfinite(v).all() and float(v.abs().max()) <= 0.5
    # the extremes are reached: +-0.5 along every axis
    assert float(v.max()) == 0.5 and float(v.min()) == -0.5
    # through the whole model with huge weights
    torch.manual_seed(2)
    model = ReconModel().eval()
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(1e3)
        v, _, _ = model(torch.rand(4, 4, 64, 64) * 10)
    assert torch.isfinite(v).all() and float(v.abs().max()) <= 0.5 and float(v.abs().max()) > 0.45


def test_zero_coordinates_can_move():
    vertices = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    dec = Decoder(vertices, torch.tensor([[0, 1, 2]]))
    bias = torch.zeros(1, 3, 3, requires_grad=True)
    deform_template(dec.base, dec.sign, bias, torch.zeros(1, 3)).sum().backward()
    assert (bias.grad != 0).all()


def test_gradients_reach_every_layer(model):
    model.train()
    v, _, _ = model(torch.rand(2, 4, 64, 64))
    v.square().sum().backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in model.parameters())
    model.zero_grad()


def test_bad_input(model):
    with pytest.raises(ValueError, match=r"images: expected shape \[B, 4, 64, 64\], got \[2, 3, 64, 64\]"):
        model(torch.rand(2, 3, 64, 64))
    with pytest.raises(TypeError, match="images: expected floating point RGBA in \\[0, 1\\], got dtype torch.uint8"):
        model(torch.zeros(1, 4, 64, 64, dtype=torch.uint8))
    with pytest.raises(
        ValueError, match=r"template_scale: expected the scaled template in \(-1, 1\), got \|v\| up to 1.000"
    ):
        Decoder(torch.tensor([[2.0, 0, 0]]), torch.tensor([[0, 0, 0]]))
    with pytest.raises(ValueError, match=r"voxels: expected a non-empty batch \[N, X, Y, Z\], got \[4, 4\]"):
        class_prior_voxels(torch.zeros(4, 4))
    assert Encoder(image_size=32).fc[0].in_features == 256 * 4 * 4


def test_class_prior_by_hand():
    # four samples over four voxels; mean occupancy (1, 0.75, 0.5, 0.25)
    s = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool).view(4, 1, 1, 4)
    # mean IoU with the samples: t <= 0.2 -> 1111: (2/4 + 3/4 + 1/4 + 1) / 4 = 0.625
    # 0.3..0.5 -> 1110: (2/3 + 1 + 1/3 + 3/4) / 4 = 0.6875; 0.6, 0.7 -> 1100: (1 + 2/3 + 1/2 + 1/2) / 4
    # = 0.667; 0.8, 0.9 -> 1000: (1/2 + 1/3 + 1 + 1/4) / 4 = 0.521. Best: 1110.
    prior = class_prior_voxels(s)
    assert prior.dtype == torch.bool and prior.view(-1).tolist() == [True, True, True, False]
    assert class_prior_voxels(s, thresholds=(0.8,)).view(-1).tolist() == [True, False, False, False]
    assert class_prior_voxels(s.to(torch.uint8), thresholds=(0.6, 0.1)).view(-1).tolist() == [True, True, False, False]
