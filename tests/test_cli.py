"""The `softras` command (softras.cli.main): help, run folders, presets and YAML configs,
one-line errors, and deform and render end to end on CPU with tiny settings (fit-pose's are
in test_fit_pose.py, the catalogue of bad inputs through a real process in test_catalogue.py,
interrupt-and-resume exactness in test_engine.py).

Every test runs in its own temporary folder (``monkeypatch.chdir``), so ``outputs/`` lands
there. The tiny runs take about a second each on a 2-core CPU.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing import event_accumulator

from softras import cli
from softras.io import load_obj
from softras.paths import config_dir, data_dir, data_file

ROOT = Path(__file__).resolve().parent.parent
RUN_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}(_\d+)?$")

# tiny deform: 6 steps on 6 of the 120 airplane views at 32 x 32
DEFORM_TINY = [
    "steps=6",
    "target.views=6",
    "renderer.image_size=32",
    "logger.scalars_every=1",
    "logger.images_every=2",
    "logger.mesh_every=3",
    "logger.gif_every=2",
    "device=cpu",
]
RENDER_TINY = [
    "config=sphere",
    "turntable.frames=3",
    "renderer.image_size=32",
    "strip.sigma_val=[1e-3,1e-4]",
    "strip.gamma_val=[1e-2,1e-3]",
    "device=cpu",
]


# ---- helpers ---------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the same results, and no OpenMP slowdown when other jobs share the cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Runs the test inside tmp_path (outputs/ goes there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_dirs(root: Path, sub: str) -> list[Path]:
    folder = root / "outputs" / sub
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def only_run_dir(root: Path, sub: str) -> Path:
    dirs = run_dirs(root, sub)
    assert len(dirs) == 1, dirs
    assert RUN_NAME.match(dirs[0].name), dirs[0].name
    return dirs[0]


def read_events(run_dir: Path) -> event_accumulator.EventAccumulator:
    files = list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert len(files) == 1, files
    acc = event_accumulator.EventAccumulator(
        str(run_dir / "tb"), size_guidance={k: 0 for k in event_accumulator.DEFAULT_SIZE_GUIDANCE}
    )
    acc.Reload()
    return acc


def scalar_steps(acc, tag: str) -> list[int]:
    return [e.step for e in acc.Scalars(tag)]


def scalar_values(acc, tag: str) -> list[float]:
    return [e.value for e in acc.Scalars(tag)]


def image_steps(acc, tag: str) -> list[int]:
    return [e.step for e in acc.Images(tag)]


def read_config(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "config.yaml").read_text())


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def gif_frames(path: Path) -> list[np.ndarray]:
    return [np.asarray(f) for f in imageio.mimread(path)]


def error_line(capsys) -> str:
    """The single non-blank line on stderr (and no traceback anywhere)."""
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


# ---- help and unknown commands -----------------------------------------------------------


def test_top_level_help_lists_the_subcommands(capsys):
    for argv in (["--help"], ["-h"], []):
        assert cli.main(argv) == 0
        out, err = capsys.readouterr()
        lines = out.splitlines()
        assert lines[0].startswith("usage: softras <command>")
        for sub in ("render", "deform", "fit-pose", "build"):
            mine = [ln for ln in lines if ln.split()[:1] == [sub]]
            assert len(mine) == 1, (sub, out)
            text = {**cli.SUBCOMMANDS, **cli.EXTRA_COMMANDS}[sub][1]
            assert mine[0].split(None, 1)[1].strip() == text


def test_unknown_command_exits_2_with_a_message(capsys, in_tmp):
    assert cli.main(["bogus", "steps=1"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines()[0] == "softras: unknown command 'bogus'"
    assert "deform" in err and "render" in err  # the usage follows
    assert not (in_tmp / "outputs").exists()


@pytest.mark.parametrize("sub", ["deform", "render", "fit-pose"])
def test_subcommand_help_shows_the_config_with_the_overrides(capsys, in_tmp, sub):
    """--help prints the composed config (the command line's overrides applied) and the
    presets, which are the files of configs/experiment/<sub>/; it makes no run folder."""
    assert cli.main([sub, "--help", "seed=123", "renderer.near=0.5"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"softras {sub}")
    assert "== Config ==" in out
    config = yaml.safe_load(out.split("== Config ==", 1)[1].split("\n", 2)[2].split("\n\n")[0])
    assert config["seed"] == 123 and config["renderer"]["near"] == 0.5
    presets = ", ".join(sorted(p.stem for p in (config_dir() / "experiment" / sub).glob("*.yaml")))
    assert f"experiment/{sub}: {presets}" in out
    assert "Traceback" not in out + err
    assert not (in_tmp / "outputs").exists()  # --help makes no run folder


def test_build_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["build", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--cuda-compile-check" in out and "--arch" in out


# ---- end to end ------------------------------------------------------------------------


def test_deform_end_to_end(in_tmp):
    assert cli.main(["deform", *DEFORM_TINY]) == 0
    run = only_run_dir(in_tmp, "deform")
    for name in ("config.yaml", "run.log", "metrics.json", "mesh.obj", "progress.gif", "final.png", "checkpoint.pt"):
        assert (run / name).is_file(), name
    assert not (run / "INTERRUPTED").exists()

    cfg = read_config(run)  # the command line's values, and resolved paths
    assert cfg["steps"] == 6 and cfg["target"]["views"] == 6 and cfg["renderer"]["image_size"] == 32
    assert cfg["template"]["mesh"] == str(data_dir() / "sphere_1352.obj")

    m = read_metrics(run)
    assert m["status"] == "completed"
    assert m["steps"] == 6 and m["steps_done"] == 6 and m["views"] == 6 and m["device"] == "cpu"
    assert len(m["per_view_hard_iou"]) == 6
    assert m["seconds"] > 0

    acc = read_events(run)
    tags = acc.Tags()
    for tag in ("loss/total", "loss/iou", "loss/laplacian", "loss/flatten"):
        assert scalar_steps(acc, tag) == [0, 1, 2, 3, 4, 5], tag  # scalars_every=1
    # every images_every=2 steps, and once more for the final mesh; metrics.json's IoU curve is
    # the same series, ending at the final IoU
    assert scalar_steps(acc, "metric/mean_hard_iou") == [0, 2, 4, 6]
    tb_curve = scalar_values(acc, "metric/mean_hard_iou")
    assert [c["step"] for c in m["iou_curve"]] == [0, 2, 4, 6]
    assert [c["mean_hard_iou"] for c in m["iou_curve"]] == pytest.approx(tb_curve, abs=1e-6)
    assert tb_curve[-1] == pytest.approx(m["mean_hard_iou"], abs=1e-6)
    # the total is the weighted sum of the terms (weights 0.03 and 0.0003)
    total, l_iou = scalar_values(acc, "loss/total"), scalar_values(acc, "loss/iou")
    lap, flat = scalar_values(acc, "loss/laplacian"), scalar_values(acc, "loss/flatten")
    for t, i, a, b in zip(total, l_iou, lap, flat):
        assert t == pytest.approx(i + 0.03 * a + 0.0003 * b, rel=1e-5)
    assert total[-1] < total[0]  # it learns
    assert "prediction_vs_target" in tags["images"]
    images = acc.Images("prediction_vs_target")
    assert [e.step for e in images] == [0, 2, 4]
    # 4 shown views over (prediction, target), 32 px with 2 px padding
    assert {(e.height, e.width) for e in images} == {(2 * 34 + 2, 4 * 34 + 2)}
    assert [e.step for e in acc.Tensors("mesh_VERTEX")] == [0, 3, 6]
    assert [e.step for e in acc.Tensors("mesh_FACE")] == [0, 3, 6]

    frames = gif_frames(run / "progress.gif")
    assert len(frames) == 4  # steps 0, 2, 4 and the final mesh
    assert {f.shape[:2] for f in frames} == {(70, 138)}

    # final.png: the last frame's grid at 3x, with a label at the left of each row
    final = imageio.imread(run / "final.png")[..., :3].astype(float)
    big = frames[-1][..., :3].astype(float).repeat(3, 0).repeat(3, 1)
    assert final.shape[0] == big.shape[0] and final.shape[1] > big.shape[1]
    margin = final.shape[1] - big.shape[1]
    assert np.abs(final[:, margin:] - big).mean() < 2
    for rows in (final[: final.shape[0] // 2, :margin], final[final.shape[0] // 2 :, :margin]):
        assert (rows < 100).sum() > 30  # dark text on white: "prediction", "target"

    v, f = load_obj(run / "mesh.obj")
    assert v.shape == (1352, 3) and f.shape == (2700, 3)
    assert torch.isfinite(v).all() and float(v.abs().max()) < 1
    v0, f0 = load_obj(data_file("sphere_1352.obj"))
    assert torch.equal(f, f0)
    assert not torch.allclose(v, v0 * 0.5, atol=1e-4)  # it moved

    log = (run / "run.log").read_text()
    assert "run folder" in log and "mean hard IoU" in log

    # the starting IoU in metrics.json is that of the template before any step (a run of 0 steps)
    start = in_tmp / "start"
    assert cli.main(["deform", *DEFORM_TINY, "steps=0", f"hydra.run.dir={start}"]) == 0
    m0 = read_metrics(start)
    assert m0["steps_done"] == 0
    assert m["initial_mean_hard_iou"] == pytest.approx(m0["mean_hard_iou"], abs=1e-6)
    assert m0["initial_mean_hard_iou"] == pytest.approx(m0["mean_hard_iou"], abs=1e-6)


def test_render_end_to_end(in_tmp):
    assert cli.main(["render", *RENDER_TINY, "turntable.save_frames=true"]) == 0
    run = only_run_dir(in_tmp, "render")
    for name in ("config.yaml", "run.log", "metrics.json", "turntable.gif", "strip.png", "view.png"):
        assert (run / name).is_file(), name

    cfg = read_config(run)
    assert cfg["mesh"] == str(data_dir() / "sphere_1352.obj")  # the preset's, resolved

    m = read_metrics(run)
    assert m["status"] == "completed"
    assert m["faces"] == 2700 and m["frames"] == 3  # sphere_1352.obj has 2700 faces
    assert m["strip"] == [{"sigma_val": 1e-3, "gamma_val": 1e-2}, {"sigma_val": 1e-4, "gamma_val": 1e-3}]

    acc = read_events(run)
    assert image_steps(acc, "turntable") == [0, 1, 2]
    assert {(e.height, e.width) for e in acc.Images("turntable")} == {(32, 32)}
    assert image_steps(acc, "strip") == [0]
    strip = acc.Images("strip")[0]
    assert (strip.height, strip.width) == (70, 70)  # 2 x 2 grid: RGB row, alpha row
    assert image_steps(acc, "strip/each") == [0, 1]
    assert scalar_values(acc, "strip/sigma_val") == pytest.approx([1e-3, 1e-4])
    assert scalar_values(acc, "strip/gamma_val") == pytest.approx([1e-2, 1e-3])
    alpha = scalar_values(acc, "strip/alpha_mean")
    # a unit sphere seen from 2.732 with a 30 degree half angle: radius 1/(2.732 tan 30) of the
    # half image after perspective (0.634, less the limb: asin(1/2.732) = 21.5 deg, tan 21.5 /
    # tan 30 = 0.68), so about pi 0.68^2 / 4 = 36% of the pixels when sharp; blur spreads it
    assert len(alpha) == 2 and 0.33 < alpha[1] < 0.40 and alpha[0] > alpha[1] + 0.02, alpha

    frames = gif_frames(run / "turntable.gif")
    assert len(frames) == 3
    assert {f.shape[:2] for f in frames} == {(32, 32)}
    first = frames[0][..., :3].astype(float)
    assert first.min() < 200 and first.max() > 250  # a shaded sphere on white
    assert imageio.imread(run / "strip.png").shape[:2] == (70, 70)

    # turntable.save_frames: each frame as a PNG (RGBA), the same pixels as TensorBoard's
    saved = sorted((run / "frames").iterdir())
    assert [p.name for p in saved] == ["0000.png", "0001.png", "0002.png"]
    for path, event in zip(saved, acc.Images("turntable")):
        png = imageio.imread(path)
        assert png.shape == (32, 32, 4)
        logged = imageio.imread(event.encoded_image_string)
        np.testing.assert_array_equal(png[..., :3], logged[..., :3])


def _view(in_tmp: Path, name: str, *camera: str) -> np.ndarray:
    """view.png of the sphere preset at 32 px, with ``camera`` overrides."""
    run = in_tmp / name
    args = ["render", *RENDER_TINY, "turntable.frames=1", "strip.sigma_val=[1e-4]", "strip.gamma_val=[1e-3]"]
    assert cli.main([*args, *camera, f"hydra.run.dir={run}"]) == 0
    return imageio.imread(run / "view.png").astype(float)


def test_render_camera_angles_eye_at_and_up(in_tmp):
    """view.png follows the camera: (distance, elevation, azimuth) and the eye they give by
    hand, (d cos e sin a, d sin e, -d cos e cos a), render the same; turning ``up`` over turns
    the picture by 180 degrees about the point looked at."""
    d, e, a = 2.5, 25.0, 120.0
    eye = [d * math.cos(math.radians(e)) * math.sin(math.radians(a)), d * math.sin(math.radians(e)),
           -d * math.cos(math.radians(e)) * math.cos(math.radians(a))]  # fmt: skip
    at = "camera.at=[0.3,0.15,0]"  # off the centre, so the turned picture is not the same
    by_angles = _view(in_tmp, "angles", f"camera.distance={d}", f"camera.elevation={e}", f"camera.azimuth={a}", at)
    by_eye = _view(in_tmp, "eye", "camera.eye=[{:.9f},{:.9f},{:.9f}]".format(*eye), at)
    assert np.abs(by_angles - by_eye).max() <= 1
    upside_down = _view(in_tmp, "up", "camera.eye=[{:.9f},{:.9f},{:.9f}]".format(*eye), at, "camera.up=[0,-1,0]")
    assert np.abs(upside_down - by_eye[::-1, ::-1]).max() <= 1
    # and `at` moves the sphere off the centre: the picture is not symmetric under that turn
    assert np.abs(by_eye - by_eye[::-1, ::-1]).max() > 100


def test_an_explicit_run_dir_is_used(in_tmp):
    target = in_tmp / "mine" / "run1"
    assert cli.main(["render", *RENDER_TINY, "turntable.frames=1", f"hydra.run.dir={target}"]) == 0
    assert read_metrics(target)["frames"] == 1
    assert (target / "turntable.gif").is_file()
    assert run_dirs(in_tmp, "render") == []


def test_sweeps_get_their_own_folders(in_tmp, monkeypatch):
    """-m (first or last): one folder per sweep, even two in the same second; a job per value."""

    class FrozenClock(datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2030, 1, 2, 3, 4, 5)

    monkeypatch.setattr(cli, "datetime", FrozenClock)
    tiny = [*RENDER_TINY[:-2], "strip.sigma_val=[1e-3]", "strip.gamma_val=[1e-2]", "renderer.image_size=16"]
    assert cli.main(["render", "-m", *tiny, "turntable.frames=1,2"]) == 0
    assert cli.main(["render", *tiny, "turntable.frames=3", "--multirun"]) == 0
    first = in_tmp / "outputs" / "render" / "multirun_2030-01-02_03-04-05"
    second = in_tmp / "outputs" / "render" / "multirun_2030-01-02_03-04-05_1"
    assert sorted(p.name for p in first.iterdir() if p.is_dir()) == ["0", "1"]
    assert [read_metrics(first / j)["frames"] for j in ("0", "1")] == [1, 2]
    assert sorted(p.name for p in second.iterdir() if p.is_dir()) == ["0"]
    assert read_metrics(second / "0")["frames"] == 3


def _interrupt_after(monkeypatch, step: int) -> None:
    """Ctrl-C (a real SIGINT to this process) right after deform's step ``step``."""
    from softras.tasks import deform

    original = deform.Deform.step

    def step_then_sigint(self, k):
        out = original(self, k)
        if k == step:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(deform.Deform, "step", step_then_sigint)


def test_signal_to_the_command_ends_the_run_cleanly(tmp_path):
    """The real thing: `python -m softras.cli deform` in a process of its own, Ctrl-C (SIGINT)
    once its loop runs; it exits 130 with its partial results and a checkpoint saved, and
    says how to resume."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
    env["OMP_NUM_THREADS"] = "1"
    args = ["steps=100000", "target.views=2", "renderer.image_size=16", "checkpoint_every=1", "device=cpu"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "softras.cli", "deform", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while not list(tmp_path.glob("outputs/deform/*/checkpoint.pt")):  # written in the loop
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "the run did not start"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    run = only_run_dir(tmp_path, "deform")
    last = err.rstrip().splitlines()[-1]
    assert last == f"softras deform: interrupted; resume with: softras deform resume={run.relative_to(tmp_path)}"
    assert (run / "INTERRUPTED").is_file()
    m = read_metrics(run)
    assert m["status"] == "interrupted" and 1 <= m["steps_done"] < 100000
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == m["steps_done"]
    assert load_obj(run / "mesh.obj")[0].shape == (1352, 3)
    assert len(gif_frames(run / "progress.gif")) >= 1


def test_interrupt_ends_the_whole_sweep(in_tmp, monkeypatch):
    _interrupt_after(monkeypatch, 1)
    args = ["deform", "-m", "steps=3", "target.views=2", "renderer.image_size=16", "device=cpu", "seed=0,1,2"]
    assert cli.main(args) == 130
    (sweep,) = run_dirs(in_tmp, "deform")
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0"]  # jobs 1 and 2 never started
    m = read_metrics(sweep / "0")
    assert m["status"] == "interrupted" and m["steps_done"] == 2


# ---- presets and YAML files ----------------------------------------------------------------


def test_a_preset_applies_and_the_command_line_wins(in_tmp):
    """config=quick keeps 24 of the 120 views (its target.views), while steps on the command
    line wins over the preset's 200, and target.views on the command line over the preset's."""
    assert cli.main(["deform", "config=quick", "steps=2", "renderer.image_size=16", "device=cpu"]) == 0
    m = read_metrics(only_run_dir(in_tmp, "deform"))
    assert m["steps_done"] == 2 and m["steps"] == 2
    assert m["views"] == 24 and len(m["per_view_hard_iou"]) == 24
    run = in_tmp / "five"
    assert cli.main(["deform", "config=quick", "steps=1", "target.views=5", "renderer.image_size=16",
                     "device=cpu", f"hydra.run.dir={run}"]) == 0  # fmt: skip
    assert read_metrics(run)["views"] == 5


def test_yaml_file_config_and_command_line_wins(in_tmp):
    path = in_tmp / "my.yaml"
    path.write_text("steps: 3\nrenderer:\n  image_size: 24\ntarget:\n  views: 4\nlogger:\n  images_every: 1\n")
    assert cli.main(["deform", f"config={path}", "renderer.image_size=16", "device=cpu"]) == 0
    run = only_run_dir(in_tmp, "deform")
    cfg = read_config(run)
    assert cfg["steps"] == 3 and cfg["target"]["views"] == 4  # the file
    assert cfg["renderer"]["image_size"] == 16  # the command line over the file's 24
    m = read_metrics(run)
    assert m["steps_done"] == 3 and m["views"] == 4
    acc = read_events(run)
    images = acc.Images("prediction_vs_target")
    assert [e.step for e in images] == [0, 1, 2]  # the file's images_every=1
    assert {(e.height, e.width) for e in images} == {(2 * 18 + 2, 4 * 18 + 2)}  # 16 px, not 24


def test_expand_config_arg():
    """config=<preset> becomes the experiment group; a file's values go before the others."""
    assert cli.expand_config_arg("deform", ["steps=1", "config=quick"]) == ["steps=1", "experiment=deform/quick"]
    assert cli.expand_config_arg("render", ["config=spot"]) == ["experiment=render/spot"]


def test_expand_config_arg_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("defaults: [x]\nsteps: 3\nrenderer: {image_size: 24, backend: auto}\nloss: {laplacian: 0.1}\n")
    out = cli.expand_config_arg("deform", ["device=cpu", f"config={path}"])
    assert out == [
        "steps=3",
        "renderer.image_size=24",
        "renderer.backend='auto'",
        "loss.laplacian=0.1",
        "device=cpu",
    ]


# ---- one-line errors ---------------------------------------------------------------------


def _errors():
    """Range and consistency checks of the tasks' values (the catalogue in test_catalogue.py
    runs missing and broken files, types, unknown keys and config files through a process)."""
    return [
        ("deform", ["seed=abc"], ["seed", "'abc'"]),
        ("deform", ["renderer.sigma_val=-1"], ["renderer.sigma_val", "-1"]),
        ("deform", ["renderer.viewing_angle=abc"], ["renderer.viewing_angle", "'abc'"]),
        ("deform", ["renderer.viewing_angle=0"], ["renderer.viewing_angle", "> 0"]),
        ("deform", ["renderer.backend=foo"], ["renderer.backend", "'foo'"]),
        ("deform", ["template.scale=3"], ["template.scale"]),
        ("deform", ["loss.laplacian=abc"], ["loss.laplacian", "'abc'"]),
        ("deform", ["optim.betas=[2,3]"], ["optim.betas"]),
        ("deform", ["optim.lr=0"], ["optim.lr", "> 0"]),
        ("deform", ["scheduler.kind=bogus"], ["scheduler", "'bogus'"]),
        ("deform", ["logger.scalars_every=0"], ["logger.scalars_every", ">= 1"]),
        ("deform", ["checkpoint_every=-1"], ["checkpoint_every", ">= 0"]),
        ("deform", ["target.views=0"], ["target.views", ">= 1"]),
        ("deform", [f"target.mesh={data_file('sphere_642.obj')}", "target.ring.azimuths=0"], ["target.ring.azimuths"]),
        ("deform", [f"template.mesh={data_file('README.md')}"], ["template.mesh", "no faces", "README.md"]),
        ("deform", [f"target.cameras={data_file('README.md')}"], ["target.cameras", "README.md"]),
        ("deform", [f"target.images={data_file('camera.npy')}"], ["target.images", "[120, 3]"]),
        ("render", [f"mesh={data_file('README.md')}"], ["mesh", "no faces", "README.md"]),
        ("render", ["turntable.frames=0"], ["turntable.frames"]),
        ("render", ["turntable.fps=abc"], ["turntable.fps", "'abc'"]),
        ("render", ["turntable.fps=0"], ["turntable.distance, turntable.fps", "> 0"]),
        ("render", ["renderer.gamma_val=0"], ["renderer.gamma_val"]),
        ("render", ["renderer.background_color=[1,1]"], ["renderer.background_color"]),
        ("render", ["texture.res=0"], ["texture.res", ">= 1"]),
        ("render", ["strip.sigma_val=[1e-3]"], ["strip.sigma_val", "strip.gamma_val"]),
        ("render", ["camera.distance=0"], ["camera.distance", "> 0"]),
        ("render", ["camera.up=[0,1]"], ["camera.up", "[x, y, z]"]),
    ]


@pytest.mark.parametrize(
    "sub, args, names", _errors(), ids=[f"{k}-{s}-{a[-1].split('=')[0]}" for k, (s, a, _) in enumerate(_errors())]
)
def test_bad_input_is_one_line_exit_2_and_no_run_folder(capsys, in_tmp, sub, args, names):
    tiny = ["steps=1", "target.views=2", "renderer.image_size=16"] if sub == "deform" else ["renderer.image_size=16"]
    assert cli.main([sub, *tiny, "device=cpu", *args]) == 2
    line = error_line(capsys)
    assert line.startswith(f"softras {sub}: error: "), line
    for name in names:
        assert name in line, (name, line)
    assert not (in_tmp / "outputs").exists()


# ---- deform targets: a mesh, or mask images with cameras ------------------------------------------


def test_deform_target_mesh_honours_target_views(in_tmp):
    """Target (b): a mesh seen from a ring of cameras, of which target.views are kept. A sphere
    of radius 0.5 against the template sphere of radius 0.5: nearly identical from the start."""
    args = [
        f"target.mesh={data_file('sphere_642.obj')}",
        "target.ring.elevations=[0,30]",
        "target.ring.azimuths=4",
        "target.views=3",
        "steps=2",
        "renderer.image_size=32",
        "device=cpu",
    ]
    assert cli.main(["deform", *args]) == 0
    m = read_metrics(only_run_dir(in_tmp, "deform"))
    assert m["status"] == "completed" and m["steps_done"] == 2
    assert m["views"] == 3 and len(m["per_view_hard_iou"]) == 3  # 3 of the ring's 2 x 4
    assert m["initial_mean_hard_iou"] > 0.9 and m["mean_hard_iou"] > 0.9


def _disc_masks(folder: Path, count: int, size: int = 32, radius: float = 11.0) -> None:
    """Discs of the template sphere's size as seen by the default camera (distance 2.732,
    15 degrees): 0.5 / (2.732 tan 15) * 16 px = 10.9 px."""
    folder.mkdir()
    yy, xx = np.mgrid[:size, :size] + 0.5
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= radius**2).astype(np.uint8) * 255
    for k in range(count):
        imageio.imwrite(folder / f"view_{k:02d}.png", disc)


def test_deform_target_masks_and_cameras(in_tmp):
    _disc_masks(in_tmp / "masks", 4)
    cams = np.array([[2.732, 0, 0], [2.732, 0, -90], [2.732, 0, -180], [2.732, 30, -270]])
    np.save(in_tmp / "cams.npy", cams)
    args = ["target.masks=masks", "target.cameras=cams.npy", "steps=2", "renderer.image_size=32", "device=cpu"]
    assert cli.main(["deform", *args]) == 0
    m = read_metrics(only_run_dir(in_tmp, "deform"))
    assert m["status"] == "completed" and m["steps_done"] == 2
    assert m["views"] == 4 and len(m["per_view_hard_iou"]) == 4
    assert m["mean_hard_iou"] > 0.85  # the discs are the sphere's silhouette


def test_deform_mask_camera_count_mismatch(capsys, in_tmp):
    _disc_masks(in_tmp / "masks", 3)
    np.save(in_tmp / "cams.npy", np.array([[2.732, 0, 0], [2.732, 0, -90], [2.732, 0, -180], [2.732, 0, -270]]))
    args = ["target.masks=masks", "target.cameras=cams.npy", "steps=2", "renderer.image_size=32", "device=cpu"]
    assert cli.main(["deform", *args]) == 2
    line = error_line(capsys)
    assert line.startswith("softras deform: error: target.masks: 3 images")
    assert "4 cameras" in line and "cams.npy" in line
    assert not (in_tmp / "outputs").exists()
