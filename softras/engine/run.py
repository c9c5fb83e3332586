"""The run context: one run folder, shared by every rank, written by rank 0 alone.

A :class:`RunContext` knows the ranks, the device and the run folder. Until :meth:`begin`
it writes nothing, so a task can read and check its inputs first (a mistake there leaves no
files behind). From :meth:`begin` on, rank 0 keeps the resolved ``config.yaml``, ``run.log``,
TensorBoard events in ``tb/``, images, GIFs and ``metrics.json``; the other ranks' calls to
the same methods do nothing, so task code never asks which rank it is on to log.

SIGINT and SIGTERM are caught on every rank while the context is open: they only raise a
flag, and :meth:`stop_requested` (called by every rank at the same step) tells all ranks to
stop together at a step boundary, so the checkpoint that follows is exact. A second signal
during the clean-up does not cut it short; a third one raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np
import torch
from tqdm import tqdm

from ..vis import to_uint8
from . import distributed
from .distributed import Ranks

log = logging.getLogger("softras")

STATUSES = ("running", "completed", "interrupted", "failed")


class RunContext:
    """Ranks, device and run folder of one run (see the module's docstring)."""

    def __init__(self, task: str, run_dir: str | Path, config: Mapping[str, Any], ranks: Ranks, device: torch.device):
        self.task = task
        self.dir = Path(run_dir)
        self.config = dict(config)
        self.ranks = ranks
        self.device = device
        self.metrics: dict[str, Any] = {}
        self.status = "running"
        self.tb = None
        self.start_step = 0
        self._signals = 0
        self._old_handlers: dict[int, Any] = {}
        self._log_handler: logging.Handler | None = None
        self._started = time.time()

    # ---- ranks ------------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.ranks.is_main

    @property
    def rank(self) -> int:
        return self.ranks.rank

    @property
    def world_size(self) -> int:
        return self.ranks.world_size

    # ---- lifetime ---------------------------------------------------------------------
    def begin(self, start_step: int = 0) -> None:
        """Starts writing: config, log, TensorBoard (from ``start_step`` on, discarding any
        events a previous run of this folder logged at or after it)."""
        self.start_step = int(start_step)
        if not self.is_main:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config.yaml").write_text(_to_yaml(self.config))
        self._log_handler = logging.FileHandler(self.dir / "run.log")
        self._log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(self._log_handler)
        log.setLevel(logging.INFO)
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(self.dir / "tb"), purge_step=self.start_step or None)
        if self.start_step == 0:
            self.tb.add_text("config", "```\n" + _to_yaml(self.config) + "\n```", 0)
        marker = self.dir / "INTERRUPTED"
        if marker.exists():
            marker.unlink()

    def install_signal_handlers(self) -> None:
        """SIGINT and SIGTERM raise the stop flag (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def restore_signal_handlers(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()

    def _on_signal(self, signum, frame) -> None:
        self._signals += 1
        if self._signals == 1:
            log.warning("%s: stopping at the end of this step (signal %d); the run can be resumed", self.task, signum)
        elif self._signals == 2:
            log.warning("%s: finishing the checkpoint and results; a third signal aborts", self.task)
        else:
            raise KeyboardInterrupt

    def stop_requested(self) -> bool:
        """True on every rank once any rank got SIGINT/SIGTERM (all ranks must call it together)."""
        return distributed.any_rank(self._signals > 0, self._collective_device())

    def _collective_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def close(self, status: str) -> None:
        """Writes ``metrics.json`` with ``status`` and closes the log and TensorBoard."""
        if status not in STATUSES:
            raise ValueError(f"status: expected one of {STATUSES}, got {status!r}")
        self.status = status
        if not self.is_main:
            return
        if status == "interrupted":
            (self.dir / "INTERRUPTED").write_text(
                "this run was interrupted; its files are what it had made so far, and\n"
                f"`softras {self.task} resume={self.dir}` continues it from its checkpoint\n"
            )
        try:
            self.save_metrics()
        finally:
            if self.tb is not None:
                self.tb.close()
                self.tb = None
            if self._log_handler is not None:
                log.removeHandler(self._log_handler)
                self._log_handler.close()
                self._log_handler = None

    # ---- progress ---------------------------------------------------------------------
    def progress(self, total: int, initial: int = 0, desc: str | None = None) -> tqdm:
        """A progress bar (shown on rank 0 only)."""
        return tqdm(total=total, initial=initial, desc=desc or self.task, dynamic_ncols=True, disable=not self.is_main)

    def iterate(self, items: Iterable, total: int | None = None, desc: str | None = None) -> Iterable:
        return tqdm(items, total=total, desc=desc or self.task, dynamic_ncols=True, disable=not self.is_main)

    # ---- outputs (rank 0) ---------------------------------------------------------------
    def scalars(self, step: int, values: Mapping[str, float], prefix: str = "") -> None:
        if self.tb is None:
            return
        for k, v in values.items():
            self.tb.add_scalar(prefix + k, float(v), step)

    def image(self, tag: str, img: torch.Tensor | np.ndarray, step: int, save: bool = False) -> None:
        """Logs an image ([C, H, W] tensor in [0, 1] or uint8 [H, W, 3] array); with ``save``
        also writes ``<tag>.png`` in the run folder."""
        if self.tb is None:
            return
        arr = img if isinstance(img, np.ndarray) else to_uint8(img)
        self.tb.add_image(tag, arr, step, dataformats="HWC")
        if save:
            imageio.imwrite(self.dir / (tag.replace("/", "_") + ".png"), arr)

    def mesh(self, tag: str, vertices: torch.Tensor, faces: torch.Tensor, step: int, colors=None) -> None:
        """Logs a mesh (vertices [V, 3], faces [F, 3], optional colours uint8 [V, 3])."""
        if self.tb is None:
            return
        kwargs = {} if colors is None else {"colors": torch.as_tensor(colors)[None]}
        self.tb.add_mesh(
            tag,
            vertices=vertices.detach().float().cpu()[None],
            faces=faces.detach().cpu()[None].int(),
            global_step=step,
            **kwargs,
        )

    def save_png(self, name: str, img: torch.Tensor | np.ndarray) -> Path | None:
        if not self.is_main:
            return None
        path = self.dir / name
        imageio.imwrite(path, img if isinstance(img, np.ndarray) else to_uint8(img))
        return path

    def save_gif(self, name: str, frames: list[np.ndarray], fps: float = 10) -> Path | None:
        if not self.is_main or not frames:
            return None
        path = self.dir / name
        imageio.mimsave(path, frames, duration=1000.0 / fps, loop=0)
        return path

    def save_metrics(self) -> Path | None:
        if not self.is_main:
            return None
        self.metrics["status"] = self.status
        self.metrics["world_size"] = self.world_size
        self.metrics.setdefault("seconds", time.time() - self._started)
        path = self.dir / "metrics.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.metrics, indent=2, default=_json_default))
        tmp.replace(path)
        return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return str(obj)


def _to_yaml(obj: Any) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(obj))


def stderr_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[softras] %(message)s"))
    return handler
