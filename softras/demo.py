"""A short demo: render the bundled Spot cow from a ring of views and backpropagate.

    python -m softras.demo [--out outputs/demo] [--size 256] [--views 8] [--steps 30]

It renders Spot (vertex colours from its normals) soft and sharp, then fits a rigid
offset of the mesh to a target rendered from a shifted copy for a few steps, writing the
renders, the fitting progress as a GIF and the final gradient magnitude per pixel as PNGs
into a fresh run folder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from tqdm import tqdm

from .functional import soft_rasterize
from .functional.cameras import face_vertices, get_points_from_angles, look_at, perspective
from .io import load_obj_geometry
from .tasks._run import new_run_dir

DATA = Path(__file__).resolve().parent.parent / "data"


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    """[B, C, H, W] in [0, 1] -> one row of images, uint8 [H, B*W, C]."""
    img = img.detach().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    return (np.concatenate(list(img), axis=1) * 255).round().astype(np.uint8)


def render(vertices, faces, colours, eye, size, sigma, gamma):
    """RGBA [B, 4, H, W] of one mesh seen from each eye, with per-vertex colours."""
    B = eye.shape[0]
    v = perspective(look_at(vertices.expand(B, -1, -1), eye), 30.0)
    fv = face_vertices(v, faces.expand(B, -1, -1))
    tex = face_vertices(colours.expand(B, -1, -1), faces.expand(B, -1, -1))
    return soft_rasterize(
        fv,
        tex,
        image_size=size,
        sigma_val=sigma,
        gamma_val=gamma,
        texture_type="vertex",
        background_color=(1, 1, 1),
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m softras.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--mesh", default=str(DATA / "spot_triangulated.obj"))
    parser.add_argument("--out", default="outputs/demo")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args(argv)

    run = new_run_dir(Path(args.out))
    vertices, faces = load_obj_geometry(args.mesh)
    vertices = vertices - (vertices.amax(0) + vertices.amin(0)) / 2  # centre the mesh
    normals = torch.zeros_like(vertices)
    n = torch.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]], vertices[faces[:, 2]] - vertices[faces[:, 0]], dim=1)
    normals.index_add_(0, faces.reshape(-1), n.repeat_interleave(3, 0))
    colours = (0.5 + 0.5 * torch.nn.functional.normalize(normals, dim=1))[None]
    eye = get_points_from_angles(2.732, 20.0, torch.arange(args.views) * (360.0 / args.views))

    t0 = time.time()
    sharp = render(vertices[None], faces[None], colours, eye, args.size, 1e-5, 1e-4)
    blurry = render(vertices[None], faces[None], colours, eye, args.size, 3e-3, 3e-2)
    imageio.imwrite(run / "spot_sharp.png", _to_uint8(sharp[:, :3]))
    imageio.imwrite(run / "spot_blurry.png", _to_uint8(blurry[:, :3]))
    render_seconds = time.time() - t0

    # fit a translation of the mesh to a target rendered from a shifted copy
    target = render(vertices[None] + torch.tensor([0.15, -0.1, 0.1]), faces[None], colours, eye[:2], 128, 1e-4, 1e-3)
    offset = torch.zeros(3, requires_grad=True)
    optim = torch.optim.Adam([offset], lr=0.02)
    frames, losses = [], []
    for _ in (bar := tqdm(range(args.steps), desc="fit offset")):
        pred = render(vertices[None] + offset, faces[None], colours, eye[:2], 128, 1e-3, 1e-2)
        loss = ((pred - target) ** 2).mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        frames.append(np.concatenate([_to_uint8(pred[:, :3]), _to_uint8(target[:, :3])], axis=0))
    imageio.mimsave(run / "fit.gif", frames, duration=0.1)

    # per-pixel gradient magnitude of the loss with respect to the image
    img = render(vertices[None] + offset.detach(), faces[None], colours, eye[:2], 128, 1e-3, 1e-2)
    img.requires_grad_(True)
    ((img - target) ** 2).mean().backward()
    g = img.grad.abs().sum(1, keepdim=True)
    imageio.imwrite(run / "image_gradient.png", _to_uint8((g / g.max().clamp_min(1e-12)).expand(-1, 3, -1, -1)))

    metrics = {
        "faces": int(faces.shape[0]),
        "views": int(args.views),
        "render_seconds": render_seconds,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "offset": offset.detach().tolist(),
        "offset_true": [0.15, -0.1, 0.1],
    }
    (run / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics, indent=2))
    print(f"wrote {run}")
    return metrics


if __name__ == "__main__":
    main()
