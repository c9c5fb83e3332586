"""What every run of a task shares: its folder, config, log, TensorBoard, metrics and
clean interruption."""

from __future__ import annotations

import json
import logging
import math
import random
import signal
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np
import torch

log = logging.getLogger("softras")


def new_run_dir(root: str | Path, prefix: str = "") -> Path:
    """A fresh folder ``root/<prefix><date>_<time>`` (``_1``, ``_2``, ... if taken); never reuses one."""
    root = Path(root)
    stamp = prefix + datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    for k in range(10000):
        path = root / (stamp if k == 0 else f"{stamp}_{k}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run folder under {root}")


def resolve_device(device: str) -> torch.device:
    """'auto' (CUDA when available, else CPU), 'cpu' or 'cuda[:k]'."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for, but torch sees no CUDA device")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda', got {device!r}")
    return dev


def as_int(name: str, value: Any, least: int | None = None) -> int:
    """``value`` as an int (at least ``least``), or a ValueError naming the config key."""
    try:
        if isinstance(value, bool) or float(value) != int(float(value)):
            raise ValueError
        number = int(float(value))
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name}: expected an integer, got {value!r}") from None
    if least is not None and number < least:
        raise ValueError(f"{name}: expected an integer >= {least}, got {number}")
    return number


def as_float(name: str, value: Any, positive: bool = False) -> float:
    """``value`` as a finite float (> 0 with ``positive``), or a ValueError naming the config key."""
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if positive and number <= 0:
        raise ValueError(f"{name}: expected a number > 0, got {number!r}")
    return number


def as_floats(name: str, values: Any, positive: bool = False) -> list[float]:
    """A non-empty list of numbers, or a ValueError naming the config key (and the index)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name}: expected a list of numbers, got {values!r}")
    out = [as_float(f"{name}[{i}]", v, positive) for i, v in enumerate(values)]
    if not out:
        raise ValueError(f"{name}: expected a non-empty list of numbers")
    return out


def first_line(err: BaseException) -> str:
    """The first non-blank line of an exception's message (or its type's name)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[0] if lines else type(err).__name__


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[C, H, W] or [H, W] in [0, 1] -> uint8 [H, W, C] (C = 1, 3 or 4; 1 becomes grey RGB)."""
    img = img.detach().float().cpu().clamp(0, 1)
    if img.dim() == 2:
        img = img[None]
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    return (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def image_grid(rows: list[list[torch.Tensor]], pad: int = 2) -> torch.Tensor:
    """Tiles images [C, H, W] (RGB or grey, same H and W) into one RGB image, row by row."""

    def rgb(t: torch.Tensor) -> torch.Tensor:
        t = t.detach().float().cpu()
        t = t[None] if t.dim() == 2 else t
        return t.expand(3, -1, -1) if t.shape[0] == 1 else t[:3]

    H, W = rows[0][0].shape[-2:]
    ncol = max(len(r) for r in rows)
    grid = torch.ones(3, len(rows) * (H + pad) + pad, ncol * (W + pad) + pad)
    for i, row in enumerate(rows):
        for j, t in enumerate(row):
            y, x = pad + i * (H + pad), pad + j * (W + pad)
            grid[:, y : y + H, x : x + W] = rgb(t)
    return grid


def _plain(cfg: Any) -> Any:
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency of the command
        pass
    return cfg


class Run:
    """A run folder: the resolved config, ``run.log``, TensorBoard events in ``tb/``, images,
    GIFs, meshes and ``metrics.json``. Use as a context manager: Ctrl-C inside ends the
    run cleanly, saving what was made and marking the folder as interrupted."""

    def __init__(self, cfg: Any, out_dir: str | Path, task: str):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.task = task
        self.config = _plain(cfg)
        self.metrics: dict[str, Any] = {}
        self.status = "running"
        self.interrupted = False
        self._start = time.time()
        (self.dir / "config.yaml").write_text(_to_yaml(self.config))
        self._log_handler = logging.FileHandler(self.dir / "run.log")
        self._log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(self._log_handler)
        log.setLevel(logging.INFO)
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(self.dir / "tb"))
        self.tb.add_text("config", "```\n" + _to_yaml(self.config) + "\n```", 0)
        log.info("%s: run folder %s", task, self.dir)

    # ---- logging helpers --------------------------------------------------------------
    def scalars(self, step: int, values: Mapping[str, float], prefix: str = "") -> None:
        for k, v in values.items():
            self.tb.add_scalar(prefix + k, float(v), step)

    def image(self, tag: str, img: torch.Tensor, step: int, save: bool = False) -> None:
        """Logs an image [C, H, W]; with ``save`` also writes ``<tag>.png`` in the folder."""
        self.tb.add_image(tag, to_uint8(img), step, dataformats="HWC")
        if save:
            self.save_png(tag.replace("/", "_") + ".png", img)

    def mesh(self, tag: str, vertices: torch.Tensor, faces: torch.Tensor, step: int) -> None:
        """Logs a mesh (vertices [V, 3], faces [F, 3]) to TensorBoard's mesh plugin."""
        self.tb.add_mesh(
            tag,
            vertices=vertices.detach().float().cpu()[None],
            faces=faces.cpu()[None].int(),
            global_step=step,
        )

    def save_png(self, name: str, img: torch.Tensor) -> Path:
        path = self.dir / name
        imageio.imwrite(path, to_uint8(img))
        return path

    def save_gif(self, name: str, frames: list[np.ndarray], fps: float = 10) -> Path | None:
        if not frames:
            return None
        path = self.dir / name
        imageio.mimsave(path, frames, duration=1000.0 / fps, loop=0)
        return path

    def save_metrics(self) -> Path:
        self.metrics["status"] = self.status
        self.metrics.setdefault("seconds", time.time() - self._start)
        path = self.dir / "metrics.json"
        path.write_text(json.dumps(self.metrics, indent=2, default=float))
        return path

    # ---- lifetime ---------------------------------------------------------------------
    def __enter__(self) -> Run:
        # a polite kill (SIGTERM) ends the run as cleanly as Ctrl-C
        self._old_term = None
        if threading.current_thread() is threading.main_thread():
            self._old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is KeyboardInterrupt:
            self.status = "interrupted"
            self.interrupted = True
            (self.dir / "INTERRUPTED").write_text(
                "this run was interrupted; the files here are what it had made so far\n"
            )
            log.warning("%s: interrupted; partial results kept in %s", self.task, self.dir)
        elif exc_type is not None:
            self.status = "failed"
        elif self.status == "running":
            self.status = "completed"
        if self._old_term is not None:
            signal.signal(signal.SIGTERM, self._old_term)
        try:
            self.save_metrics()
        finally:
            self.tb.close()
            log.removeHandler(self._log_handler)
            self._log_handler.close()
        return exc_type is KeyboardInterrupt  # swallow Ctrl-C: the run ends cleanly


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _to_yaml(obj: Any) -> str:
    try:
        from omegaconf import OmegaConf

        return OmegaConf.to_yaml(OmegaConf.create(obj))
    except Exception:  # noqa: BLE001 - plain objects that OmegaConf cannot hold
        return json.dumps(obj, indent=2, default=str)
