"""Pictures of results: tensors to uint8 images, image grids with labels, GIF frames."""

from __future__ import annotations

import numpy as np
import torch


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[C, H, W] or [H, W] in [0, 1] -> uint8 [H, W, C] (C = 1, 3 or 4; 1 becomes grey RGB)."""
    img = img.detach().float().cpu().clamp(0, 1)
    if img.dim() == 2:
        img = img[None]
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    return (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _rgb(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().float().cpu()
    t = t[None] if t.dim() == 2 else t
    return t.expand(3, -1, -1) if t.shape[0] == 1 else t[:3]


def image_grid(rows: list[list[torch.Tensor]], pad: int = 2, scale: int = 1) -> torch.Tensor:
    """Tiles images [C, H, W] (RGB or grey, same H and W) into one RGB image [3, H', W'],
    row by row on a white background; ``scale`` enlarges every image by pixel repetition."""
    H, W = rows[0][0].shape[-2:]
    H, W = H * scale, W * scale
    ncol = max(len(r) for r in rows)
    grid = torch.ones(3, len(rows) * (H + pad) + pad, ncol * (W + pad) + pad)
    for i, row in enumerate(rows):
        for j, t in enumerate(row):
            y, x = pad + i * (H + pad), pad + j * (W + pad)
            img = _rgb(t)
            if scale > 1:
                img = img.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
            grid[:, y : y + H, x : x + W] = img
    return grid


def labelled(grid: np.ndarray, labels: list[str], width: int | None = None) -> np.ndarray:
    """A uint8 image [H, W, 3] with a text label at the left of each of ``len(labels)`` equal
    rows (drawn with matplotlib's Agg backend; readable at any size)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    H, W = grid.shape[:2]
    margin = width if width is not None else max(110, W // 8)
    dpi = 100
    fig = plt.figure(figsize=((W + margin) / dpi, H / dpi), dpi=dpi)
    ax = fig.add_axes((margin / (W + margin), 0, W / (W + margin), 1))
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    n = len(labels)
    for i, text in enumerate(labels):
        fig.text(0.01, 1 - (i + 0.5) / n, text, va="center", ha="left", fontsize=11)
    fig.canvas.draw()
    out = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return out
