"""The single-view reconstruction model of the Soft Rasterizer paper (docs: softras-math.md, 6),
and the per-class prior baseline.

Encoder: three conv 5x5 stride 2 layers (64, 128, 256 channels, batch norm + ReLU; 64 -> 32 ->
16 -> 8 pixels), then fully connected 256*8*8 = 16384 -> 1024 -> 1024 -> 512, each with ReLU.
Decoder: fully connected 512 -> 1024 -> 2048 (ReLU), then a centroid head (x 0.1) and a
per-vertex displacement head deforming a 642-vertex / 1280-face sphere:
``v0 = 0.5 sphere``, ``v = sigmoid(logit(|v0|) + d) sign(v0)``, ``c' = tanh(c)``,
``v = relu(v)(1 - c') - relu(-v)(1 + c') + c'``, then ``x 0.5``: every vertex lies strictly
inside ``[-0.5, 0.5]^3``, the benchmark's cube. Template coordinates that are exactly 0 (sign 0,
which could never move) are moved to ``+1e-4`` first, as ``softras deform`` does.
Optional colour branch (the paper's "full" model): per-face RGB from the 512 code,
fully connected 512 -> 1024 (ReLU) -> 3F, sigmoid.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["PAPER_ENCODER_CHANNELS", "Decoder", "Encoder", "ReconModel", "class_prior_voxels", "deform_template"]

# the widths of the encoder's three conv layers in the paper
PAPER_ENCODER_CHANNELS = (64, 128, 256)


class Encoder(nn.Module):
    """RGBA image ``[B, C, S, S]`` -> code ``[B, dim_out]`` (non-negative: ReLU at the end)."""

    def __init__(
        self,
        in_channels: int = 4,
        image_size: int = 64,
        channels: tuple[int, int, int] = PAPER_ENCODER_CHANNELS,
        hidden: int = 1024,
        dim_out: int = 512,
    ):
        super().__init__()
        layers, c_in = [], in_channels
        for c in channels:
            layers += [nn.Conv2d(c_in, c, kernel_size=5, stride=2, padding=2), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.conv = nn.Sequential(*layers)
        side = math.ceil(image_size / 8)  # 5x5 stride-2 padding-2: ceil(S / 2) per layer
        self.fc = nn.Sequential(
            nn.Linear(channels[-1] * side * side, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, dim_out),
            nn.ReLU(inplace=True),
        )
        self.in_channels, self.image_size = in_channels, image_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # [B, C, S, S] -> [B, dim_out]
        return self.fc(self.conv(images).flatten(1))


def deform_template(
    base: torch.Tensor,  # [V, 3] logit(|v0|), v0 the scaled template (|v0| < 1)
    sign: torch.Tensor,  # [V, 3] sign(v0)
    displacement: torch.Tensor,  # [B, V, 3]
    centroid: torch.Tensor,  # [B, 3]
    scale: float = 0.5,
) -> torch.Tensor:
    """``v = sigmoid(base + d) sign``, ``c' = tanh(c)``, ``v = relu(v)(1 - c') - relu(-v)(1 + c') + c'``,
    times ``scale`` -> ``[B, V, 3]``, inside ``(-scale, scale)`` for any finite input."""
    v = torch.sigmoid(base + displacement) * sign
    c = torch.tanh(centroid)[:, None, :]  # [B, 1, 3]
    v = F.relu(v) * (1 - c) - F.relu(-v) * (1 + c) + c
    return v * scale


class Decoder(nn.Module):
    """Code ``[B, dim_in]`` -> vertices ``[B, V, 3]`` of the deformed template (and optionally
    per-face colours ``[B, F, 3]``)."""

    def __init__(
        self,
        vertices: torch.Tensor,  # [V, 3] template (the unit sphere)
        faces: torch.Tensor,  # [F, 3]
        dim_in: int = 512,
        hidden: tuple[int, int] = (1024, 2048),
        centroid_scale: float = 0.1,
        bias_scale: float = 1.0,
        template_scale: float = 0.5,
        color: bool = False,
        min_abs: float = 1e-4,
    ):
        super().__init__()
        v0 = vertices.detach().float() * template_scale
        if float(v0.abs().max()) >= 1:
            raise ValueError(
                f"template_scale: expected the scaled template in (-1, 1), got |v| up to {float(v0.abs().max()):.3f}"
            )
        v0 = torch.where(v0.abs() < min_abs, torch.full_like(v0, min_abs), v0)
        self.register_buffer("base", torch.logit(v0.abs()))
        self.register_buffer("sign", torch.sign(v0))
        self.register_buffer("faces", faces.detach().long().clone())
        self.num_vertices, self.num_faces = v0.shape[0], faces.shape[0]
        self.centroid_scale, self.bias_scale = centroid_scale, bias_scale
        self.fc = nn.Sequential(
            nn.Linear(dim_in, hidden[0]), nn.ReLU(inplace=True), nn.Linear(hidden[0], hidden[1]), nn.ReLU(inplace=True)
        )
        self.fc_centroid = nn.Linear(hidden[1], 3)
        self.fc_bias = nn.Linear(hidden[1], self.num_vertices * 3)
        self.color = (
            nn.Sequential(nn.Linear(dim_in, 1024), nn.ReLU(inplace=True), nn.Linear(1024, self.num_faces * 3))
            if color
            else None
        )

    def forward(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """code [B, dim_in] -> (vertices [B, V, 3], face colours [B, F, 3] in (0, 1) or None)."""
        x = self.fc(code)
        centroid = self.fc_centroid(x) * self.centroid_scale  # [B, 3]
        bias = (self.fc_bias(x) * self.bias_scale).view(-1, self.num_vertices, 3)
        vertices = deform_template(self.base, self.sign, bias, centroid)
        colors = None
        if self.color is not None:
            colors = torch.sigmoid(self.color(code)).view(-1, self.num_faces, 3)
        return vertices, colors


class ReconModel(nn.Module):
    """Image ``[B, 4, 64, 64]`` (RGBA in [0, 1]) -> a mesh inside ``[-0.5, 0.5]^3``.

    Args:
        template_path: OBJ of the template sphere (default the bundled ``sphere_642.obj``).
        color: add the colour branch (per-face RGB).
        image_size: input side (64 in the benchmark).
        encoder_channels: the three conv layers' widths (the paper's 64, 128, 256; the convs
            are most of a CPU step, and (32, 64, 128) costs about half as much).
    """

    def __init__(
        self,
        template_path: str | os.PathLike | None = None,
        color: bool = False,
        image_size: int = 64,
        encoder_channels: tuple[int, int, int] = PAPER_ENCODER_CHANNELS,
    ):
        super().__init__()
        from ..io import load_obj_geometry
        from ..paths import data_file

        path = data_file("sphere_642.obj") if template_path is None else template_path
        vertices, faces = load_obj_geometry(path)
        channels = tuple(encoder_channels)
        if len(channels) != 3 or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in channels):
            raise ValueError(f"encoder_channels: expected three integers >= 1, got {list(encoder_channels)!r}")
        self.encoder = Encoder(in_channels=4, image_size=image_size, channels=channels)
        self.decoder = Decoder(vertices, faces, color=color)
        self.image_size = image_size

    @property
    def faces(self) -> torch.Tensor:  # [F, 3]
        return self.decoder.faces

    @property
    def template_vertices(self) -> torch.Tensor:  # [V, 3], the undeformed mesh (x 0.25 sphere)
        return deform_template(
            self.decoder.base,
            self.decoder.sign,
            torch.zeros_like(self.decoder.base)[None],
            self.decoder.base.new_zeros(1, 3),
        )[0]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """images [B, 4, S, S] -> (vertices [B, 642, 3], faces [1280, 3] shared, face colours
        [B, 1280, 3] or None)."""
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images: expected a torch.Tensor [B, 4, S, S], got {type(images).__name__}")
        S = self.image_size
        if images.dim() != 4 or images.shape[1:] != (4, S, S):
            raise ValueError(f"images: expected shape [B, 4, {S}, {S}], got {list(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(f"images: expected floating point RGBA in [0, 1], got dtype {images.dtype}")
        vertices, colors = self.decoder(self.encoder(images))
        return vertices, self.decoder.faces, colors


def class_prior_voxels(
    voxels: torch.Tensor,  # [N, X, Y, Z] training grids of one class
    thresholds: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(1, 10)),
) -> torch.Tensor:
    """The per-class prior baseline: the best single fixed shape of a class.

    The mean training grid ``m = mean_n voxels[n]`` is thresholded, ``m >= t``, at the ``t``
    among ``thresholds`` (0.1, 0.2, ..., 0.9) whose grid has the largest mean voxel IoU with
    the training grids (the first such ``t`` on a tie). Evaluating it on the test grids tells
    how much a prediction gains beyond knowing the class. Returns bool ``[X, Y, Z]``.
    """
    voxels = torch.as_tensor(voxels)
    if voxels.dim() != 4 or voxels.shape[0] == 0:
        raise ValueError(f"voxels: expected a non-empty batch [N, X, Y, Z], got {list(voxels.shape)}")
    if not thresholds:
        raise ValueError("thresholds: expected at least one threshold, got none")
    occ = voxels != 0
    mean = occ.float().mean(0)
    best, best_iou = None, -1.0
    flat = occ.flatten(1)  # [N, XYZ]
    for t in thresholds:
        grid = (mean >= t).flatten()  # [XYZ]
        inter = (flat & grid).sum(1).float()
        union = (flat | grid).sum(1).float()
        iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union)).mean().item()
        if iou > best_iou:
            best, best_iou = grid, iou
    return best.view(mean.shape)
