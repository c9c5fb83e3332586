"""Image-based shape deformation: a template mesh fitted to multi-view silhouettes.

The recipe of the paper (docs, section 6): per-vertex displacements and a centre, both
zero-initialized, in a sigmoid/tanh parametrization that keeps the mesh inside the unit
cube; loss = 1 - mean soft IoU of alpha + 0.03 Laplacian + 0.0003 flatten; Adam(0.01,
betas (0.5, 0.99)); all views every step; the learning rate decays (cosine, to 5%) over the
second half of the run.

Under ``torchrun`` the views are split across the ranks: each rank renders its share, its
IoU term is weighted by its share of the views, the regularizers by 1 / world size, and the
gradients are summed over the ranks, so every rank takes the single-process step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..engine import (
    BaseConfig,
    Experiment,
    LoggerConfig,
    OptimConfig,
    RendererConfig,
    RunContext,
    SchedulerConfig,
    TaskSpec,
    build_optimizer,
    build_schedule,
    first_line,
    raster_settings,
    shard,
)
from ..engine import distributed as dist
from ..functional.cameras import face_vertices, get_points_from_angles, look_at, perspective
from ..functional.losses import iou_loss
from ..functional.rasterize import soft_rasterize_packed
from ..functional.settings import BACKENDS, RasterSettings
from ..images import read_masks
from ..io import load_obj_geometry, save_obj
from ..losses import FlattenLoss, LaplacianLoss
from ..vis import image_grid, labelled, to_uint8

log = logging.getLogger("softras")


# ---- config -------------------------------------------------------------------------------------


@dataclass
class RingConfig:
    distance: float = 2.732
    elevations: list[float] = field(default_factory=lambda: [-60.0, -30.0, 0.0, 30.0, 60.0])
    azimuths: int = 24


@dataclass
class TargetConfig:
    images: Any = None
    cameras: Any = None
    mesh: Any = None
    ring: RingConfig = field(default_factory=RingConfig)
    masks: Any = None
    views: Any = None


@dataclass
class TemplateConfig:
    mesh: str = "${paths.data_dir}/sphere_1352.obj"
    scale: float = 0.5
    min_abs: float = 1e-4


@dataclass
class LossConfig:
    laplacian: float = 0.03
    flatten: float = 0.0003


@dataclass
class DeformConfig(BaseConfig):
    steps: int = 2000
    checkpoint_every: int = 200
    template: TemplateConfig = field(default_factory=TemplateConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    renderer: RendererConfig = field(default_factory=RendererConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    loss: LossConfig = field(default_factory=LossConfig)


# ---- the model ----------------------------------------------------------------------------------


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


def render_alpha(vertices, faces, eyes, settings: RasterSettings, viewing_angle: float, backend: str) -> torch.Tensor:
    """Alpha [N, H, W] of one mesh (vertices [V, 3], faces [F, 3]) seen from N eyes [N, 3]."""
    N = eyes.shape[0]
    v = perspective(look_at(vertices[None].expand(N, -1, -1), eyes), viewing_angle, settings.image_size)
    fv = face_vertices(v, faces[None].expand(N, -1, -1))
    F_ = faces.shape[0]
    tex = torch.ones(1, 1, 3, dtype=fv.dtype, device=fv.device).expand(N * F_, 1, 3)
    first = torch.arange(N, device=fv.device) * F_
    return soft_rasterize_packed(fv.reshape(-1, 3, 3), tex, first, settings, backend=backend)[:, 3]


def hard_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-view IoU [N] of alpha > 0.5 against target alpha > 0.5 (1 where both are empty)."""
    p, t = pred > 0.5, target > 0.5
    inter = (p & t).flatten(1).sum(1).float()
    union = (p | t).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


# ---- targets ------------------------------------------------------------------------------------


def _file(key: str, value: Any) -> Path:
    path = Path(str(value)).expanduser()
    if path.is_dir():
        raise ValueError(f"{key}: expected a file, got the folder {path}")
    if not path.is_file():
        raise FileNotFoundError(f"{key}: no such file {path}")
    return path


def _load_mesh(key: str, value: Any) -> tuple[torch.Tensor, torch.Tensor]:
    path = _file(key, value)
    try:
        v, f = load_obj_geometry(path)
    except ValueError as err:
        raise ValueError(f"{key}: {first_line(err)}") from None
    if f.shape[0] == 0:
        raise ValueError(f"{key}: no faces in {path}")
    return v, f


def _cameras_from_file(path: Path) -> np.ndarray:
    try:
        cams = (
            np.load(path)
            if path.suffix == ".npy"
            else np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None)
        )
    except Exception as err:  # noqa: BLE001 - numpy's many ways to fail on a bad file
        raise ValueError(f"target.cameras: cannot read {path} ({first_line(err)})") from None
    cams = np.asarray(cams, dtype=np.float64)
    if cams.size == 0 or cams.size % 3:
        raise ValueError(f"target.cameras: {path} must hold rows of (distance, elevation, azimuth), got {cams.shape}")
    return cams.reshape(-1, 3)


def load_targets(cfg: Any, settings: RasterSettings, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Target alpha [N, H, W] and camera eyes [N, 3] for the configured target."""
    t = cfg.target
    H, W = settings.image_size
    if t.mesh is not None and t.masks is not None:
        raise ValueError("target.mesh, target.masks: give one target, not both")
    if t.mesh is not None:
        v, f = _load_mesh("target.mesh", t.mesh)
        v = v - (v.amax(0) + v.amin(0)) / 2
        v = v / v.abs().max().clamp_min(1e-12) * 0.5  # inside the unit cube, like the template
        ring = t.ring
        if ring.azimuths < 1:
            raise ValueError(f"target.ring.azimuths: expected an integer >= 1, got {ring.azimuths}")
        if not ring.elevations:
            raise ValueError("target.ring.elevations: expected a non-empty list of degrees")
        if ring.distance <= 0:
            raise ValueError(f"target.ring.distance: expected a number > 0, got {ring.distance}")
        elev = torch.tensor(list(ring.elevations), dtype=torch.float32)
        azim = -torch.arange(ring.azimuths, dtype=torch.float32) * (360.0 / ring.azimuths)
        elev, azim = elev.repeat_interleave(len(azim)), azim.repeat(len(elev))
        eyes = get_points_from_angles(float(ring.distance), elev, azim)
        with torch.no_grad():
            alpha = render_alpha(
                v.to(device), f.to(device), eyes.to(device), settings, cfg.renderer.viewing_angle, cfg.renderer.backend
            ).cpu()
    else:
        cameras = _file("target.cameras", t.cameras)
        cams = torch.from_numpy(_cameras_from_file(cameras)).float()
        if t.masks is not None:
            folder = Path(str(t.masks)).expanduser()
            if not folder.is_dir():
                raise FileNotFoundError(f"target.masks: no such folder {folder}")
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
            if len(files) != len(cams):
                raise ValueError(f"target.masks: {len(files)} images in {folder} but {len(cams)} cameras in {cameras}")
            alpha = read_masks(files, "target.masks")
        else:
            images = _file("target.images", t.images)
            try:
                data = np.load(images)
            except Exception as err:  # noqa: BLE001 - not a .npy file
                raise ValueError(f"target.images: cannot read {images} ({first_line(err)})") from None
            if data.ndim != 4 or data.shape[1] != 4:
                raise ValueError(f"target.images: expected [N, 4, H, W] RGBA, got shape {list(data.shape)}")
            if len(data) != len(cams):
                raise ValueError(f"target.images: {len(data)} images but {len(cams)} cameras in {cameras}")
            alpha = torch.from_numpy(data[:, 3].astype(np.float32) / 255.0)
        eyes = get_points_from_angles(cams[:, 0], cams[:, 1], cams[:, 2])
    if tuple(alpha.shape[1:]) != (H, W):
        alpha = F.interpolate(alpha[:, None], size=(H, W), mode="area")[:, 0]
    if t.views is not None:
        if isinstance(t.views, bool) or not isinstance(t.views, int) or t.views < 1:
            raise ValueError(f"target.views: expected an integer >= 1 or null, got {t.views!r}")
        keep = torch.linspace(0, len(eyes) - 1, min(t.views, len(eyes))).round().long()
        alpha, eyes = alpha[keep], eyes[keep]
    return alpha.to(device), eyes.to(device)


# ---- the experiment -----------------------------------------------------------------------------


class Deform(Experiment):
    def __init__(self, cfg: Any, ctx: RunContext):
        device = ctx.device
        self.settings = raster_settings(cfg.renderer)
        self.viewing_angle = float(cfg.renderer.viewing_angle)
        if not self.viewing_angle > 0:
            raise ValueError(f"renderer.viewing_angle: expected a number > 0, got {self.viewing_angle}")
        self.backend = str(cfg.renderer.backend)
        if self.backend not in BACKENDS:
            names = ", ".join(map(repr, BACKENDS))
            raise ValueError(f"renderer.backend: expected one of {names}, got {self.backend!r}")
        if cfg.template.scale <= 0 or cfg.template.min_abs <= 0:
            raise ValueError("template.scale, template.min_abs: expected numbers > 0")
        self.steps, self.checkpoint_every = int(cfg.steps), int(cfg.checkpoint_every)
        self.every = dict(cfg.logger)
        self.scalars_every = int(cfg.logger.scalars_every)
        self.w_lap, self.w_flat = float(cfg.loss.laplacian), float(cfg.loss.flatten)

        v0, faces = _load_mesh("template.mesh", cfg.template.mesh)
        target, eyes = load_targets(cfg, self.settings, device)
        self.model = DeformModel((v0 * cfg.template.scale).to(device), faces.to(device), cfg.template.min_abs)
        self.faces = faces.to(device)
        self.optimizer = build_optimizer(cfg.optim, self.model.parameters())
        self.lr_schedule = build_schedule(cfg.scheduler)
        self.base_lr = [g["lr"] for g in self.optimizer.param_groups]
        # this rank's share of the views (all of them in a single process)
        self.all_target, self.all_eyes = target, eyes
        mine = shard(len(eyes), ctx.rank, ctx.world_size)
        self.target, self.eyes = target[mine.start : mine.stop], eyes[mine.start : mine.stop]
        self.view_weight = len(mine) / len(eyes)
        self.reg_weight = 1.0 / ctx.world_size
        self.show = torch.linspace(0, len(eyes) - 1, min(4, len(eyes))).long()  # views in the pictures
        with torch.no_grad():
            self.laplacian = LaplacianLoss(self.model().detach(), faces).to(device)
            self.flatten = FlattenLoss(faces).to(device)
        self.frames: list[np.ndarray] = []
        self.iou_curve: list[tuple[int, float]] = []
        self.initial_iou = float(self.all_ious().mean())

    def render(self, eyes: torch.Tensor) -> torch.Tensor:
        return render_alpha(self.model(), self.faces, eyes, self.settings, self.viewing_angle, self.backend)

    @torch.no_grad()
    def all_ious(self) -> torch.Tensor:
        return hard_iou(self.render(self.all_eyes), self.all_target)

    def step(self, step: int) -> dict[str, torch.Tensor]:
        vertices = self.model()
        alpha = render_alpha(vertices, self.faces, self.eyes, self.settings, self.viewing_angle, self.backend)
        l_iou = iou_loss(alpha, self.target) if len(self.eyes) else vertices.sum() * 0
        l_lap = self.laplacian(vertices[None]).mean()
        l_flat = self.flatten(vertices[None]).mean()
        loss = self.view_weight * l_iou + self.reg_weight * self.w_lap * l_lap + self.reg_weight * self.w_flat * l_flat
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.model.parameters() if p.grad is not None]
        dist.all_reduce_sum_([p.grad for p in params])
        factor = self.lr_schedule(step, self.steps)
        for group, lr in zip(self.optimizer.param_groups, self.base_lr):
            group["lr"] = lr * factor
        self.optimizer.step()
        values = torch.stack([l_iou * self.view_weight, l_lap, l_flat]).detach()
        dist.all_reduce_sum_([values])  # the IoU term over all views, the regularizers x world size
        values[1:] *= self.reg_weight
        l_iou, l_lap, l_flat = values
        return {
            "loss/total": l_iou + self.w_lap * l_lap + self.w_flat * l_flat,
            "loss/iou": l_iou,
            "loss/laplacian": l_lap,
            "loss/flatten": l_flat,
            "lr": self.base_lr[0] * factor,
        }

    def _grid(self) -> torch.Tensor:
        with torch.no_grad():
            alpha = self.render(self.all_eyes[self.show])
        return image_grid([list(alpha), list(self.all_target[self.show])])

    def after_step(self, ctx: RunContext, step: int) -> None:
        e = self.every
        if not ctx.is_main:
            return
        if step % e["gif_every"] == 0:
            self.frames.append(to_uint8(self._grid()))
        if step % e["images_every"] == 0:
            ctx.image("prediction_vs_target", self._grid(), step)
            iou = float(self.all_ious().mean())
            self.iou_curve.append((step, iou))
            ctx.scalars(step, {"metric/mean_hard_iou": iou})
        if step % e["mesh_every"] == 0:
            with torch.no_grad():
                ctx.mesh("mesh", self.model(), self.faces, step)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "frames": self.frames,
            "iou_curve": self.iou_curve,
            "initial_iou": self.initial_iou,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.frames = list(state["frames"])
        self.iou_curve = [tuple(x) for x in state["iou_curve"]]
        self.initial_iou = float(state["initial_iou"])

    def finish(self, ctx: RunContext, completed: int) -> dict[str, Any]:
        with torch.no_grad():
            vertices = self.model()
            ious = self.all_ious()
        # every rank took the same steps: their meshes must agree (checked, not assumed)
        rank_diff = dist.max_difference_between_ranks(vertices)
        if ctx.is_main:
            save_obj(ctx.dir / "mesh.obj", vertices.cpu(), self.faces.cpu())
            grid = self._grid()
            self.frames.append(to_uint8(grid))
            ctx.save_gif("progress.gif", self.frames)
            big = to_uint8(grid.repeat_interleave(3, 1).repeat_interleave(3, 2))
            ctx.save_png("final.png", labelled(big, ["prediction", "target"]))
            ctx.mesh("mesh", vertices, self.faces, completed)
            ctx.scalars(completed, {"metric/mean_hard_iou": float(ious.mean())})
        curve = [*self.iou_curve]
        if not curve or curve[-1][0] != completed:
            curve.append((completed, float(ious.mean())))
        log.info("deform: mean hard IoU %.4f over %d views after %d steps", float(ious.mean()), len(ious), completed)
        return {
            "mean_hard_iou": float(ious.mean()),
            "initial_mean_hard_iou": self.initial_iou,
            "per_view_hard_iou": ious.tolist(),
            "iou_curve": [{"step": s, "mean_hard_iou": v} for s, v in curve],
            "views": len(ious),
            "max_vertex_difference_between_ranks": rank_diff,
            "steps": self.steps,
            "device": str(ctx.device),
        }


def setup(cfg: Any, ctx: RunContext) -> Deform:
    return Deform(cfg, ctx)


TASK = TaskSpec(
    name="deform",
    setup=setup,
    schema=DeformConfig,
    primary_metric="mean_hard_iou",
    description="deform a template mesh to match multi-view silhouettes",
    resume_safe=("steps", "logger", "checkpoint_every", "device", "renderer.backend"),
    distributed=True,
)
