"""Evaluation of a reconstruction model: voxel IoU per class beside two baselines.

``checkpoint`` is a train-recon run folder (its ``best.pt`` if there is one, else its
``checkpoint.pt``) or one of those files. Every object of the split (test by default) is
reconstructed from each of ``views`` of its 24 views, the predicted mesh is voxelized by the
benchmark's convention (``softras.datasets.mesh_to_dataset_voxels``) and compared with the
stored grid; a class's IoU is the mean over its objects and views, and the mean over classes
is the headline number. Two baselines are always reported beside it: the per-class prior
(``softras.models.class_prior_voxels`` of the training split: the best single fixed shape of
the class) and the undeformed template sphere.

Outputs: the table is printed and written as ``eval.md`` / ``eval.json`` into the run folder
and beside the checkpoint; files already there are never overwritten (the next free name
``eval_1.md``, ``eval_2.md``, ... is used). The run folder also gets OBJ files and turntable
GIFs of the first ``examples`` objects per class and input | reconstruction grids in
TensorBoard. One step per class; an interrupted evaluation resumes at the next class.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..datasets import (
    CLASS_NAMES,
    ShapeNetRenderings,
    mesh_to_dataset_voxels,
    procedural_dataset_dir,
    view_eyes,
    voxel_iou,
)
from ..engine import BaseConfig, Experiment, RunContext, TaskSpec, first_line
from ..functional.settings import RasterSettings
from ..io import save_obj
from ..models import PAPER_ENCODER_CHANNELS, ReconModel, class_prior_voxels
from ..models.evaluation import evaluation_views, lit_colors, reconstruction_iou, render_meshes
from ..vis import image_grid, to_uint8

log = logging.getLogger("softras")


@dataclass
class EvalReconConfig(BaseConfig):
    checkpoint: Any = None  # a train-recon run folder, or its best.pt / checkpoint.pt
    data_root: Any = None  # null: the data the model was trained on
    split: str = "test"
    views: int = 24  # views per object, evenly spaced (24: all, as the original evaluation)
    batch_size: int = 64
    examples: int = 2  # objects per class saved as OBJ + turntable GIF


def load_recon_checkpoint(value: Any) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """(model state, train config, file) of a train-recon run folder or checkpoint file."""
    if value is None:
        raise ValueError("checkpoint: expected a train-recon run folder or a .pt file, got nothing (checkpoint=<path>)")
    path = Path(str(value)).expanduser()
    if path.is_dir():
        files = [path / "best.pt", path / "checkpoint.pt"]
        found = [f for f in files if f.is_file()]
        if not found:
            raise FileNotFoundError(f"checkpoint: no best.pt or checkpoint.pt in {path}")
        path = found[0]
    elif not path.is_file():
        raise FileNotFoundError(f"checkpoint: no such file or folder {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - torch.load's many ways to fail on a foreign file
        raise ValueError(f"checkpoint: cannot read {path} ({first_line(err)})") from None
    task = payload.get("task") if isinstance(payload, dict) else None
    if task != "train-recon":
        what = f"a checkpoint of '{task}'" if task else "not a softras checkpoint"
        raise ValueError(f"checkpoint: {path} is {what}, expected one of train-recon")
    if "config" in payload:  # best.pt
        return payload["model"], payload["config"], path
    config_file = path.parent / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(f"checkpoint: no config.yaml beside {path} (the run folder's config)")
    from omegaconf import OmegaConf

    return payload["state"]["model"], OmegaConf.to_container(OmegaConf.load(config_file), resolve=True), path


def free_name(folder: Path, stem: str, suffixes: tuple[str, ...]) -> str:
    """``stem``, or ``stem_1``, ``stem_2``, ... : the first for which no ``stem<suffix>`` exists."""
    k, name = 0, stem
    while any((folder / f"{name}{s}").exists() for s in suffixes):
        k, name = k + 1, f"{stem}_{k + 1}"
    return name


class EvalRecon(Experiment):
    scalars_every = 1

    def __init__(self, cfg: Any, ctx: RunContext):
        for key in ("views", "batch_size"):
            if isinstance(cfg[key], bool) or cfg[key] < 1:
                raise ValueError(f"{key}: expected an integer >= 1, got {cfg[key]!r}")
        if cfg.examples < 0:
            raise ValueError(f"examples: expected an integer >= 0, got {cfg.examples}")
        state, train_cfg, self.checkpoint = load_recon_checkpoint(cfg.checkpoint)
        m, d = train_cfg["model"], train_cfg["data"]
        # runs written before encoder_channels existed used the paper's widths
        channels = tuple(m.get("encoder_channels", PAPER_ENCODER_CHANNELS))
        self.model = ReconModel(m["template"], color=bool(m["color"]), encoder_channels=channels)
        try:
            self.model.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"checkpoint: {self.checkpoint} does not hold this model ({first_line(err)})") from None
        self.model.to(ctx.device).eval()
        if cfg.data_root is not None:
            root = Path(str(cfg.data_root)).expanduser()
        elif d.get("root") is not None:
            root = Path(str(d["root"])).expanduser()
        else:
            root = procedural_dataset_dir(int(d["objects_per_class"]), int(d["seed"]))
        ids = d.get("class_ids")
        try:
            self.data = ShapeNetRenderings(root, ids, split=str(cfg.split))
            self.train = ShapeNetRenderings(root, self.data.class_ids, split="train")
        except FileNotFoundError as err:
            raise FileNotFoundError(f"data_root: {first_line(err)}") from None
        except ValueError as err:
            raise ValueError(f"data_root: {first_line(err)}") from None
        self.views, self.batch_size, self.examples = (
            evaluation_views(int(cfg.views)),
            int(cfg.batch_size),
            int(cfg.examples),
        )
        self.steps, self.ctx, self.train_cfg = len(self.data.class_ids), ctx, train_cfg
        with torch.no_grad():
            sphere = self.model.template_vertices.cpu()
            self.sphere = mesh_to_dataset_voxels(sphere[None], self.model.faces.cpu())  # [1, 32, 32, 32]
        self.results: dict[str, dict[str, float]] = {}

    def step(self, step: int) -> dict[str, float]:
        cid = self.data.class_ids[step]
        n = self.data.num_objects(cid)
        items = torch.stack([torch.full((n,), step), torch.arange(n)], 1)
        iou = reconstruction_iou(self.model, self.data, items, self.views, self.batch_size, self.ctx.device)
        gt = self.data.voxels(cid, torch.arange(n))
        prior = class_prior_voxels(self.train.voxels(cid, torch.arange(self.train.num_objects(cid))))
        row = {
            "model": float(iou.mean()),
            "prior": float(voxel_iou(prior[None].expand(n, -1, -1, -1), gt).mean()),
            "sphere": float(voxel_iou(self.sphere.expand(n, -1, -1, -1), gt).mean()),
            "objects": n,
        }
        self.results[cid] = row
        name = CLASS_NAMES.get(cid, cid)
        return {f"iou/{name}": row["model"], f"prior/{name}": row["prior"], f"sphere/{name}": row["sphere"]}

    @torch.no_grad()
    def after_step(self, ctx: RunContext, step: int) -> None:
        cid = self.data.class_ids[step]
        k = min(self.examples, self.data.num_objects(cid))
        if not ctx.is_main or k == 0:
            return
        obj, name = torch.arange(k), CLASS_NAMES.get(cid, cid)
        inputs = self.data.images(cid, obj, torch.zeros(k, dtype=torch.long), as_float=True)
        vertices, faces, colors = self.model(inputs.to(ctx.device))
        albedo = colors if colors is not None else torch.full((k, len(faces), 3), 0.8, device=vertices.device)
        settings = RasterSettings(image_size=(64, 64), sigma_val=1e-5, aggr_func_rgb="hard", dist_eps=1e-4)
        eyes = view_eyes(torch.arange(24)).to(vertices.device)
        rows = []
        for i in range(k):
            save_obj(ctx.dir / f"{name}_{i}.obj", vertices[i].cpu(), faces.cpu())
            v = vertices[i : i + 1].expand(24, -1, -1)
            rgba = render_meshes(
                v, faces, eyes, settings, colors=lit_colors(v, faces, albedo[i : i + 1].expand(24, -1, -1))
            )
            ctx.save_gif(f"{name}_{i}.gif", [to_uint8(img) for img in rgba], fps=8)
            rows.append([inputs[i], *(rgba[j] for j in (0, 6, 12, 18))])
        ctx.image(f"input_reconstruction/{name}", image_grid(rows, scale=2), 0)

    def state_dict(self) -> dict[str, Any]:
        return {"results": self.results}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.results = dict(state["results"])

    def table(self) -> str:
        lines = [
            "| class | objects | model IoU | per-class prior IoU | template sphere IoU |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for cid, r in self.results.items():
            label = f"{cid} {CLASS_NAMES[cid]}" if cid in CLASS_NAMES else cid
            lines.append(f"| {label} | {r['objects']} | {r['model']:.4f} | {r['prior']:.4f} | {r['sphere']:.4f} |")
        mean = {k: float(np.mean([r[k] for r in self.results.values()])) for k in ("model", "prior", "sphere")}
        lines.append(
            f"| **mean** | {sum(r['objects'] for r in self.results.values())} | "
            f"{mean['model']:.4f} | {mean['prior']:.4f} | {mean['sphere']:.4f} |"
        )
        return "\n".join(lines)

    def finish(self, ctx: RunContext, completed: int) -> dict[str, Any]:
        if not self.results:
            return {}
        mean = {k: float(np.mean([r[k] for r in self.results.values()])) for k in ("model", "prior", "sphere")}
        report = {
            "checkpoint": str(self.checkpoint),
            "data": str(self.data.root),
            "split": self.data.split,
            "views": self.views,
            "complete": completed == self.steps,
            "mean_iou": mean["model"],
            "prior_mean_iou": mean["prior"],
            "sphere_mean_iou": mean["sphere"],
            "per_class": self.results,
        }
        if ctx.is_main:
            text = (
                f"# Voxel IoU ({self.data.split} split, {len(self.views)} views per object)\n\n" + self.table() + "\n"
            )
            text += f"\ncheckpoint: `{self.checkpoint}`  \ndata: `{self.data.root}`\n"
            print(self.table())
            for folder in (ctx.dir, self.checkpoint.parent):
                name = free_name(folder, "eval", (".md", ".json"))
                (folder / f"{name}.md").write_text(text)
                (folder / f"{name}.json").write_text(json.dumps(report, indent=2))
            log.info(
                "eval-recon: mean voxel IoU %.4f (prior %.4f, sphere %.4f)",
                mean["model"],
                mean["prior"],
                mean["sphere"],
            )
        return report


def setup(cfg: Any, ctx: RunContext) -> EvalRecon:
    return EvalRecon(cfg, ctx)


TASK = TaskSpec(
    name="eval-recon",
    setup=setup,
    schema=EvalReconConfig,
    primary_metric="mean_iou",
    description="voxel IoU per class of a train-recon checkpoint, beside the class prior and the sphere",
    resume_safe=("steps", "device", "examples", "batch_size"),
)
