"""The one training loop under every subcommand, and the contract a task fulfils.

A task module declares ``TASK = TaskSpec(name, setup, primary_metric, ...)``. ``setup(cfg,
ctx)`` reads and checks every input and returns an :class:`Experiment`; a mistake found
there (``ValueError``, ``FileNotFoundError``) is the user's and is reported in one line,
before any file is written. From then on :func:`launch` owns the run: it resumes from a
checkpoint when asked, runs the steps with a progress bar, logs the scalars each step
returns, checkpoints every ``checkpoint_every`` completed steps and at the end, stops all
ranks together on SIGINT/SIGTERM, and lets the experiment write its results. An exception
raised after the run started is a bug, not a config error: its traceback goes to
``run.log`` and stderr, ``metrics.json`` says ``failed``, and it propagates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from . import checkpoint as ckpt
from .run import RunContext

log = logging.getLogger("softras")

CHECKPOINT = "checkpoint.pt"


class Experiment:
    """One task's objects and its step. Subclasses set ``steps`` and override ``step``; the
    rest has defaults that do nothing."""

    steps: int = 0
    checkpoint_every: int = 0  # completed steps between checkpoints (0: only at the end)
    scalars_every: int = 10  # steps between scalar logs (the last step is always logged)
    resumable: bool = True  # False: no checkpoints (a short task that is simply run again)

    def step(self, step: int) -> Mapping[str, float | torch.Tensor]:
        """Runs step ``step`` (0-based); returns the scalars to log (tag -> value)."""
        raise NotImplementedError

    def after_step(self, ctx: RunContext, step: int) -> None:
        """Logging after step ``step`` completed (images, meshes, GIF frames at intervals)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly after the last completed step."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict` (the config is the checkpointed run's)."""

    def finish(self, ctx: RunContext, completed: int) -> dict[str, Any]:
        """Writes the results after ``completed`` steps (also after an interruption);
        returns the metrics to put in ``metrics.json``."""
        return {}


@dataclass(frozen=True)
class TaskSpec:
    """What the engine needs to know of a task."""

    name: str  # the subcommand, e.g. 'deform'
    setup: Callable[[Any, RunContext], Experiment]  # reads the config and inputs; builds the experiment
    primary_metric: str | None = None  # returned to Hydra's sweepers (metrics[primary_metric])
    schema: type | None = None  # the dataclass of its config (registered as '<name>_schema')
    description: str = ""
    # top-level config keys (or key prefixes) that resume=<run> may change; anything else
    # changes the problem and is refused
    resume_safe: tuple[str, ...] = ("steps", "logger", "checkpoint_every", "device")
    # whether the task runs under torchrun (several ranks)
    distributed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class UserError(Exception):
    """A mistake in the command line or its inputs: one line, no traceback, exit 2."""


def run_experiment(spec: TaskSpec, exp: Experiment, ctx: RunContext, resume: bool = False) -> dict[str, Any]:
    """Runs ``exp`` in ``ctx`` (resuming from the folder's checkpoint when ``resume``);
    returns the metrics. ``ctx`` must not have begun."""
    start = 0
    path = ctx.dir / CHECKPOINT
    if resume:
        payload = ckpt.load(path, spec.name, ctx.world_size, ctx.device)
        start = int(payload["step"])
        if start > exp.steps:
            raise ckpt.CheckpointError(
                f"steps: the checkpoint in {ctx.dir} is at step {start}, past steps={exp.steps}; ask for more steps"
            )
        try:
            exp.load_state_dict(payload["state"])
        except (KeyError, RuntimeError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ckpt.CheckpointError(f"resume: {path} does not fit this run ({first})") from None
        ckpt.restore_rng(payload, ctx.rank)
    ctx.begin(start)
    if resume:
        log.info("%s: resumed from %s at step %d of %d", spec.name, path, start, exp.steps)
    else:
        log.info("%s: run folder %s", spec.name, ctx.dir)

    def save(completed: int) -> None:
        if not exp.resumable:
            return
        ckpt.save(path, completed, spec.name, {"state": exp.state_dict()}, ctx.world_size)

    ctx.install_signal_handlers()
    completed, status = start, "running"
    t0 = time.time()
    try:
        bar = ctx.progress(total=exp.steps, initial=start, desc=spec.name)
        try:
            for step in range(start, exp.steps):
                if ctx.stop_requested():
                    break
                scalars = exp.step(step)
                completed = step + 1
                if step % max(exp.scalars_every, 1) == 0 or completed == exp.steps:
                    values = {k: float(v) for k, v in scalars.items()}
                    ctx.scalars(step, values)
                    shown = {k.split("/")[-1]: f"{v:.4g}" for k, v in list(values.items())[:2]}
                    bar.set_postfix(shown, refresh=False)
                exp.after_step(ctx, step)
                bar.update(1)
                if exp.checkpoint_every and completed % exp.checkpoint_every == 0 and completed < exp.steps:
                    save(completed)
        finally:
            bar.close()
        status = "completed" if completed >= exp.steps else "interrupted"
        # the checkpoint first, then the results: a second Ctrl-C only sets the flag again
        save(completed)
        metrics = exp.finish(ctx, completed)
        ctx.metrics.update(metrics)
        ctx.metrics.update(steps_done=completed, seconds=time.time() - t0)
    except BaseException as err:
        status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
        if status == "failed":
            log.exception("%s: failed at step %d", spec.name, completed)
            try:
                err.softras_logged = True  # the command does not print it twice
            except AttributeError:
                pass
        ctx.close(status)
        raise
    finally:
        ctx.restore_signal_handlers()
    if status == "interrupted":
        log.warning(
            "%s: interrupted after %d of %d steps; resume with resume=%s", spec.name, completed, exp.steps, ctx.dir
        )
    ctx.close(status)
    return ctx.metrics
