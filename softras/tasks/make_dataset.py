"""Writing a reconstruction dataset in the public ShapeNet rendering format.

From the built-in procedural families (``source=procedural``, the default: table, chair,
lamp, airplane, cabinet) or from a folder of OBJ files with one subfolder per class
(``source=<folder>``), each object is rendered at the 24 benchmark views and voxelized at 32^3
(``softras.datasets.write_dataset``), split train/val/test by a fixed seed, into ``out``.

It is an experiment whose steps are classes: step k writes every split of class k. It is not
resumable (a class is rewritten from scratch in seconds to minutes, and the writer already
renames each file into place atomically); ``dataset.json``, which marks a complete dataset,
is written by the last step only, so an interrupted folder is never taken for a finished one.
An existing non-empty ``out`` is refused: delete it or choose another folder.
"""

from __future__ import annotations

import json
import os
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..datasets import (
    PROCEDURAL_CLASSES,
    class_id_of,
    default_dataset_dir,
    load_obj_folder,
    make_shape,
    procedural_dataset_dir,
    write_dataset,
)
from ..datasets.shapenet import CLASS_NAMES, SPLITS
from ..datasets.writer import FORMAT_VERSION, MANIFEST, split_objects
from ..engine import BaseConfig, Experiment, RunContext, TaskSpec, first_line


@dataclass
class MakeDatasetConfig(BaseConfig):
    source: str = "procedural"  # procedural | a folder of OBJ files, one subfolder per class
    out: Any = None  # null: $SOFTRAS_DATA/<name> or ~/.cache/softras/datasets/<name>
    class_ids: Any = None  # procedural: a subset of the five families (ids or names)
    objects_per_class: int = 300  # procedural only
    fractions: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])  # train, val, test
    batch_size: int = 16  # objects rendered and voxelized per call
    backend: str = "auto"  # rasterizer backend: auto | reference | cpu | cuda


def _rng(seed: int, *keys: str) -> np.random.Generator:
    """The writer's generator for (seed, keys...): the same shapes and splits as
    ``softras.datasets.make_procedural_dataset`` with the same seed."""
    return np.random.default_rng([int(seed), *(zlib.crc32(k.encode()) for k in keys)])


class MakeDataset(Experiment):
    resumable = False
    scalars_every = 1

    def __init__(self, cfg: Any, ctx: RunContext):
        self.seed, self.ctx = int(cfg.seed), ctx
        n = cfg.objects_per_class
        if isinstance(n, bool) or not isinstance(n, int) or n < 3:
            raise ValueError(f"objects_per_class: expected an integer >= 3 (one object per split at least), got {n!r}")
        fr = [float(x) for x in cfg.fractions]
        if len(fr) != 3 or min(fr) < 0 or sum(fr) <= 0:
            raise ValueError(f"fractions: expected 3 non-negative numbers (train, val, test), got {fr}")
        if isinstance(cfg.batch_size, bool) or cfg.batch_size < 1:
            raise ValueError(f"batch_size: expected an integer >= 1, got {cfg.batch_size!r}")
        self.fractions, self.batch_size, self.backend = fr, int(cfg.batch_size), str(cfg.backend)
        if str(cfg.source) == "procedural":
            ids = cfg.class_ids if cfg.class_ids is not None else list(PROCEDURAL_CLASSES)
            ids = [class_id_of(str(c)) for c in ([ids] if isinstance(ids, str) else ids)]
            unknown = [c for c in ids if c not in PROCEDURAL_CLASSES]
            if unknown or not ids:
                names = ", ".join(f"{c} ({CLASS_NAMES[c]})" for c in PROCEDURAL_CLASSES)
                raise ValueError(f"class_ids: expected procedural classes among {names}, got {list(cfg.class_ids)}")
            self.class_ids, self.meshes = ids, None
            self.info = {"source": "procedural", "objects_per_class": n, "fractions": fr}
            out = procedural_dataset_dir(n, self.seed) if cfg.out is None else cfg.out
        else:
            folder = Path(str(cfg.source)).expanduser()
            if not folder.is_dir():
                raise FileNotFoundError(f"source: expected 'procedural' or a folder of OBJ files, got {cfg.source!r}")
            if cfg.class_ids is not None:
                raise ValueError("class_ids: only for source=procedural (an OBJ folder's classes are its subfolders)")
            try:
                self.meshes = load_obj_folder(folder)
            except ValueError as err:
                raise ValueError(f"source: {first_line(err)}") from None
            self.class_ids = list(self.meshes)
            self.info = {"source": str(folder.resolve()), "fractions": fr}
            out = default_dataset_dir(folder.resolve().name) if cfg.out is None else cfg.out
        self.out = Path(str(out)).expanduser()
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise ValueError(f"out: {self.out} exists and is not empty; delete it or give another out=<folder>")
        self.n, self.steps, self.counts = n, len(self.class_ids), {}

    def shapes(self, cid: str) -> dict[str, list]:
        if self.meshes is None:
            rng = _rng(self.seed, "shape", cid)
            meshes = [make_shape(cid, rng) for _ in range(self.n)]
        else:
            meshes = self.meshes[cid]
        idx = split_objects(len(meshes), self.fractions, _rng(self.seed, "split", cid))
        return {s: [meshes[i] for i in idx[s]] for s in SPLITS}

    def step(self, step: int) -> dict[str, float]:
        cid = self.class_ids[step]
        if self.ctx.is_main:
            shapes = {cid: self.shapes(cid)}
            write_dataset(
                self.out, shapes, self.seed, batch_size=self.batch_size, backend=self.backend, device=self.ctx.device
            )
            (self.out / MANIFEST).unlink()  # only the complete dataset gets one (finish)
            self.counts[cid] = {s: len(m) for s, m in shapes[cid].items()}
        return {"objects": float(sum(self.counts.get(cid, {}).values()))}

    def finish(self, ctx: RunContext, completed: int) -> dict[str, Any]:
        complete = completed == self.steps
        if ctx.is_main and complete:
            manifest = {"format": "shapenet-renderings", "version": FORMAT_VERSION, "seed": self.seed}
            manifest.update(objects=self.counts, **self.info)
            fd, tmp = tempfile.mkstemp(dir=self.out, prefix=f".{MANIFEST}.", suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                json.dump(manifest, fh, indent=2)
            os.replace(tmp, self.out / MANIFEST)
        return {"out": str(self.out), "complete": complete, "objects": self.counts, "classes": self.class_ids}


def setup(cfg: Any, ctx: RunContext) -> MakeDataset:
    return MakeDataset(cfg, ctx)


TASK = TaskSpec(
    name="make-dataset",
    setup=setup,
    schema=MakeDatasetConfig,
    primary_metric=None,
    description="write a reconstruction dataset (procedural or OBJ files) in the ShapeNet format",
)
