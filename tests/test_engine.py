"""The experiment engine: schedules, checkpoints, run folders, failures, and exact
interrupt-and-resume of every resumable task through the real command on CPU.

An interruption is a real SIGINT sent by the process to itself right after a chosen step,
so the engine's own signal handling is what stops the run.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing import event_accumulator

from softras import cli
from softras.engine import checkpoint as ckpt
from softras.engine.distributed import shard
from softras.io import load_obj_geometry
from softras.schedules import BlurSchedule, Schedule

DEFORM = ["steps=10", "target.views=4", "renderer.image_size=32", "device=cpu", "logger.scalars_every=1",
          "logger.images_every=3", "logger.gif_every=2", "logger.mesh_every=5", "checkpoint_every=4"]  # fmt: skip
FIT_POSE = ["config=quick", "steps=10", "renderer.image_size=24", "device=cpu", "logger.scalars_every=1",
            "logger.images_every=3", "logger.gif_every=2", "checkpoint_every=3"]  # fmt: skip
TASKS = {"deform": DEFORM, "fit-pose": FIT_POSE}


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    acc = event_accumulator.EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


EXPERIMENTS = {"deform": "Deform", "fit-pose": "FitPose"}


def interrupt_after(monkeypatch, sub: str, stop_at: int, signum: int = signal.SIGINT) -> None:
    """Sends ``signum`` to this process right after step ``stop_at`` of the task ``sub``."""
    import importlib

    cls = getattr(importlib.import_module(cli.SUBCOMMANDS[sub][0]), EXPERIMENTS[sub])
    original = cls.step

    def step(self, k):
        out = original(self, k)
        if k == stop_at:
            os.kill(os.getpid(), signum)
        return out

    monkeypatch.setattr(cls, "step", step)


# ---- schedules ------------------------------------------------------------------------------


def test_schedule_kinds_at_hand_computed_points():
    # 11 steps: progress = step / 10
    assert Schedule("linear", 2.0, 4.0)(5, 11) == pytest.approx(3.0)
    assert Schedule("log-linear", 1e-2, 1e-4)(5, 11) == pytest.approx(1e-3)
    assert Schedule("cosine", 1.0, 0.0)(5, 11) == pytest.approx(0.5)
    assert Schedule("cosine", 1.0, 0.0)(0, 11) == 1.0 and Schedule("cosine", 1.0, 0.0)(10, 11) == 0.0
    # cosine at a quarter: (1 + cos(pi/4)) / 2
    assert Schedule("cosine", 1.0, 0.0, until=1.0)(2.5, 11) == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    assert Schedule("constant", 5.0, 7.0)(0, 11) == 7.0
    # step: 4 plateaus geometric from 1 to 1e-3: 1, 0.1, 0.01, 0.001
    s = Schedule("step", 1.0, 1e-3, levels=4)
    assert [s.at(p) for p in (0.0, 0.3, 0.6, 0.99, 1.0)] == pytest.approx([1, 0.1, 0.01, 1e-3, 1e-3])
    # a window: held at start before begin, at end after until
    w = Schedule("linear", 0.0, 1.0, begin=0.5, until=0.75)
    assert [w(k, 11) for k in (0, 5, 6, 7, 10)] == pytest.approx([0.0, 0.0, 0.4, 0.8, 1.0])


def test_schedule_rejects_bad_values_naming_them():
    with pytest.raises(ValueError, match=r"^kind: expected one of"):
        Schedule("exp", 1.0, 2.0)
    with pytest.raises(ValueError, match=r"^begin, until"):
        Schedule("linear", 1.0, 2.0, begin=0.8, until=0.2)
    with pytest.raises(ValueError, match=r"^start, end: a log-linear schedule needs values > 0"):
        Schedule("log-linear", 0.0, 1.0)
    with pytest.raises(ValueError, match=r"^sigma_val: expected \[start, end\]"):
        BlurSchedule.create("linear", [1.0], [1.0, 2.0])


def test_blur_schedule_without_blur_holds_the_final_values():
    b = BlurSchedule.create("log-linear", [1e-2, 1e-5], [1e-1, 1e-4], until=0.7)
    assert b(0, 300) == (pytest.approx(1e-2), pytest.approx(1e-1))
    assert b.held_at_end()(0, 300) == (1e-5, 1e-4)
    assert b(299, 300) == (pytest.approx(1e-5), pytest.approx(1e-4))


def test_shard_covers_every_index_once_without_padding():
    for n in (0, 1, 5, 7, 120):
        for world in (1, 2, 3, 4):
            parts = [list(shard(n, r, world)) for r in range(world)]
            assert sum(parts, []) == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


# ---- checkpoints ----------------------------------------------------------------------------


def test_checkpoint_restores_every_rng(tmp_path):
    ckpt.seed_everything(3)
    path = tmp_path / "c.pt"
    ckpt.save(path, 7, "deform", {"state": {"x": 1}})
    expected = (random.random(), np.random.rand(), torch.rand(2))
    payload = ckpt.load(path, "deform", 1)
    ckpt.restore_rng(payload, 0)
    again = (random.random(), np.random.rand(), torch.rand(2))
    assert expected[0] == again[0] and expected[1] == again[1] and torch.equal(expected[2], again[2])
    assert payload["step"] == 7 and payload["state"] == {"x": 1}
    assert not list(tmp_path.glob(".*tmp"))  # written through a temporary name, then renamed


def test_checkpoint_of_another_task_or_world_size_is_refused(tmp_path):
    path = tmp_path / "c.pt"
    ckpt.save(path, 1, "deform", {"state": {}})
    with pytest.raises(ckpt.CheckpointError, match="checkpoint of 'deform', not of 'fit-pose'"):
        ckpt.load(path, "fit-pose", 1)
    with pytest.raises(ckpt.CheckpointError, match="written by 1 process"):
        ckpt.load(path, "deform", 2)
    (tmp_path / "bad.pt").write_text("not a checkpoint")
    with pytest.raises(ckpt.CheckpointError, match=r"cannot read .*bad\.pt"):
        ckpt.load(tmp_path / "bad.pt", "deform", 1)


# ---- run folders ----------------------------------------------------------------------------


def test_new_run_dirs_created_together_are_distinct(tmp_path):
    made: list[Path] = []
    lock = threading.Lock()

    def make():
        p = cli.new_run_dir(tmp_path)
        with lock:
            made.append(p)

    threads = [threading.Thread(target=make) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 40 and all(p.is_dir() for p in made)


def test_three_renders_started_together_get_their_own_folders(tmp_path):
    cmd = [sys.executable, "-m", "softras.cli", "render", "config=sphere", "turntable.frames=1",
           "renderer.image_size=16", "strip.sigma_val=[1e-4]", "strip.gamma_val=[1e-3]", "device=cpu"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    runs = sorted((tmp_path / "outputs" / "render").iterdir())
    assert len(runs) == 3
    for run in runs:
        assert metrics(run)["status"] == "completed"
        assert (run / "turntable.gif").is_file() and (run / "strip.png").is_file()


def test_a_named_folder_that_holds_files_is_refused(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    code = cli.main(["deform", *DEFORM, f"hydra.run.dir={folder}"])
    assert code == 2
    assert "already holds files" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


# ---- failures -------------------------------------------------------------------------------


def test_a_bug_inside_a_running_task_keeps_its_traceback(tmp_path, monkeypatch, capsys):
    from softras.tasks import deform

    def broken(self, k):
        if k == 2:
            raise RuntimeError("deliberate failure inside the step")
        return original(self, k)

    original = deform.Deform.step
    monkeypatch.setattr(deform.Deform, "step", broken)
    run = tmp_path / "run"
    code = cli.main(["deform", *DEFORM, f"hydra.run.dir={run}"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" in err and "deliberate failure inside the step" in err
    assert "Traceback" in (run / "run.log").read_text()
    assert metrics(run)["status"] == "failed"


def test_a_mistake_before_the_run_starts_is_one_line_and_leaves_no_folder(tmp_path, capsys):
    run = tmp_path / "run"
    code = cli.main(["deform", *DEFORM, "template.mesh=/no/such/file.obj", f"hydra.run.dir={run}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == ["softras deform: error: template.mesh: no such file /no/such/file.obj"]
    assert not run.exists()


# ---- interrupt and resume -------------------------------------------------------------------


def _final_state(sub: str, run: Path):
    if sub == "deform":
        v, _ = load_obj_geometry(run / "mesh.obj")
        return v
    m = metrics(run)
    return torch.tensor(m["rotation"] + [m["translation"]] + m["rotation_no_blur"])


@pytest.mark.parametrize("sub", sorted(TASKS))
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_then_resume_equals_an_uninterrupted_run(sub, signum, tmp_path, monkeypatch):
    args = TASKS[sub]
    straight = tmp_path / "straight"
    assert cli.main([sub, *args, f"hydra.run.dir={straight}"]) == 0

    stop_at = random.Random(f"{sub}{signum}").randrange(1, 8)  # after this step, before the last
    with monkeypatch.context() as m:
        interrupt_after(m, sub, stop_at, signum)
        cut = tmp_path / "cut"
        assert cli.main([sub, *args, f"hydra.run.dir={cut}"]) == 130
    assert (cut / "INTERRUPTED").is_file()
    assert metrics(cut)["status"] == "interrupted" and metrics(cut)["steps_done"] == stop_at + 1
    assert torch.load(cut / "checkpoint.pt", weights_only=False)["step"] == stop_at + 1

    assert cli.main([sub, f"resume={cut}"]) == 0  # the run's own config: nothing else given
    assert metrics(cut)["status"] == "completed" and not (cut / "INTERRUPTED").exists()
    assert torch.equal(_final_state(sub, cut), _final_state(sub, straight))  # bitwise
    tag = "loss/total"
    assert scalars(cut, tag) == scalars(straight, tag)  # the same curve, each step once


def test_a_second_signal_during_the_clean_up_keeps_checkpoint_and_mesh(tmp_path, monkeypatch):
    from softras.tasks import deform

    original = deform.Deform.finish

    def finish(self, ctx, completed):
        os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C, during the clean-up
        return original(self, ctx, completed)

    monkeypatch.setattr(deform.Deform, "finish", finish)
    interrupt_after(monkeypatch, "deform", 3)
    run = tmp_path / "run"
    assert cli.main(["deform", *DEFORM, f"hydra.run.dir={run}"]) == 130
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 4
    v, f = load_obj_geometry(run / "mesh.obj")
    assert v.shape == (1352, 3) and f.shape == (2700, 3)


def test_resume_refuses_changes_to_the_problem_and_allows_more_steps(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["deform", *DEFORM, f"hydra.run.dir={run}"]) == 0
    for bad in ("target.views=5", "renderer.sigma_val=1e-3", "template.scale=0.4"):
        assert cli.main(["deform", f"resume={run}", bad]) == 2
        key = bad.split("=")[0]
        assert f"resume: {key} would change the problem" in capsys.readouterr().err
    # a completed run goes on to more steps (its last checkpoint is at its end)
    assert cli.main(["deform", f"resume={run}", "steps=13"]) == 0
    m = metrics(run)
    assert m["steps_done"] == 13 and m["views"] == 4
    assert [s for s, _ in scalars(run, "loss/total")] == list(range(13))


def test_resume_from_a_folder_that_is_not_a_run_is_refused(tmp_path, capsys):
    assert cli.main(["deform", f"resume={tmp_path}"]) == 2
    assert "is not a resumable deform run" in capsys.readouterr().err
