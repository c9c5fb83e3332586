"""Unsupervised single-view mesh reconstruction: the paper's recipe (docs: softras-math.md, 6).

Each step draws, per sample, a class, an object and two views a, b of it; the network predicts
a mesh from each view, both meshes are rendered at both viewpoints and their alpha compared to
the targets by 1 - IoU (the mean of the four terms), plus 5e-3 Laplacian + 5e-4 flatten (and an
L1 RGB term with the colour model). Adam 1e-4, batch 64, sigma 1e-4; the scheduler's factor
multiplies both the learning rate and sigma (the default drops both x 0.3 at 60% of the run).

Under ``torchrun`` the model is wrapped in DistributedDataParallel: ``batch_size`` is the global
batch, each rank draws ``batch_size / world_size`` samples from its own generator (seeded by
seed + rank), gradients are averaged, and validation is sharded over the ranks without
duplicates and gathered. Every ``val_every`` steps the voxel IoU per class on the val split is
logged and ``best.pt`` (model, config, step, IoU) is written atomically when it improves.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from ..datasets import CLASS_NAMES, ShapeNetRenderings, ensure_procedural_dataset, procedural_dataset_dir, view_eyes
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
)
from ..engine import distributed as dist
from ..functional.losses import iou_loss
from ..losses import FlattenLoss, LaplacianLoss
from ..models import PAPER_ENCODER_CHANNELS, ReconModel
from ..models.evaluation import evaluation_views, lit_colors, reconstruction_iou, render_meshes
from ..vis import image_grid, to_uint8

log = logging.getLogger("softras")


# ---- config -------------------------------------------------------------------------------------


@dataclass
class ModelConfig:
    template: str = "${paths.data_dir}/sphere_642.obj"
    color: bool = False  # the colour branch (the paper's "full" model)
    encoder_channels: list[int] = field(default_factory=lambda: list(PAPER_ENCODER_CHANNELS))  # the three conv widths
    rgb_weight: float = 0.0  # weight of the L1 loss on the rendered colour (colour model)


@dataclass
class DataConfig:
    root: Any = None  # null: the procedural set, generated on first use; else a folder of the public files
    class_ids: Any = None  # null: every class found; else a list of ids or names
    objects_per_class: int = 300  # procedural set only
    seed: int = 0  # procedural set only: the seed of its shapes, colours and splits
    val_views: int = 1  # views per val object in a validation pass (evenly spaced)


@dataclass
class LossConfig:
    laplacian: float = 5e-3
    flatten: float = 5e-4


@dataclass
class TrainReconConfig(BaseConfig):
    steps: int = 250000
    batch_size: int = 64  # the global batch (divided across ranks)
    checkpoint_every: int = 1000
    val_every: int = 1000
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    renderer: RendererConfig = field(default_factory=RendererConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    loss: LossConfig = field(default_factory=LossConfig)


# ---- data ---------------------------------------------------------------------------------------


def data_root(data: Any) -> Path:
    """The data folder; the procedural set is generated first by rank 0 (the others wait).
    Every rank raises the same one-line error when rank 0 could not make it."""
    if data.root is not None:
        return Path(str(data.root)).expanduser()
    if isinstance(data.objects_per_class, bool) or data.objects_per_class < 3:
        raise ValueError(f"data.objects_per_class: expected an integer >= 3, got {data.objects_per_class}")
    result: Any = None
    if not dist.active() or torch.distributed.get_rank() == 0:
        try:
            out = procedural_dataset_dir(int(data.objects_per_class), int(data.seed))
            if not (out / "dataset.json").exists():
                log.info("generating the procedural dataset into %s (once; a few minutes)", out)
            result = str(ensure_procedural_dataset(out, objects_per_class=int(data.objects_per_class), seed=data.seed))
        except (OSError, ValueError) as err:
            result = ValueError(f"data.root: cannot generate the procedural dataset ({first_line(err)})")
    result = dist.broadcast_object(result)
    if isinstance(result, Exception):
        raise result
    return Path(result)


def open_split(data: Any, split: str) -> ShapeNetRenderings:
    """One split of the configured data (errors name ``data.root`` / ``data.class_ids``)."""
    root = data_root(data)
    ids = data.class_ids
    ids = [str(c) for c in ids] if ids is not None and not isinstance(ids, str) else ids
    try:
        return ShapeNetRenderings(root, ids, split=split)
    except FileNotFoundError as err:
        message = first_line(err)
        raise FileNotFoundError(message if message.startswith("class_ids") else f"data.root: {message}") from None
    except ValueError as err:
        raise ValueError(f"data: {first_line(err)}") from None


def check_positive(cfg: Any, keys: tuple[str, ...]) -> None:
    for key in keys:
        node, name = (cfg, key) if "." not in key else (cfg[key.split(".")[0]], key.split(".")[1])
        value = node[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key}: expected an integer >= 1, got {value!r}")


# ---- the experiment -----------------------------------------------------------------------------


class TrainRecon(Experiment):
    def __init__(self, cfg: Any, ctx: RunContext):
        check_positive(cfg, ("batch_size", "val_every", "data.val_views"))
        world = ctx.world_size
        if cfg.batch_size < world or cfg.batch_size % world:
            raise ValueError(
                f"batch_size: the global batch {cfg.batch_size} must be divisible by the number of processes "
                f"(nproc_per_node x nnodes = {world}) and at least as large"
            )
        if cfg.model.color is False and cfg.model.rgb_weight:
            raise ValueError("model.rgb_weight: an RGB loss needs the colour model (model=color or model.color=true)")
        self.settings = raster_settings(cfg.renderer)
        if self.settings.image_size != (64, 64):
            raise ValueError(f"renderer.image_size: the dataset's images are 64 x 64, got {cfg.renderer.image_size}")
        self.viewing_angle, self.backend = float(cfg.renderer.viewing_angle), str(cfg.renderer.backend)
        self.steps, self.checkpoint_every = int(cfg.steps), int(cfg.checkpoint_every)
        self.scalars_every, self.every = int(cfg.logger.scalars_every), dict(cfg.logger)
        self.val_every, self.local_batch = int(cfg.val_every), int(cfg.batch_size) // world
        self.w_lap, self.w_flat, self.w_rgb = (
            float(cfg.loss.laplacian),
            float(cfg.loss.flatten),
            float(cfg.model.rgb_weight),
        )
        self.cfg, self.ctx, self.device = cfg, ctx, ctx.device

        self.train_set = open_split(cfg.data, "train")
        self.val_set = open_split(cfg.data, "val")
        template = Path(str(cfg.model.template)).expanduser()
        if not template.is_file():
            raise FileNotFoundError(f"model.template: no such file {template}")
        self.model = ReconModel(
            template, color=bool(cfg.model.color), encoder_channels=tuple(cfg.model.encoder_channels)
        ).to(self.device)
        self.net = self.model
        if world > 1:
            self.net = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.optimizer = build_optimizer(cfg.optim, self.model.parameters())
        self.schedule = build_schedule(cfg.scheduler)
        self.base_lr = [g["lr"] for g in self.optimizer.param_groups]
        self.base_sigma = float(cfg.renderer.sigma_val)
        faces = self.model.faces
        self.laplacian = LaplacianLoss(self.model.template_vertices, faces).to(self.device)
        self.flatten = FlattenLoss(faces).to(self.device)
        self.generator = torch.Generator().manual_seed(int(cfg.seed) + ctx.rank)  # this rank's data order
        self.val_items = dist.shard(len(self.val_set), ctx.rank, world)
        self.val_views = evaluation_views(int(cfg.data.val_views))
        shown = torch.linspace(0, len(self.val_set) - 1, min(4, len(self.val_set))).long()
        self.shown = self.val_set.items()[shown]  # val objects in the pictures
        self.best_iou, self.val_curve, self.frames = -1.0, [], []
        self._clock = None

    # ---- one step ----
    def step(self, step: int) -> dict[str, float | torch.Tensor]:
        t0 = time.perf_counter()
        factor = self.schedule(step, self.steps)
        settings = dataclasses.replace(self.settings, sigma_val=self.base_sigma * factor)
        for group, lr in zip(self.optimizer.param_groups, self.base_lr):
            group["lr"] = lr * factor
        cls, obj, va, vb = self.train_set.sample_pairs(self.generator, self.local_batch)
        img_a = self.train_set.gather_images(cls, obj, va, as_float=True).to(self.device)
        img_b = self.train_set.gather_images(cls, obj, vb, as_float=True).to(self.device)
        vertices, faces, colors = self.net(torch.cat([img_a, img_b]))  # meshes from a, then from b
        eye_a, eye_b = view_eyes(va).to(self.device), view_eyes(vb).to(self.device)
        # both predictions at view a, then both at view b
        eyes = torch.cat([eye_a, eye_a, eye_b, eye_b])
        targets = torch.cat([img_a, img_a, img_b, img_b])
        if colors is not None:
            colors = lit_colors(vertices, faces, colors).repeat(2, 1, 1)
        rgba = render_meshes(vertices.repeat(2, 1, 1), faces, eyes, settings, self.viewing_angle, colors, self.backend)
        l_iou = iou_loss(rgba[:, 3], targets[:, 3])
        l_lap = self.laplacian(vertices).mean()
        l_flat = self.flatten(vertices).mean()
        loss = l_iou + self.w_lap * l_lap + self.w_flat * l_flat
        terms = {"loss/iou": l_iou, "loss/laplacian": l_lap, "loss/flatten": l_flat}
        if colors is not None:
            l_rgb = (rgba[:, :3] - targets[:, :3]).abs().mean()
            loss = loss + self.w_rgb * l_rgb
            terms["loss/rgb"] = l_rgb
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        values = torch.stack([loss.detach(), *(t.detach() for t in terms.values())]).cpu()
        dist.all_reduce_sum_([values])
        values /= self.ctx.world_size
        seconds = time.perf_counter() - t0
        out = {"loss/total": values[0], **dict(zip(terms, values[1:]))}
        out.update({"lr": self.base_lr[0] * factor, "sigma": settings.sigma_val})
        out.update(
            {
                "speed/steps_per_s": 1.0 / seconds,
                "speed/samples_per_s": self.local_batch * self.ctx.world_size / seconds,
            }
        )
        return out

    # ---- validation and pictures ----
    def validate(self) -> dict[str, float]:
        """Voxel IoU per val class, each rank scoring its shard; gathered on every rank."""
        if dist.active():  # batch-norm statistics: rank 0's on every rank (as DDP's forward uses them)
            for buffer in self.model.buffers():
                torch.distributed.broadcast(buffer, 0)
        items = self.val_set.items()[self.val_items.start : self.val_items.stop]
        iou = reconstruction_iou(self.model, self.val_set, items, self.val_views, device=self.device).mean(1)
        parts = dist.gather_objects((items[:, 0], iou))
        cls, iou = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        per_class = {cid: float(iou[cls == ci].mean()) for ci, cid in enumerate(self.val_set.class_ids)}
        return {"mean": float(np.mean(list(per_class.values()))), **per_class}

    @torch.no_grad()
    def grid(self) -> torch.Tensor:
        """Rows of val objects: input (view 0) | predicted silhouette | target, at views 0 and 12."""
        self.model.eval()
        cls, obj = self.shown[:, 0], self.shown[:, 1]
        rows: list[list[torch.Tensor]] = [[] for _ in range(len(cls))]
        inputs = self.val_set.gather_images(cls, obj, torch.zeros_like(cls), as_float=True)
        vertices, faces, _ = self.model(inputs.to(self.device))
        for k in (0, 12):
            views = torch.full_like(cls, k)
            target = self.val_set.gather_images(cls, obj, views, as_float=True)
            alpha = render_meshes(vertices, faces, view_eyes(views).to(self.device), self.settings, self.viewing_angle)[
                :, 3
            ]
            for i in range(len(cls)):
                rows[i] += ([inputs[i]] if k == 0 else []) + [alpha[i].cpu(), target[i, 3]]
        self.model.train()
        return image_grid(rows)

    def after_step(self, ctx: RunContext, step: int) -> None:
        completed = step + 1
        if completed % self.val_every == 0 and completed < self.steps:
            self.log_validation(ctx, completed)
        if not ctx.is_main:
            return
        e = self.every
        if step % e["images_every"] == 0:
            ctx.image("input_prediction_target", self.grid(), step)
        if step % e["gif_every"] == 0:
            self.frames.append(to_uint8(self.grid()))
        if step % e["mesh_every"] == 0:
            with torch.no_grad():
                self.model.eval()
                v, f, _ = self.model(self.val_set.gather_images(*self.shown[:1].T, [0], as_float=True).to(self.device))
                self.model.train()
            ctx.mesh("prediction", v[0], f, step)

    def log_validation(self, ctx: RunContext, completed: int) -> dict[str, float]:
        val = self.validate()
        self.val_curve.append({"step": completed, **val})
        named = {f"val/iou_{CLASS_NAMES.get(c, c)}": v for c, v in val.items() if c != "mean"}
        ctx.scalars(completed, {"val/mean_iou": val["mean"], **named})
        log.info("train-recon: step %d, val mean voxel IoU %.4f", completed, val["mean"])
        if val["mean"] > self.best_iou:
            self.best_iou = val["mean"]
            if ctx.is_main:
                best = {"task": "train-recon", "kind": "recon-model", "step": completed, "val_iou": val}
                best.update(model=self.model.state_dict(), config=ctx.config)
                tmp = ctx.dir / f".best.pt.{os.getpid()}.tmp"
                torch.save(best, tmp)
                os.replace(tmp, ctx.dir / "best.pt")
        return val

    # ---- checkpoints ----
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generators": dist.gather_objects(self.generator.get_state()),  # one per rank
            "best_iou": self.best_iou,
            "val_curve": self.val_curve,
            "frames": self.frames,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generators"][self.ctx.rank].cpu())
        self.best_iou, self.val_curve, self.frames = (
            float(state["best_iou"]),
            list(state["val_curve"]),
            list(state["frames"]),
        )

    def finish(self, ctx: RunContext, completed: int) -> dict[str, Any]:
        val = self.val_curve[-1] if self.val_curve and self.val_curve[-1]["step"] == completed else None
        if val is None:
            val = {"step": completed, **self.log_validation(ctx, completed)}
        # DDP keeps every rank's parameters equal: checked on a fingerprint, not assumed (batch-norm
        # statistics differ per rank; DDP's forward and the validation use rank 0's)
        fingerprint = torch.stack([t.detach().double().cpu().abs().sum() for t in self.model.parameters()])
        rank_diff = dist.max_difference_between_ranks(fingerprint)
        if ctx.is_main:
            self.frames.append(to_uint8(self.grid()))
            ctx.save_gif("progress.gif", self.frames, fps=4)
            ctx.save_png("final.png", to_uint8(image_grid([[self.grid()]], scale=2)))
        return {
            "val_mean_iou": val["mean"],
            "val_iou": {k: v for k, v in val.items() if k not in ("step", "mean")},
            "best_val_mean_iou": self.best_iou,
            "val_curve": self.val_curve,
            "classes": list(self.train_set.class_ids),
            "batch_size": self.local_batch * ctx.world_size,
            "max_parameter_difference_between_ranks": rank_diff,
            "device": str(ctx.device),
        }


def setup(cfg: Any, ctx: RunContext) -> TrainRecon:
    return TrainRecon(cfg, ctx)


TASK = TaskSpec(
    name="train-recon",
    setup=setup,
    schema=TrainReconConfig,
    primary_metric="val_mean_iou",
    description="train single-view mesh reconstruction from multi-view silhouettes (voxel IoU)",
    resume_safe=("steps", "logger", "checkpoint_every", "device", "renderer.backend", "val_every"),
    distributed=True,
)
