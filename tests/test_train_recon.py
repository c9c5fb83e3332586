"""softras train-recon through the real command on a tiny generated dataset (64 x 64, a few
objects of two classes): the loss falls, interrupt-and-resume is exact, bad inputs are one
line, and (slow) two gloo processes train the same model as one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing import event_accumulator

from softras.cli import main
from softras.datasets import make_procedural_dataset
from softras.tasks import train_recon

TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("recon-data")
    make_procedural_dataset(root, class_ids=["chair", "table"], objects_per_class=4, progress=False)
    return root


def args(root: Path, *extra: str) -> list[str]:
    return ["train-recon", f"data.root={root}", "device=cpu", "batch_size=4", "logger.scalars_every=1", *extra]


def scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    acc = event_accumulator.EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def fixed_batch_loss(run: Path, root: Path) -> float:
    """1 - soft IoU of alpha, the model of ``run``'s checkpoint predicting every train object
    from each of 6 views and rendered there (batch statistics, no gradients): a fixed batch,
    free of the sampling noise of the logged training loss."""
    from softras.datasets import ShapeNetRenderings, view_eyes
    from softras.functional.losses import iou_loss
    from softras.functional.settings import RasterSettings
    from softras.models import ReconModel
    from softras.models.evaluation import render_meshes

    ds = ShapeNetRenderings(root, split="train")
    items = ds.items().repeat_interleave(6, 0)
    views = torch.arange(0, 24, 4).repeat(len(ds))
    images = ds.gather_images(items[:, 0], items[:, 1], views, as_float=True)
    model = ReconModel()
    model.load_state_dict(torch.load(run / "checkpoint.pt", weights_only=False)["state"]["model"])
    settings = RasterSettings(image_size=(64, 64), sigma_val=1e-4, dist_eps=1e-10, aggr_func_rgb="hard")
    with torch.no_grad():
        vertices, faces, _ = model(images)
        alpha = render_meshes(vertices, faces, view_eyes(views), settings)[:, 3]
    return float(iou_loss(alpha, images[:, 3]))


@pytest.mark.slow
def test_a_few_steps_reduce_the_loss(tiny, tmp_path):
    start, run = tmp_path / "start", tmp_path / "run"
    assert main(args(tiny, "steps=0", f"hydra.run.dir={start}")) == 0  # the initial model's checkpoint
    assert main(args(tiny, "steps=12", "optim.lr=1e-3", "val_every=6", f"hydra.run.dir={run}")) == 0
    before, after = fixed_batch_loss(start, tiny), fixed_batch_loss(run, tiny)
    assert after < before - 0.03, (before, after)  # measured: 0.667 -> 0.625
    assert len(scalars(run, "loss/iou")) == 12
    # every term, the schedule and the speed are logged; sigma and lr drop x 0.3 at 60% (step 7 of 0..11)
    for tag in ("loss/total", "loss/laplacian", "loss/flatten", "speed/steps_per_s", "speed/samples_per_s"):
        assert len(scalars(run, tag)) == 12
    sigma, lr = dict(scalars(run, "sigma")), dict(scalars(run, "lr"))
    assert sigma[6] == pytest.approx(1e-4) and sigma[7] == pytest.approx(3e-5)
    assert lr[6] == pytest.approx(1e-3) and lr[7] == pytest.approx(3e-4)
    m = metrics(run)
    assert m["status"] == "completed" and [c["step"] for c in m["val_curve"]] == [6, 12]
    assert set(m["val_iou"]) == {"03001627", "04379243"} and 0 < m["val_mean_iou"] <= 1
    best = torch.load(run / "best.pt", weights_only=False)
    assert best["task"] == "train-recon" and best["val_iou"]["mean"] == pytest.approx(m["best_val_mean_iou"])
    assert (run / "progress.gif").is_file() and len(scalars(run, "val/iou_chair")) == 2


def test_interrupt_then_resume_equals_an_uninterrupted_run(tiny, tmp_path, monkeypatch):
    common = args(tiny, "steps=5", "val_every=2", "checkpoint_every=2", "logger.gif_every=2")
    straight = tmp_path / "straight"
    assert main([*common, f"hydra.run.dir={straight}"]) == 0

    original = train_recon.TrainRecon.step

    def step(self, k):
        out = original(self, k)
        if k == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    cut = tmp_path / "cut"
    with monkeypatch.context() as m:
        m.setattr(train_recon.TrainRecon, "step", step)
        assert main([*common, f"hydra.run.dir={cut}"]) == 130
    assert metrics(cut)["steps_done"] == 3
    assert main(["train-recon", f"resume={cut}"]) == 0
    a = torch.load(straight / "checkpoint.pt", weights_only=False)["state"]
    b = torch.load(cut / "checkpoint.pt", weights_only=False)["state"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert torch.equal(a["generators"][0], b["generators"][0])
    assert scalars(cut, "loss/total") == scalars(straight, "loss/total")  # bitwise, each step once
    assert [c["step"] for c in metrics(cut)["val_curve"]] == [2, 4, 5]
    assert metrics(cut)["val_curve"] == metrics(straight)["val_curve"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_bad_inputs_are_one_line(tiny, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(args(empty, "steps=1")) == 2
    assert "data.root" in (line := one_line_error(capsys)) and "_train_images.npz" in line

    assert main(args(tiny, "steps=1", "data.class_ids=[lamp]")) == 2
    line = one_line_error(capsys)
    assert "class_ids" in line and "03636649" in line and "03001627, 04379243" in line

    bad = tmp_path / "bad"
    shutil.copytree(tiny, bad)
    np.savez_compressed(bad / "04379243_train_voxels.npz", np.zeros((2, 32, 32, 32), np.float32))
    assert main(args(bad, "steps=1")) == 2
    line = one_line_error(capsys)
    assert "04379243_train_voxels.npz" in line and "bool or uint8" in line and "float32" in line

    assert main(args(tiny, "steps=1", "model.rgb_weight=1.0")) == 2
    assert "model.rgb_weight" in one_line_error(capsys)
    assert main(args(tiny, "steps=1", "renderer.image_size=32")) == 2
    assert "renderer.image_size" in one_line_error(capsys)


@pytest.mark.slow
@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed")
def test_two_gloo_processes_train_like_one_and_resume_exactly(tiny, tmp_path, monkeypatch):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"

    def torchrun(*extra: str) -> subprocess.CompletedProcess:
        cmd = [TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "softras.cli", *extra]
        return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)

    common = [*args(tiny, "steps=8", "val_every=4", "optim.lr=1e-3", "scheduler=constant"), "checkpoint_every=4"]
    two = tmp_path / "two"
    done = torchrun(*common, f"hydra.run.dir={two}")
    assert done.returncode == 0, done.stderr[-3000:]
    m2 = metrics(two)
    assert m2["world_size"] == 2 and m2["batch_size"] == 4 and m2["max_parameter_difference_between_ranks"] == 0
    assert len(list((two / "tb").glob("events.out.tfevents.*"))) == 1

    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    one = tmp_path / "one"
    assert main([*common, f"hydra.run.dir={one}"]) == 0
    l1, l2 = (np.array([v for _, v in scalars(r, "loss/iou")]) for r in (one, two))
    # the ranks draw other samples than the single process: equal within sampling noise
    assert len(l1) == len(l2) == 8
    assert abs(l1.mean() - l2.mean()) < 0.1 and np.abs(l1 - l2).max() < 0.25
    assert abs(metrics(one)["val_mean_iou"] - m2["val_mean_iou"]) < 0.15

    # stopped at a checkpoint (as after a kill) and resumed: the uninterrupted curve, bitwise
    cut = tmp_path / "cut"
    done = torchrun(*[a if a != "steps=8" else "steps=4" for a in common], f"hydra.run.dir={cut}")
    assert done.returncode == 0, done.stderr[-3000:]
    done = torchrun("train-recon", f"resume={cut}", "steps=8")
    assert done.returncode == 0, done.stderr[-3000:]
    assert scalars(cut, "loss/total") == scalars(two, "loss/total")
    a = torch.load(two / "checkpoint.pt", weights_only=False)["state"]
    b = torch.load(cut / "checkpoint.pt", weights_only=False)["state"]
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())
    assert len(a["generators"]) == 2 and all(torch.equal(x, y) for x, y in zip(a["generators"], b["generators"]))

    # more processes than samples in the global batch: one line of ours (each rank exits 2,
    # then torchrun reports the failed children in its own words), no folder
    done = torchrun(*args(tiny, "steps=1", "batch_size=1"), f"hydra.run.dir={tmp_path / 'bad'}")
    assert done.returncode != 0 and "exitcode  : 2" in done.stderr
    ours = [ln for ln in done.stderr.splitlines() if ln.startswith("softras train-recon: error:")]
    assert len(ours) == 1 and "batch_size" in ours[0] and "= 2" in ours[0], done.stderr[-2000:]
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())  # (an empty folder may stay)
