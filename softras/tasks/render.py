"""Rendering: a turntable GIF of a mesh and a strip from blurry to sharp renders."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..functional.settings import BACKENDS
from ..mesh import Mesh
from ..renderer import SoftRenderer
from ._run import Run, as_float, as_floats, as_int, first_line, image_grid, resolve_device, seed_everything, to_uint8

log = logging.getLogger("softras")
PRIMARY_METRIC = None


def _renderer(r, sigma: float, gamma: float) -> SoftRenderer:
    try:
        return SoftRenderer(
            image_size=r.image_size,
            background_color=list(r.background_color),
            anti_aliasing=bool(r.anti_aliasing),
            sigma_val=sigma,
            gamma_val=gamma,
            viewing_angle=as_float("renderer.viewing_angle", r.viewing_angle, positive=True),
            backend=str(r.backend),
        )
    except (TypeError, ValueError) as err:
        message = first_line(err)
        raise ValueError(message if message.startswith("renderer.") else f"renderer.{message}") from None


def run(cfg: Any, out_dir: str | Path) -> dict:
    """Renders the turntable and the strip; returns the metrics (also in metrics.json)."""
    # every input is read and checked before the run folder is filled, so that a bad value or
    # a missing file is one error line (naming the key) and leaves no run folder behind
    seed_everything(as_int("seed", cfg.seed))
    device = resolve_device(str(cfg.device))
    path = Path(str(cfg.mesh))
    if not path.is_file():
        raise FileNotFoundError(f"mesh: no such file {path}")
    frames_n = as_int("turntable.frames", cfg.turntable.frames, least=1)
    tt = cfg.turntable
    tt_distance = as_float("turntable.distance", tt.distance, positive=True)
    tt_elevation = as_float("turntable.elevation", tt.elevation)
    fps = as_float("turntable.fps", tt.fps, positive=True)
    st = cfg.strip
    sigmas = as_floats("strip.sigma_val", st.sigma_val, positive=True)
    gammas = as_floats("strip.gamma_val", st.gamma_val, positive=True)
    if len(sigmas) != len(gammas):
        raise ValueError(
            f"strip.sigma_val, strip.gamma_val: expected lists of equal length, got {len(sigmas)} and {len(gammas)}"
        )
    st_distance = as_float("strip.distance", st.distance, positive=True)
    st_elevation = as_float("strip.elevation", st.elevation)
    st_azimuth = as_float("strip.azimuth", st.azimuth)
    r = cfg.renderer
    if r.backend not in BACKENDS:
        raise ValueError(f"renderer.backend: expected one of {', '.join(map(repr, BACKENDS))}, got {r.backend!r}")
    renderer = _renderer(r, as_float("renderer.sigma_val", r.sigma_val), as_float("renderer.gamma_val", r.gamma_val))
    strip_renderers = [_renderer(r, s, g) for s, g in zip(sigmas, gammas)]
    texture_res = as_int("texture.res", cfg.texture.res, least=1)
    try:
        mesh = Mesh.from_obj(
            path, normalization=bool(cfg.normalize), load_texture=bool(cfg.texture.load), texture_res=texture_res
        )
    except ValueError as err:
        raise ValueError(f"mesh: {first_line(err)}") from None
    if mesh.num_faces == 0:
        raise ValueError(f"mesh: no faces in {path}")
    mesh = mesh.to(device)

    with Run(cfg, out_dir, "render") as run_:
        start = time.time()
        frames, per_frame = [], []
        with torch.no_grad():
            for k in tqdm(range(frames_n), desc="turntable", dynamic_ncols=True):
                renderer.transform.set_eyes_from_angles(tt_distance, tt_elevation, -360.0 * k / frames_n)
                t0 = time.time()
                img = renderer.render_mesh(mesh)[0]
                per_frame.append(time.time() - t0)
                frames.append(to_uint8(img[:3]))
                run_.image("turntable", img[:3], k)
                if k == 0:
                    run_.save_png("view.png", img)
            run_.save_gif("turntable.gif", frames, fps=fps)

            rgb_row, alpha_row = [], []
            for i, (s, g, rend) in enumerate(zip(sigmas, gammas, strip_renderers)):
                rend.transform.set_eyes_from_angles(st_distance, st_elevation, st_azimuth)
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
