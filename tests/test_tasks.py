"""The configs (every top-level config and preset composes, with the paper's values), the
run-folder machinery of softras.tasks._run, clean interruption and resume of the deform task,
and the deform recipe reaching a measured IoU on a reduced problem.

The tasks are called directly (``run(cfg, out_dir)``), with configs from
``softras.config.compose`` (what the command builds), on CPU.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import imageio.v2 as imageio
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from tensorboard.backend.event_processing import event_accumulator

from softras import cli
from softras.config import compose
from softras.io import load_obj
from softras.paths import config_dir, data_dir
from softras.tasks import _run, deform

SUBS = sorted(p.stem for p in config_dir().glob("*.yaml"))
PRESETS = [(sub, p.stem) for sub in SUBS for p in sorted((config_dir() / "experiment" / sub).glob("*.yaml"))]


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the same results, and no OpenMP slowdown when other jobs share the cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def scalar_steps(run_dir: Path, tag: str) -> list[int]:
    acc = event_accumulator.EventAccumulator(
        str(run_dir / "tb"), size_guidance={k: 0 for k in event_accumulator.DEFAULT_SIZE_GUIDANCE}
    )
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


# ---- configs ---------------------------------------------------------------------------


def _data_paths(node) -> list[str]:
    """Every string in a resolved config that names something in the bundled data folder."""
    if isinstance(node, dict):
        return [p for v in node.values() for p in _data_paths(v)]
    if isinstance(node, list):
        return [p for v in node for p in _data_paths(v)]
    return [node] if isinstance(node, str) and node.startswith(str(data_dir())) else []


def test_top_level_configs_are_the_subcommands():
    assert {"deform", "render"} <= set(cli.SUBCOMMANDS)
    assert set(cli.SUBCOMMANDS) <= set(SUBS)  # every subcommand has its config
    assert {("deform", "airplane"), ("deform", "quick"), ("render", "sphere"), ("render", "spot")} <= set(PRESETS)


@pytest.mark.parametrize("sub", SUBS)
def test_every_top_level_config_composes(sub):
    cfg = compose(sub)
    plain = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    assert plain["seed"] == 0 and plain["device"] == "auto"
    assert plain["paths"]["data_dir"] == str(data_dir())
    for path in _data_paths(plain):
        assert Path(path).exists(), path  # the bundled files it names exist


@pytest.mark.parametrize("sub, name", PRESETS, ids=[f"{s}/{n}" for s, n in PRESETS])
def test_every_preset_composes(sub, name):
    cfg = compose(sub, [f"experiment={sub}/{name}"])
    plain = OmegaConf.to_container(cfg, resolve=True)
    base = OmegaConf.to_container(compose(sub), resolve=True)
    assert set(plain) == set(base)  # a preset changes values, it adds no top-level keys
    for path in _data_paths(plain):
        assert Path(path).exists(), path
    # and the command accepts it (composition only: no run)
    assert cli.expand_config_arg(sub, [f"config={name}"]) == [f"experiment={sub}/{name}"]


def _deform_defaults(c) -> None:
    assert c.seed == 0
    assert c.template.mesh == str(data_dir() / "sphere_1352.obj") and c.template.scale == 0.5
    assert c.template.min_abs == 1e-4
    assert c.target.images == str(data_dir() / "source.npy")
    assert c.target.cameras == str(data_dir() / "camera.npy")
    assert c.target.mesh is None and c.target.masks is None
    assert c.target.ring.distance == 2.732
    assert c.renderer.image_size == 64
    assert c.renderer.sigma_val == 1e-4 and c.renderer.dist_eps == 1e-4
    assert c.renderer.aggr_func_rgb == "hard"
    assert c.renderer.viewing_angle == 15
    assert c.loss.laplacian == 0.03 and c.loss.flatten == 0.0003
    assert c.optim.lr == 0.01 and list(c.optim.betas) == [0.5, 0.99]
    assert c.logger.scalars_every == 10 and c.logger.gif_every == 20
    assert c.resume is None


@pytest.mark.parametrize("overrides", [[], ["experiment=deform/airplane"]], ids=["default", "airplane"])
def test_deform_config_values(overrides):
    c = compose("deform", overrides)
    _deform_defaults(c)
    assert c.steps == 2000
    assert c.target.views is None
    assert list(c.target.ring.elevations) == [-60, -30, 0, 30, 60] and c.target.ring.azimuths == 24
    assert c.logger.images_every == 100 and c.logger.mesh_every == 500
    assert c.checkpoint_every == 200


def test_deform_quick_preset_values():
    c = compose("deform", ["experiment=deform/quick"])
    _deform_defaults(c)
    assert c.steps == 200
    assert c.target.views == 24
    assert list(c.target.ring.elevations) == [-30, 30] and c.target.ring.azimuths == 8
    assert c.logger.images_every == 50 and c.logger.mesh_every == 100
    assert c.checkpoint_every == 100
    # the command line wins over the preset
    c = compose("deform", ["experiment=deform/quick", "steps=7", "target.views=3"])
    assert c.steps == 7 and c.target.views == 3


def _render_defaults(c) -> None:
    assert c.seed == 0 and c.normalize is True
    assert c.texture.load is True and c.texture.res == 5
    assert list(c.renderer.background_color) == [1, 1, 1] and c.renderer.anti_aliasing is True
    assert c.renderer.sigma_val == 1e-5 and c.renderer.gamma_val == 1e-4
    assert c.renderer.viewing_angle == 30
    assert c.turntable.elevation == 20 and c.turntable.distance == 2.732 and c.turntable.fps == 12
    assert list(c.strip.sigma_val) == [3e-2, 1e-2, 3e-3, 1e-3, 1e-4, 1e-5]
    assert list(c.strip.gamma_val) == [1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4]
    assert (c.strip.elevation, c.strip.azimuth, c.strip.distance) == (20, 135, 2.732)


@pytest.mark.parametrize("overrides", [[], ["experiment=render/spot"]], ids=["default", "spot"])
def test_render_config_values(overrides):
    c = compose("render", overrides)
    _render_defaults(c)
    assert c.mesh == str(data_dir() / "spot_triangulated.obj")
    assert c.renderer.image_size == 256 and c.turntable.frames == 36


def test_render_sphere_preset_values():
    c = compose("render", ["experiment=render/sphere"])
    _render_defaults(c)
    assert c.mesh == str(data_dir() / "sphere_1352.obj")
    assert c.renderer.image_size == 128 and c.turntable.frames == 12


def test_compose_rejects_unknown_keys():
    with pytest.raises(Exception, match="foo"):
        compose("deform", ["foo=1"])


# ---- run folders and the Run context ---------------------------------------------------------


def test_new_run_dir_never_reuses_a_folder(tmp_path):
    dirs = [_run.new_run_dir(tmp_path / "outputs" / "x") for _ in range(4)]
    assert len(set(dirs)) == 4
    assert all(d.is_dir() and not any(d.iterdir()) for d in dirs)
    assert all(re.match(r"^\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}(_\d+)?$", d.name) for d in dirs)


def test_run_writes_config_log_metrics(tmp_path):
    cfg = OmegaConf.create({"a": 1, "b": {"c": [1, 2]}, "d": "${a}"})
    with _run.Run(cfg, tmp_path / "r", "test") as r:
        r.scalars(0, {"x": 1.5})
        r.metrics["value"] = 3
    assert r.status == "completed" and not r.interrupted
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text()) == {"a": 1, "b": {"c": [1, 2]}, "d": 1}
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["status"] == "completed" and m["value"] == 3 and m["seconds"] >= 0
    assert "test: run folder" in (tmp_path / "r" / "run.log").read_text()
    assert scalar_steps(tmp_path / "r", "x") == [0]
    assert not (tmp_path / "r" / "INTERRUPTED").exists()


def test_run_failure_is_marked_and_raised(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with _run.Run({"a": 1}, tmp_path / "r", "test"):
            raise RuntimeError("boom")
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["status"] == "failed"
    assert not (tmp_path / "r" / "INTERRUPTED").exists()


def test_run_sigterm_ends_it_like_ctrl_c(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    reached = []
    with _run.Run({"a": 1}, tmp_path / "r", "test") as r:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises KeyboardInterrupt before this ends
        reached.append(True)
    assert not reached
    assert r.status == "interrupted" and r.interrupted
    assert (tmp_path / "r" / "INTERRUPTED").is_file()
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["status"] == "interrupted"
    assert signal.getsignal(signal.SIGTERM) == before  # restored


# ---- deform: the model and the metric ------------------------------------------------------


def test_hard_iou():
    p = torch.zeros(3, 4, 4)
    t = torch.zeros(3, 4, 4)
    p[0, :2], t[0, :, :2] = 1, 1  # 8 and 8 pixels, 4 in common: 4 / 12
    p[1], t[1] = 0.6, 0.7  # both full
    iou = deform.hard_iou(p, t)  # view 2: both empty counts as 1
    assert iou.tolist() == pytest.approx([1 / 3, 1.0, 1.0])


def test_deform_model_starts_at_the_template_and_stays_in_the_cube():
    v0, f = load_obj(data_dir() / "sphere_642.obj")
    model = deform.DeformModel(v0 * 0.5, f)
    expected = torch.where((v0 * 0.5).abs() < 1e-4, torch.full_like(v0, 1e-4), v0 * 0.5)
    torch.testing.assert_close(model(), expected, atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        model.displace.fill_(50.0)
        model.center.fill_(3.0)
        assert float(model().abs().max()) <= 1
    with pytest.raises(ValueError, match="template.scale"):
        deform.DeformModel(v0, f)


# ---- deform: Ctrl-C and resume --------------------------------------------------------------

TINY = [
    "target.views=6",
    "renderer.image_size=16",
    "logger.scalars_every=1",
    "logger.images_every=1",
    "logger.gif_every=1",
    "logger.mesh_every=100",
    "device=cpu",
]


def test_deform_interrupt_then_resume(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_iou_loss = deform.iou_loss

    def interrupting_iou_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # Ctrl-C during the 4th step: 3 steps are done
            raise KeyboardInterrupt
        return real_iou_loss(*args, **kwargs)

    monkeypatch.setattr(deform, "iou_loss", interrupting_iou_loss)
    first = tmp_path / "first"
    metrics = deform.run(compose("deform", ["steps=10", *TINY]), first)  # returns normally
    assert calls["n"] == 4
    assert metrics["status"] == "interrupted" and metrics["steps_done"] == 3
    assert json.loads((first / "metrics.json").read_text())["status"] == "interrupted"
    assert (first / "INTERRUPTED").is_file()
    v, f = load_obj(first / "mesh.obj")
    assert v.shape == (1352, 3) and f.shape == (2700, 3)
    frames = imageio.mimread(first / "progress.gif")
    assert len(frames) == 4  # steps 0, 1, 2 and the mesh when interrupted
    ckpt = torch.load(first / "checkpoint.pt")
    assert ckpt["step"] == 3
    assert scalar_steps(first, "loss/total") == [0, 1, 2]
    assert scalar_steps(first, "metric/mean_hard_iou") == [0, 1, 2, 3]

    monkeypatch.setattr(deform, "iou_loss", real_iou_loss)
    resumed = tmp_path / "resumed"
    metrics = deform.run(compose("deform", ["steps=6", f"resume={first}", *TINY]), resumed)
    assert metrics["status"] == "completed" and metrics["steps_done"] == 6
    assert not (resumed / "INTERRUPTED").exists()
    assert scalar_steps(resumed, "loss/total") == [3, 4, 5]  # it went on from step 3
    log = (resumed / "run.log").read_text()
    assert "resumed from" in log and "at step 3" in log
    assert (first / "checkpoint.pt").is_file() and json.loads((first / "metrics.json").read_text())["steps_done"] == 3

    # the same as 6 steps in one go (the checkpoint holds the optimizer state too)
    straight = tmp_path / "straight"
    ref = deform.run(compose("deform", ["steps=6", *TINY]), straight)
    assert ref["steps_done"] == 6
    v_res, _ = load_obj(resumed / "mesh.obj")
    v_ref, _ = load_obj(straight / "mesh.obj")
    torch.testing.assert_close(v_res, v_ref, atol=1e-5, rtol=0)
    assert metrics["mean_hard_iou"] == pytest.approx(ref["mean_hard_iou"], abs=1e-3)


# ---- deform: the recipe reaches a measured IoU ------------------------------------------------

# The bundled airplane (24 of its 120 views, 32 x 32 px), the paper's recipe otherwise (sphere
# template, sigma 1e-4, Adam 0.01, Laplacian 0.03, flatten 0.0003), seed 0, CPU, native backend.
# Measured (torch 2.13 CPU, native backend, default config: the learning rate decays over the
# second half of the run): mean hard IoU 0.1632 at the start (steps=0) and 0.7078 after 500
# steps (worst view 0.452; about 14 s on 1 thread on an idle machine). Without the decay
# (schedule.decay_start=1) the same run reached 0.7682.
IOU_STEPS = 500
MEASURED_START = 0.1632
MEASURED_FINAL = 0.7078


@pytest.mark.slow
def test_deform_recipe_reaches_the_measured_iou(tmp_path):
    from softras import _native

    if not _native.available("cpu"):
        pytest.skip("the native CPU backend is unavailable (the reference backend is too slow for this)")
    # on one thread (the one_thread fixture): 100 steps took 4.5 s on 1 thread but 27 s on 2
    # while another job ran on the 2 cores
    assert torch.get_num_threads() == 1
    common = [
        "target.views=24",
        "renderer.image_size=32",
        "device=cpu",
        "logger.images_every=1000",
        "logger.mesh_every=1000",
        "logger.gif_every=1000",
    ]
    start = deform.run(compose("deform", ["steps=0", *common]), tmp_path / "start")
    assert start["steps_done"] == 0 and start["views"] == 24
    assert start["mean_hard_iou"] == pytest.approx(MEASURED_START, abs=0.01)

    final = deform.run(compose("deform", [f"steps={IOU_STEPS}", *common]), tmp_path / "final")
    assert final["status"] == "completed" and final["steps_done"] == IOU_STEPS
    assert final["mean_hard_iou"] >= MEASURED_FINAL - 0.03
    assert final["mean_hard_iou"] >= start["mean_hard_iou"] + 0.5  # from 0.16 to about 0.71
    # every view improves (measured: by 0.41 to 0.72)
    gains = [b - a for a, b in zip(start["per_view_hard_iou"], final["per_view_hard_iou"])]
    assert len(gains) == 24 and min(gains) >= 0.3, gains
