"""Image-based shape deformation: a template mesh fitted to multi-view silhouettes.

The recipe of the paper (docs, section 6): per-vertex displacements and a centre, both
zero-initialized, in a sigmoid/tanh parametrization that keeps the mesh inside the unit
cube; loss = 1 - mean soft IoU of alpha + 0.03 Laplacian + 0.0003 flatten; Adam(0.01,
betas (0.5, 0.99)); all views every step.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ..functional.cameras import face_vertices, get_points_from_angles, look_at, perspective
from ..functional.losses import iou_loss
from ..functional.rasterize import soft_rasterize_packed
from ..functional.settings import BACKENDS, RasterSettings
from ..io import load_obj_geometry, save_obj
from ..losses import FlattenLoss, LaplacianLoss
from ._run import Run, as_float, as_floats, as_int, first_line, image_grid, resolve_device, seed_everything, to_uint8

log = logging.getLogger("softras")
PRIMARY_METRIC = "mean_hard_iou"


class DeformModel(nn.Module):
    """Template vertices v0 (|v0| in (0, 1)) deformed by displacements and a centre:
    ``v = sigmoid(logit(|v0|) + d) sign(v0)``, ``c' = tanh(c)``,
    ``v = relu(v)(1 - c') - relu(-v)(1 + c') + c'`` (the mesh stays in the unit cube)."""

    def __init__(self, vertices: torch.Tensor, faces: torch.Tensor, min_abs: float = 1e-4):
        super().__init__()
        # a coordinate exactly 0 has sign 0 and could never move: push it to +min_abs
        v0 = torch.where(vertices.abs() < min_abs, torch.full_like(vertices, min_abs), vertices)
        if float(v0.abs().max()) >= 1:
            raise ValueError(
                f"template.scale: the scaled template must lie inside (-1, 1), got |v| <= {float(v0.abs().max()):.3f}"
            )
        self.register_buffer("base", torch.logit(v0.abs()))
        self.register_buffer("sign", torch.sign(v0))
        self.register_buffer("faces", faces)
        self.displace = nn.Parameter(torch.zeros_like(vertices))
        self.center = nn.Parameter(torch.zeros(1, 3, dtype=vertices.dtype))

    def forward(self) -> torch.Tensor:  # [V, 3]
        v = torch.sigmoid(self.base + self.displace) * self.sign
        c = torch.tanh(self.center)
        return F.relu(v) * (1 - c) - F.relu(-v) * (1 + c) + c


def _cameras_from_file(path: Path) -> np.ndarray:
    try:
        cams = (
            np.load(path)
            if path.suffix == ".npy"
            else np.loadtxt(path, delimiter=None if path.suffix != ".csv" else ",")
        )
    except Exception as err:  # noqa: BLE001 - numpy's many ways to fail on a bad file
        raise ValueError(f"target.cameras: cannot read {path} ({first_line(err)})") from None
    cams = np.asarray(cams, dtype=np.float64).reshape(-1, 3) if np.asarray(cams).size % 3 == 0 else None
    if cams is None:
        raise ValueError(f"target.cameras: {path} must hold rows of (distance, elevation, azimuth)")
    return cams


def load_targets(cfg, settings: RasterSettings, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Target alpha [N, H, W] and camera eyes [N, 3] for the configured target."""
    t = cfg.target
    H, W = settings.image_size
    if t.mesh:
        v, f = _load_mesh("target.mesh", Path(str(t.mesh)))
        v = v - (v.amax(0) + v.amin(0)) / 2
        v = v / v.abs().max().clamp_min(1e-12) * 0.5  # inside the unit cube, like the template
        elev = torch.tensor(as_floats("target.ring.elevations", t.ring.elevations))
        n_azim = as_int("target.ring.azimuths", t.ring.azimuths, least=1)
        azim = -torch.arange(n_azim, dtype=torch.float32) * (360.0 / n_azim)
        elev, azim = elev.repeat_interleave(len(azim)), azim.repeat(len(elev))
        distance = as_float("target.ring.distance", t.ring.distance, positive=True)
        eyes = get_points_from_angles(distance, elev, azim).to(device)
        with torch.no_grad():
            alpha = render_alpha(
                v.to(device), f.to(device), eyes, settings, float(cfg.renderer.viewing_angle), cfg.renderer.backend
            )
        return alpha, eyes
    cameras = Path(str(t.cameras))
    if not cameras.is_file():
        raise FileNotFoundError(f"target.cameras: no such file {cameras}")
    cams = torch.from_numpy(_cameras_from_file(cameras)).float()
    if t.masks:
        folder = Path(str(t.masks))
        if not folder.is_dir():
            raise FileNotFoundError(f"target.masks: no such folder {folder}")
        import imageio.v2 as imageio

        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if len(files) != len(cams):
            raise ValueError(f"target.masks: {len(files)} images in {folder} but {len(cams)} cameras in {cameras}")
        masks = []
        for p in files:
            try:
                img = np.asarray(imageio.imread(p)).astype(np.float32) / 255.0
            except Exception as err:  # noqa: BLE001 - imageio's many ways to fail on a bad file
                raise ValueError(f"target.masks: cannot read {p} ({first_line(err)})") from None
            m = img[..., 3] if img.ndim == 3 and img.shape[2] == 4 else (img.mean(-1) if img.ndim == 3 else img)
            masks.append(torch.from_numpy(m))
        alpha = torch.stack(masks)
    else:
        images = Path(str(t.images))
        if not images.is_file():
            raise FileNotFoundError(f"target.images: no such file {images}")
        try:
            data = np.load(images)
        except Exception as err:  # noqa: BLE001 - not a .npy file
            raise ValueError(f"target.images: cannot read {images} ({first_line(err)})") from None
        if data.ndim != 4 or data.shape[1] != 4:
            raise ValueError(f"target.images: expected [N, 4, H, W] RGBA, got shape {list(data.shape)}")
        if len(data) != len(cams):
            raise ValueError(f"target.images: {len(data)} images but {len(cams)} cameras in {cameras}")
        alpha = torch.from_numpy(data[:, 3].astype(np.float32) / 255.0)
    if tuple(alpha.shape[1:]) != (H, W):
        alpha = F.interpolate(alpha[:, None], size=(H, W), mode="area")[:, 0]
    eyes = get_points_from_angles(cams[:, 0], cams[:, 1], cams[:, 2])
    if t.get("views") is not None:
        views = as_int("target.views", t.views, least=1)
        keep = torch.linspace(0, len(eyes) - 1, min(views, len(eyes))).round().long()
        alpha, eyes = alpha[keep], eyes[keep]
    return alpha.to(device), eyes.to(device)


def render_alpha(vertices, faces, eyes, settings: RasterSettings, viewing_angle: float, backend: str) -> torch.Tensor:
    """Alpha [N, H, W] of one mesh (vertices [V, 3], faces [F, 3]) seen from N eyes."""
    N = eyes.shape[0]
    v = perspective(look_at(vertices[None].expand(N, -1, -1), eyes), viewing_angle, settings.image_size)
    fv = face_vertices(v, faces[None].expand(N, -1, -1))
    F_ = faces.shape[0]
    tex = torch.ones(1, 1, 3, dtype=fv.dtype, device=fv.device).expand(N * F_, 1, 3)
    first = torch.arange(N, device=fv.device) * F_
    return soft_rasterize_packed(fv.reshape(-1, 3, 3), tex, first, settings, backend=backend)[:, 3]


def lr_factor(step: int, steps: int, decay_start: float, final_factor: float) -> float:
    """Learning-rate multiplier: 1 until ``decay_start * steps``, then a cosine decay that
    reaches ``final_factor`` at the last step (a function of the step, so resuming is exact)."""
    begin = decay_start * steps
    if step < begin or steps - 1 <= begin:
        return 1.0
    progress = min(1.0, (step - begin) / (steps - 1 - begin))
    return final_factor + (1 - final_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def hard_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-view IoU [N] of alpha > 0.5 against target alpha > 0.5."""
    p, t = pred > 0.5, target > 0.5
    inter = (p & t).flatten(1).sum(1).float()
    union = (p | t).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def _load_mesh(key: str, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{key}: no such file {path}")
    v, f = load_obj_geometry(path)
    if f.shape[0] == 0:
        raise ValueError(f"{key}: no faces in {path}")
    return v, f


def _settings(r) -> RasterSettings:
    try:
        return RasterSettings(
            image_size=r.image_size, sigma_val=r.sigma_val, dist_eps=r.dist_eps, aggr_func_rgb=r.aggr_func_rgb
        )
    except ValueError as err:
        raise ValueError(f"renderer.{err}") from None


def run(cfg: Any, out_dir: str | Path) -> dict:
    """Runs the deformation; returns the metrics (also written to metrics.json)."""
    # every input is read and checked before the run folder is filled, so that a bad value or
    # a missing file is one error line (naming the key) and leaves no run folder behind
    seed_everything(as_int("seed", cfg.seed))
    device = resolve_device(str(cfg.device))
    r = cfg.renderer
    settings = _settings(r)
    viewing_angle = as_float("renderer.viewing_angle", r.viewing_angle, positive=True)
    if r.backend not in BACKENDS:
        raise ValueError(f"renderer.backend: expected one of {', '.join(map(repr, BACKENDS))}, got {r.backend!r}")
    template = Path(str(cfg.template.mesh))
    if not template.is_file():
        raise FileNotFoundError(f"template.mesh: no such file {template}")
    steps = as_int("steps", cfg.steps, least=0)
    scale = as_float("template.scale", cfg.template.scale, positive=True)
    min_abs = as_float("template.min_abs", cfg.template.min_abs, positive=True)
    w_lap = as_float("loss.laplacian", cfg.loss.laplacian)
    w_flat = as_float("loss.flatten", cfg.loss.flatten)
    lr = as_float("optim.lr", cfg.optim.lr, positive=True)
    decay_start = as_float("schedule.decay_start", cfg.schedule.decay_start)
    final_factor = as_float("schedule.final_factor", cfg.schedule.final_factor, positive=True)
    if not 0 <= decay_start <= 1:
        raise ValueError(f"schedule.decay_start: expected a fraction of the steps in [0, 1], got {decay_start}")
    betas = as_floats("optim.betas", cfg.optim.betas)
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ValueError(f"optim.betas: expected two numbers in [0, 1), got {list(cfg.optim.betas)!r}")
    kinds = ("scalars_every", "images_every", "mesh_every", "gif_every")
    every = {k: as_int(f"logger.{k}", cfg.logger[k], least=1) for k in kinds}
    checkpoint_every = as_int("checkpoint_every", cfg.checkpoint_every, least=0)

    ckpt = None
    if cfg.resume:
        ckpt_path = Path(str(cfg.resume)) / "checkpoint.pt"
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"resume: no checkpoint.pt in {cfg.resume}")
        try:
            ckpt = torch.load(ckpt_path, map_location=device)
            ckpt_step = int(ckpt["step"])
        except Exception as err:  # noqa: BLE001 - not a checkpoint of this task
            raise ValueError(f"resume: cannot read {ckpt_path} ({first_line(err)})") from None
        if ckpt_step > steps:
            raise ValueError(f"steps: the checkpoint in resume is at step {ckpt_step}, past steps={steps}")

    start = time.time()
    target, eyes = load_targets(cfg, settings, device)
    v0, faces = _load_mesh("template.mesh", template)
    model = DeformModel((v0 * scale).to(device), faces.to(device), min_abs)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=tuple(betas))
    first_step = 0
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
        except Exception as err:  # noqa: BLE001 - a checkpoint of another template
            raise ValueError(f"resume: {ckpt_path} does not fit this template ({first_line(err)})") from None
        first_step = ckpt_step

    with Run(cfg, out_dir, "deform") as run_:
        if ckpt is not None:
            log.info("deform: resumed from %s at step %d", ckpt_path, first_step)
        laplacian = LaplacianLoss(model().detach(), faces).to(device)
        flatten = FlattenLoss(faces).to(device)

        def save_checkpoint(step: int) -> None:
            tmp = run_.dir / "checkpoint.pt.tmp"
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, tmp)
            tmp.replace(run_.dir / "checkpoint.pt")

        show = torch.linspace(0, len(eyes) - 1, min(4, len(eyes))).long()  # views shown in images
        frames: list[np.ndarray] = []
        step = first_step
        run_.metrics.update(steps=steps, views=len(eyes), device=str(device))
        try:
            bar = tqdm(range(first_step, steps), desc="deform", initial=first_step, total=steps, dynamic_ncols=True)
            for step in bar:
                vertices = model()
                alpha = render_alpha(vertices, faces.to(device), eyes, settings, viewing_angle, r.backend)
                l_iou = iou_loss(alpha, target)
                l_lap = laplacian(vertices[None]).mean()
                l_flat = flatten(vertices[None]).mean()
                loss = l_iou + w_lap * l_lap + w_flat * l_flat
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                for group in optimizer.param_groups:
                    group["lr"] = lr * lr_factor(step, steps, decay_start, final_factor)
                optimizer.step()
                if step % every["scalars_every"] == 0 or step == steps - 1:
                    vals = {
                        "loss/total": loss.item(),
                        "loss/iou": l_iou.item(),
                        "loss/laplacian": l_lap.item(),
                        "loss/flatten": l_flat.item(),
                    }
                    run_.scalars(step, vals)
                    bar.set_postfix(loss=f"{vals['loss/total']:.4f}")
                if step % every["gif_every"] == 0:
                    frames.append(to_uint8(image_grid([[alpha[i].detach() for i in show], [target[i] for i in show]])))
                if step % every["images_every"] == 0:
                    grid = image_grid([[alpha[i].detach() for i in show], [target[i] for i in show]])
                    run_.image("prediction_vs_target", grid, step)
                    run_.scalars(step, {"metric/mean_hard_iou": hard_iou(alpha.detach(), target).mean().item()})
                if step % every["mesh_every"] == 0:
                    run_.mesh("mesh", vertices.detach(), faces, step)
                if checkpoint_every > 0 and (step + 1) % checkpoint_every == 0:
                    save_checkpoint(step + 1)
            step = steps
        finally:
            # whatever happened, keep the mesh and the progress made so far
            with torch.no_grad():
                vertices = model()
                alpha = render_alpha(vertices, faces.to(device), eyes, settings, viewing_angle, r.backend)
                ious = hard_iou(alpha, target)
            save_obj(run_.dir / "mesh.obj", vertices.cpu(), faces)
            frames.append(to_uint8(image_grid([[alpha[i] for i in show], [target[i] for i in show]])))
            run_.save_gif("progress.gif", frames)
            run_.save_png("final.png", image_grid([[alpha[i] for i in show], [target[i] for i in show]]))
            run_.mesh("mesh", vertices, faces, step)
            run_.scalars(step, {"metric/mean_hard_iou": ious.mean().item()})
            if step < steps:
                save_checkpoint(step)
            run_.metrics.update(
                mean_hard_iou=ious.mean().item(),
                per_view_hard_iou=ious.tolist(),
                seconds=time.time() - start,
                steps_done=step,
            )
        log.info(
            "deform: mean hard IoU %.4f over %d views in %.1f s",
            ious.mean().item(),
            len(ious),
            time.time() - start,
        )
    return run_.metrics
