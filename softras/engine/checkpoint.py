"""Checkpoints keyed by completed steps, written atomically, with every rank's RNG states.

A checkpoint holds ``step`` (the number of completed steps: resuming starts at exactly this
step), the task's state (models, optimizers, whatever else its loop needs, e.g. a data
sampler's generator or the frames of a progress GIF) and the RNG states (torch, CUDA, numpy,
python) of every rank, gathered on rank 0, which alone writes the file. The file is written
to a temporary name and renamed, so a crash mid-write never leaves a broken checkpoint.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed

FORMAT = 1


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seeds python, numpy and torch (CPU and CUDA) with ``seed + rank``."""
    s = int(seed) + int(rank)
    random.seed(s)
    np.random.seed(s % (2**32))
    torch.manual_seed(s)


def rng_state() -> dict[str, Any]:
    """This process's RNG states."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, step: int, task: str, state: dict[str, Any], world_size: int = 1) -> None:
    """Writes a checkpoint at ``step`` completed steps. Every rank must call it (the RNG states
    are gathered); rank 0 writes ``path`` atomically."""
    rngs = distributed.gather_objects(rng_state())
    if distributed.active() and torch.distributed.get_rank() != 0:
        return
    payload = {"format": FORMAT, "task": task, "step": int(step), "world_size": world_size, "rng": rngs, **state}
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed here (missing, unreadable, of another task)."""


def load(path: Path, task: str, world_size: int, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Reads a checkpoint of ``task`` written by a run of ``world_size`` ranks."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"resume: no checkpoint {path.name} in {path.parent}")
    try:
        payload = torch.load(path, map_location=device, weights_only=False)
        step, kind = int(payload["step"]), payload["task"]
    except Exception as err:  # noqa: BLE001 - torch.load's many ways to fail on a foreign file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"resume: cannot read {path} ({reason})") from None
    if kind != task:
        raise CheckpointError(f"resume: {path} is a checkpoint of '{kind}', not of '{task}'")
    if int(payload.get("world_size", 1)) != world_size:
        raise CheckpointError(
            f"resume: {path} was written by {payload.get('world_size')} process(es); resume it with as many "
            f"(this launch has {world_size})"
        )
    if step < 0:
        raise CheckpointError(f"resume: {path} holds a negative step {step}")
    return payload


def restore_rng(payload: dict[str, Any], rank: int) -> None:
    """Sets this rank's RNG states from a checkpoint."""
    set_rng_state(payload["rng"][rank])
