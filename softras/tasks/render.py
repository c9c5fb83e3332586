"""Rendering: a turntable GIF of a mesh and a strip from blurry to sharp renders."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..mesh import Mesh
from ..renderer import SoftRenderer
from ._run import Run, image_grid, resolve_device, seed_everything, to_uint8

log = logging.getLogger("softras")
PRIMARY_METRIC = None


def _renderer(r, sigma: float, gamma: float) -> SoftRenderer:
    return SoftRenderer(
        image_size=r.image_size,
        background_color=list(r.background_color),
        anti_aliasing=bool(r.anti_aliasing),
        sigma_val=sigma,
        gamma_val=gamma,
        viewing_angle=float(r.viewing_angle),
        backend=str(r.backend),
    )


def run(cfg: Any, out_dir: str | Path) -> dict:
    """Renders the turntable and the strip; returns the metrics (also in metrics.json)."""
    seed_everything(int(cfg.seed))
    device = resolve_device(str(cfg.device))
    path = Path(str(cfg.mesh))
    if not path.is_file():
        raise FileNotFoundError(f"mesh: no such file {path}")
    frames_n = int(cfg.turntable.frames)
    if frames_n < 1:
        raise ValueError(f"turntable.frames: expected at least 1, got {frames_n}")
    sigmas, gammas = list(cfg.strip.sigma_val), list(cfg.strip.gamma_val)
    if len(sigmas) != len(gammas):
        raise ValueError(
            f"strip.sigma_val, strip.gamma_val: expected lists of equal length, got {len(sigmas)} and {len(gammas)}"
        )

    with Run(cfg, out_dir, "render") as run_:
        start = time.time()
        mesh = Mesh.from_obj(
            path,
            normalization=bool(cfg.normalize),
            load_texture=bool(cfg.texture.load),
            texture_res=int(cfg.texture.res),
        )
        mesh = mesh.to(device)
        r = cfg.renderer
        renderer = _renderer(r, float(r.sigma_val), float(r.gamma_val))
        frames, per_frame = [], []
        tt = cfg.turntable
        with torch.no_grad():
            for k in tqdm(range(frames_n), desc="turntable", dynamic_ncols=True):
                renderer.transform.set_eyes_from_angles(float(tt.distance), float(tt.elevation), -360.0 * k / frames_n)
                t0 = time.time()
                img = renderer.render_mesh(mesh)[0]
                per_frame.append(time.time() - t0)
                frames.append(to_uint8(img[:3]))
                run_.image("turntable", img[:3], k)
                if k == 0:
                    run_.save_png("view.png", img)
            run_.save_gif("turntable.gif", frames, fps=float(tt.fps))

            st = cfg.strip
            rgb_row, alpha_row = [], []
            for i, (s, g) in enumerate(zip(sigmas, gammas)):
                rend = _renderer(r, float(s), float(g))
                rend.transform.set_eyes_from_angles(float(st.distance), float(st.elevation), float(st.azimuth))
                img = rend.render_mesh(mesh)[0]
                rgb_row.append(img[:3])
                alpha_row.append(img[3:4])
                run_.image("strip/each", img[:3], i)
                run_.scalars(
                    i,
                    {
                        "strip/sigma_val": float(s),
                        "strip/gamma_val": float(g),
                        "strip/alpha_mean": img[3].mean().item(),
                    },
                )
            strip = image_grid([rgb_row, alpha_row])
            run_.image("strip", strip, 0, save=True)
        run_.mesh("mesh", mesh.vertices[0], mesh.faces[0], 0)
        run_.metrics.update(
            faces=mesh.num_faces,
            frames=frames_n,
            seconds_per_frame=float(np.median(per_frame)),
            strip=[{"sigma_val": float(s), "gamma_val": float(g)} for s, g in zip(sigmas, gammas)],
            seconds=time.time() - start,
        )
        log.info("render: %d frames and a %d-step strip in %s", frames_n, len(sigmas), run_.dir)
    return run_.metrics
