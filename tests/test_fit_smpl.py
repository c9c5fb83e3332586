"""softras fit-smpl: the hidden hand of the preset, convergence of a short fit, exact resume,
SMPL+H through the same command, and one clear line per bad input.

Every run goes through the real command (``softras.cli.main``) in a temporary folder. The
checks of the target and of the errors are recomputed here from the ground-truth parameters
that the run writes into metrics.json, with the rasterizer's fragments and smplx directly.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
from pathlib import Path
from types import SimpleNamespace

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing import event_accumulator

from softras import cli
from softras.body import load_body_model, part_of_vertices, synthetic_model_path
from softras.body.fitting import body_pose_from_euler
from softras.functional.cameras import face_vertices, get_points_from_angles, look_at, perspective
from softras.functional.rasterize import soft_rasterize_packed
from softras.functional.rotations import euler_to_matrix, rotvec_to_matrix
from softras.functional.settings import RasterSettings
from softras.tasks import fit_smpl

SMALL = ["device=cpu", "renderer.image_size=32", "logger.scalars_every=1", "logger.images_every=3",
         "logger.gif_every=2", "logger.mesh_every=5"]  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    acc = event_accumulator.EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def body_output(model, params: dict):
    p = {k: torch.tensor(v, dtype=torch.float32)[None] for k, v in params.items()}
    with torch.no_grad():
        return model(**p)


def body_vertices(model, params: dict) -> torch.Tensor:
    p = {k: torch.tensor(v, dtype=torch.float32)[None] for k, v in params.items()}
    with torch.no_grad():
        return model(**p).vertices[0]


def test_euler_pose_is_the_stated_rotation():
    pose = body_pose_from_euler({"r_elbow": [0, -90, 0]})
    R = rotvec_to_matrix(pose.reshape(23, 3)[18].double())
    # hand-computed: a rotation by -90 degrees about y takes x to +z and z to -x
    expected = torch.tensor([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]], dtype=torch.float64)
    assert torch.allclose(R, expected, atol=1e-6)
    assert torch.allclose(euler_to_matrix([0, -90, 0]), expected, atol=1e-12)
    assert float(pose.abs().sum() - pose.reshape(23, 3)[18].abs().sum()) == 0  # every other joint at rest


def test_the_preset_hides_the_whole_right_hand_in_a_hard_render(tmp_path):
    run = tmp_path / "run"
    assert cli.main(["fit-smpl", "steps=0", "device=cpu", f"hydra.run.dir={run}"]) == 0
    m = metrics(run)
    model = load_body_model(None, use_pca=False)
    v = body_vertices(model, m["truth"])
    faces = model.faces_tensor.long()
    hand_faces = part_of_vertices(model.lbs_weights, (21, 23))[faces].any(dim=1)
    # the input view as configs/fit-smpl.yaml states it, projected here from its numbers
    at = torch.tensor([0.0, -0.3, 0.0])
    eye = get_points_from_angles(3.0, 10.0, 180.0) + at
    settings = RasterSettings(image_size=64, dist_func="hard", aggr_func_rgb="hard", aggr_func_alpha="hard")
    fv = face_vertices(perspective(look_at(v[None], eye, at=at), 20.0, (64, 64)), faces[None])[0]
    tex = torch.ones(faces.shape[0], 1, 3)
    _, frags = soft_rasterize_packed(fv, tex, torch.tensor([0]), settings, return_fragments=True)
    covered = frags.face_index[frags.face_index >= 0]
    assert covered.numel() > 300  # the body is in view
    assert int(hand_faces[covered].sum()) == 0  # no pixel's nearest face is a hand face
    assert m["hand_hidden_fraction"] == 1.0
    # and the hand is there to be hidden: from the side (azimuth 90) some of its faces are nearest
    eye = get_points_from_angles(3.0, 10.0, 90.0) + at
    fv = face_vertices(perspective(look_at(v[None], eye, at=at), 20.0, (64, 64)), faces[None])[0]
    _, frags = soft_rasterize_packed(fv, tex, torch.tensor([0]), settings, return_fragments=True)
    assert int(hand_faces[frags.face_index[frags.face_index >= 0]].sum()) > 0


def test_pelvis_aligned_errors_ignore_a_shift_of_the_whole_body():
    model = load_body_model(None, use_pca=False)
    pose = body_pose_from_euler({"r_shoulder": [0, 0, 60], "l_knee": [30, 0, 0]})[None]
    truth = model(body_pose=pose)
    hand = part_of_vertices(model.lbs_weights, (21, 23))
    shift = torch.tensor([[0.03, -0.04, 0.12]])  # |shift| = 0.13
    moved = model(body_pose=pose, transl=shift)
    err = fit_smpl._errors(moved, truth, hand, 24, [21, 23], 2.0)
    for name in ("vertex_err", "hand_vertex_err", "joint_err", "hand_joint_err"):
        assert err[name] == pytest.approx(0.13, rel=1e-5)
        assert err[f"{name}_frac"] == pytest.approx(0.065, rel=1e-5)
        assert err[f"{name}_aligned"] == pytest.approx(0.0, abs=1e-6)
    # a bent elbow leaves the pelvis where it was: aligned and plain errors agree, and are not 0
    bent = model(
        body_pose=body_pose_from_euler({"r_shoulder": [0, 0, 60], "l_knee": [30, 0, 0], "r_elbow": [0, 40, 0]})[None]
    )
    err = fit_smpl._errors(bent, truth, hand, 24, [21, 23], 2.0)
    assert err["hand_vertex_err"] > 0.05
    assert err["hand_vertex_err_aligned"] == pytest.approx(err["hand_vertex_err"], rel=1e-5)


def _rotvec_matrix(r: np.ndarray) -> np.ndarray:  # Rodrigues
    angle = np.linalg.norm(r)
    if angle < 1e-12:
        return np.eye(3)
    k = r / angle
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def _matrix_rotvec(R: np.ndarray) -> np.ndarray:  # the log map, for angles below 180 degrees
    angle = np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))
    if angle < 1e-12:
        return np.zeros(3)
    w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / (2 * np.sin(angle))
    return w * angle


def test_truth_sensitivity_turns_each_joint_and_measures_the_hand_and_the_loss(tmp_path):
    run = tmp_path / "run"
    args = ["fit-smpl", *SMALL, "steps=1", "restarts=1", "compare_hard=false", "sensitivity_deg=15",
            "sensitivity_joints=[r_elbow]", f"hydra.run.dir={run}"]  # fmt: skip
    assert cli.main(args) == 0
    m = metrics(run)
    sens = m["truth_sensitivity"]
    # the truth rendered hard is the target itself
    assert sens["truth_loss"]["hard"] == pytest.approx(0.0, abs=1e-6)
    assert sens["truth_loss"]["soft"] > 0  # the soft silhouette's sub-pixel tail
    turns = sens["turns"]
    assert [(t["axis"], t["degrees"]) for t in turns] == [(a, d) for a in "xyz" for d in (-15.0, 15.0)]
    model = load_body_model(None, use_pca=False)
    hand = part_of_vertices(model.lbs_weights, (21, 23))
    truth = body_vertices(model, m["truth"])
    for t in turns:
        # the elbow's rotation turned by the stated angle about the stated axis of its parent's frame
        pose = np.array(m["truth"]["body_pose"]).reshape(-1, 3)
        axis = np.eye(3)["xyz".index(t["axis"])]
        turned = _rotvec_matrix(np.radians(t["degrees"]) * axis) @ _rotvec_matrix(pose[18])
        pose[18] = _matrix_rotvec(turned)
        moved = body_vertices(model, {**m["truth"], "body_pose": pose.reshape(-1).tolist()})
        expected = float((moved - truth)[hand].norm(dim=-1).mean()) / m["body_height"]
        assert t["hand_moved_frac"] == pytest.approx(expected, rel=1e-3)
        assert t["hand_moved_frac"] > 0.005  # a 15-degree turn of the elbow moves the hand
    assert m["image_loss"]["hard"] > 0 and "image_loss_hard" not in m


def test_a_short_fit_converges_toward_the_target(tmp_path):
    # the right arm 45 degrees down (visible), a 48x48 image, 40 steps from sigma 1e-2
    run = tmp_path / "run"
    args = ["fit-smpl", *SMALL, "renderer.image_size=48", "steps=40", "compare_hard=false",
            "target.pose.r_shoulder=[0,0,45]", "target.pose.r_elbow=[0,0,0]", "blur.sigma_val=[1e-2,1e-5]",
            f"hydra.run.dir={run}"]  # fmt: skip
    assert cli.main(args) == 0
    m = metrics(run)
    model = load_body_model(None, use_pca=False)
    hand = part_of_vertices(model.lbs_weights, (21, 23))
    truth = body_vertices(model, m["truth"])
    rest = body_vertices(model, {k: [0.0] * len(v) for k, v in m["truth"].items()})
    fitted = body_vertices(model, m["params"])
    initial = float((rest - truth)[hand].norm(dim=-1).mean())
    final = float((fitted - truth)[hand].norm(dim=-1).mean())
    assert final == pytest.approx(m["hand_vertex_err"], rel=1e-4)  # the metric is the mean hand vertex distance
    assert final < initial / 1.5, (initial, final)  # the hand's error falls by at least 1.5x in 40 steps
    assert (run / "body.obj").is_file() and (run / "fit.gif").is_file() and (run / "final.png").is_file()
    assert len(scalars(run, "error_soft/vertex_err")) == 40
    acc = event_accumulator.EventAccumulator(str(run / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"sigma", "gamma", "loss_soft/silhouette", "loss_soft/rgb", "loss_soft/pose_prior"} <= tags


@pytest.mark.parametrize("rgb_error", ["l1", "l2"])
def test_the_rgb_term_is_the_mean_absolute_or_squared_difference(tmp_path, rgb_error):
    run = tmp_path / "run"
    args = ["fit-smpl", *SMALL, "steps=1", "restarts=1", "compare_hard=false", "sensitivity_deg=0",
            f"loss.rgb_error={rgb_error}", "loss.rgb_average=pixels", "loss.rgb=3",
            f"hydra.run.dir={run}"]  # fmt: skip
    assert cli.main(args) == 0
    cfg = OmegaConf.load(run / "config.yaml")
    task = fit_smpl.FitSmpl(cfg, SimpleNamespace(device=torch.device("cpu"), is_main=True))
    # step 0 renders hypothesis 0, the rest pose, at the first sigma and gamma
    rest = body_vertices(task.body, {k: [0.0] * len(v) for k, v in metrics(run)["truth"].items()})
    settings = task._settings("soft", *task.blur(0, 1))
    diff = (task.render(rest, settings)[0, :3] - task.target[0, :3]).double()
    expected = diff.abs().mean() if rgb_error == "l1" else diff.pow(2).mean()
    assert scalars(run, "loss_soft/rgb")[0][1] == pytest.approx(float(expected), rel=1e-4)
    # the weighted total: 1 - soft IoU + 3 x that + the priors (zero at the rest pose) + the known height's term
    total = scalars(run, "loss_soft/silhouette")[0][1] + 3 * float(expected) + _rest_height_term(task.body, run)
    assert scalars(run, "loss_soft/total")[0][1] == pytest.approx(total, rel=1e-4)


def test_the_part_averaged_rgb_term_counts_every_part_alike(tmp_path):
    # loss.rgb_average=parts: for each body part, the mean absolute RGB error over the pixels
    # where the target or the fit shows it; then the mean over the parts seen in either
    run = tmp_path / "run"
    args = ["fit-smpl", *SMALL, "steps=1", "restarts=1", "compare_hard=false", "sensitivity_deg=0",
            "loss.rgb_average=parts", "loss.rgb=3", f"hydra.run.dir={run}"]  # fmt: skip
    assert cli.main(args) == 0
    m = metrics(run)
    cfg = OmegaConf.load(run / "config.yaml")
    task = fit_smpl.FitSmpl(cfg, SimpleNamespace(device=torch.device("cpu"), is_main=True))
    weights, faces = task.body.lbs_weights, task.body.faces_tensor.long()
    part = torch.tensor([int(np.argmax(weights[f].sum(0).numpy())) for f in faces])  # face -> joint
    truth = body_vertices(task.body, m["truth"])
    rest = body_vertices(task.body, {k: [0.0] * len(v) for k, v in m["truth"].items()})
    target, target_frags = task.render(truth, task._hard_settings(*task.blur.final), return_fragments=True)
    rgba, frags = task.render(rest, task._settings("soft", *task.blur(0, 1)), return_fragments=True)
    error = (rgba[0, :3] - target[0, :3]).abs().mean(0).double()
    labels = [torch.where(f.face_index[0] >= 0, part[f.face_index[0].clamp(min=0)], -1) for f in (target_frags, frags)]
    means = []
    for p in range(weights.shape[1]):
        where = (labels[0] == p) | (labels[1] == p)
        if where.any():
            means.append(float(error[where].mean()))
    assert 10 <= len(means) <= weights.shape[1]  # most of the 24 parts are seen
    expected = sum(means) / len(means)
    assert expected > 2 * float(error.mean())  # the body's pixels are a fraction of the image
    assert scalars(run, "loss_soft/rgb")[0][1] == pytest.approx(expected, rel=1e-4)
    total = scalars(run, "loss_soft/silhouette")[0][1] + 3 * expected + _rest_height_term(task.body, run)
    assert scalars(run, "loss_soft/total")[0][1] == pytest.approx(total, rel=1e-4)


def _terms_at(run: Path, name: str, value: torch.Tensor):
    """The run's task rebuilt from its config.yaml, and the soft fit's loss terms (unweighted, at
    the last sigma and gamma) with hypothesis 0's parameter ``name`` set to ``value``."""
    cfg = OmegaConf.load(run / "config.yaml")
    task = fit_smpl.FitSmpl(cfg, SimpleNamespace(device=torch.device("cpu"), is_main=True))
    fit = task.fits["soft"]
    with torch.no_grad():
        fit.params[name][0] = value
    return task, task._terms(fit, 0, task._settings("soft", *task.blur.final))[1]


def test_the_pose_prior_weighs_each_joint_by_its_multiplier(tmp_path):
    # loss.pose_prior_joints: joint name -> multiplier; the keys of the default file are set, one
    # more is added with '+'; every other joint counts once
    run = tmp_path / "run"
    multipliers = {"l_wrist": 2.0, "r_wrist": 50.0, "l_hand": 3.0, "r_hand": 0.0, "spine1": 7.0}
    args = ["fit-smpl", *SMALL, "steps=1", "restarts=1", "compare_hard=false", "sensitivity_deg=0",
            *(f"loss.pose_prior_joints.{k}={v}" for k, v in multipliers.items() if k != "spine1"),
            "+loss.pose_prior_joints.spine1=7", "loss.pose_prior=0.5", f"hydra.run.dir={run}"]  # fmt: skip
    assert cli.main(args) == 0
    pose = torch.randn(69, generator=torch.Generator().manual_seed(3)) * 0.4
    task, terms = _terms_at(run, "body_pose", pose)
    names = ["l_hip", "r_hip", "spine1", "l_knee", "r_knee", "spine2", "l_ankle", "r_ankle", "spine3", "l_foot",
             "r_foot", "neck", "l_collar", "r_collar", "head", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow",
             "l_wrist", "r_wrist", "l_hand", "r_hand"]  # fmt: skip
    expected = sum(multipliers.get(n, 1.0) * float((pose[3 * j : 3 * j + 3] ** 2).sum()) for j, n in enumerate(names))
    prior = terms["pose_prior"].detach()
    assert float(prior) == pytest.approx(expected / 69, rel=1e-5)
    assert float(task._weighted({"pose_prior": prior})) == pytest.approx(0.5 * expected / 69, rel=1e-5)


def _standing_height(model, betas) -> float:
    """The reference: smplx's full forward pass at zero pose, the extent of its vertices along y."""
    rest = body_vertices(model, {"betas": list(betas), "body_pose": [0.0] * 69, "global_orient": [0.0] * 3})
    return float(rest[:, 1].max() - rest[:, 1].min())


def _rest_height_term(model, run: Path) -> float:
    """The height term of the rest pose (zero betas) against the truth's standing height."""
    known = _standing_height(model, metrics(run)["truth"]["betas"])
    return ((_standing_height(model, [0.0] * 10) - known) / known) ** 2


def test_a_known_height_is_the_truths_standing_height_and_its_term_the_squared_relative_error(tmp_path):
    # target.height=truth (the default): the synthetic truth's height in the rest pose, given to both fits
    run = tmp_path / "run"
    args = ["fit-smpl", *SMALL, "steps=1", "restarts=1", "sensitivity_deg=0", "loss.height=2.5",
            f"hydra.run.dir={run}"]  # fmt: skip
    assert cli.main(args) == 0
    m = metrics(run)
    model = load_body_model(None, use_pca=False)
    known = _standing_height(model, m["truth"]["betas"])
    assert m["known_height"] == pytest.approx(known, rel=1e-5)
    assert m["standing_height"] == pytest.approx(_standing_height(model, m["params"]["betas"]), rel=1e-5)
    # the rest pose at zero betas: the first step's term
    zero = _standing_height(model, [0.0] * 10)
    for name in ("soft", "hard"):
        assert scalars(run, f"loss_{name}/height")[0][1] == pytest.approx(((zero - known) / known) ** 2, rel=1e-4)
    betas = torch.randn(10, generator=torch.Generator().manual_seed(5)) * 0.8
    task, terms = _terms_at(run, "betas", betas)
    expected = ((_standing_height(model, betas.tolist()) - known) / known) ** 2
    assert expected > 1e-4  # the random betas change the height
    assert float(terms["height"].detach()) == pytest.approx(expected, rel=1e-4)
    assert float(task._weighted({"height": terms["height"].detach()})) == pytest.approx(2.5 * expected, rel=1e-4)


def test_without_a_known_height_there_is_no_height_term(tmp_path):
    run = tmp_path / "run"
    args = ["fit-smpl", *SMALL, "steps=1", "restarts=1", "compare_hard=false", "sensitivity_deg=0",
            "target.height=null", f"hydra.run.dir={run}"]  # fmt: skip
    assert cli.main(args) == 0
    assert metrics(run)["known_height"] is None
    acc = event_accumulator.EventAccumulator(str(run / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert "loss_soft/betas_prior" in tags and "loss_soft/height" not in tags


@pytest.mark.slow
def test_the_default_run_beats_the_hard_baseline_on_the_hidden_hand(tmp_path):
    run = tmp_path / "run"
    assert cli.main(["fit-smpl", "device=cpu", f"hydra.run.dir={run}"]) == 0
    m = metrics(run)
    assert m["hand_hidden_fraction"] == 1.0
    assert m["hand_vertex_err"] * 3 < m["hand_vertex_err_hard"]
    assert m["vertex_err"] < m["vertex_err_hard"]


def test_interrupt_then_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    args = ["fit-smpl", *SMALL, "steps=6", "renderer.image_size=24", "checkpoint_every=2", "restarts=2"]
    straight = tmp_path / "straight"
    assert cli.main([*args, f"hydra.run.dir={straight}"]) == 0

    original = fit_smpl.FitSmpl.step

    def step(self, k):
        out = original(self, k)
        if k == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    cut = tmp_path / "cut"
    with monkeypatch.context() as mp:
        mp.setattr(fit_smpl.FitSmpl, "step", step)
        assert cli.main([*args, f"hydra.run.dir={cut}"]) == 130
    assert metrics(cut)["status"] == "interrupted" and metrics(cut)["steps_done"] == 3
    assert cli.main(["fit-smpl", f"resume={cut}"]) == 0
    a, b = metrics(cut), metrics(straight)
    for key in ("params", "params_hard"):
        for name in fit_smpl.PARAMS:
            assert torch.equal(torch.tensor(a[key][name]), torch.tensor(b[key][name])), (key, name)
    for tag in ("loss_soft/total", "loss_hard/total", "error_soft/hand_vertex_err"):
        assert scalars(cut, tag) == scalars(straight, tag)
    assert a["hypothesis"] == b["hypothesis"] and a["hypothesis_hard"] == b["hypothesis_hard"]


def test_restarts_are_independent_hypotheses_and_the_lowest_final_loss_wins(tmp_path):
    args = ["fit-smpl", *SMALL, "steps=8", "renderer.image_size=24", "restart_std_deg=25"]
    one, three = tmp_path / "one", tmp_path / "three"
    assert cli.main([*args, "restarts=1", f"hydra.run.dir={one}"]) == 0
    assert cli.main([*args, "restarts=3", f"hydra.run.dir={three}"]) == 0
    a, b = metrics(one), metrics(three)
    for suffix in ("", "_hard"):
        losses = b[f"hypothesis{suffix}"]["final_losses"]
        assert len(losses) == 3 and len(set(losses)) == 3  # three different starts, three different ends
        # hypothesis 0 starts from the rest pose and is fitted exactly as a run without restarts
        assert losses[0] == a[f"hypothesis{suffix}"]["final_losses"][0]
        assert b[f"hypothesis{suffix}"]["chosen"] == int(np.argmin(losses))
        assert b[f"hypothesis{suffix}"]["params"][0] == a[f"params{suffix}"]
        assert b[f"params{suffix}"] == b[f"hypothesis{suffix}"]["params"][int(np.argmin(losses))]
    # every hypothesis' errors, recomputed with smplx from its parameters and the truth's: as they
    # are, and pelvis-aligned (both bodies moved so that their pelvis joints meet)
    model = load_body_model(None, use_pca=False)
    hand = part_of_vertices(model.lbs_weights, (21, 23))
    truth = body_output(model, b["truth"])
    for suffix in ("", "_hard"):
        errors = b[f"hypothesis{suffix}"]["errors"]
        for params, err in zip(b[f"hypothesis{suffix}"]["params"], errors, strict=True):
            fitted = body_output(model, params)
            dv = fitted.vertices[0] - truth.vertices[0]
            assert err["hand_vertex_err"] == pytest.approx(float(dv[hand].norm(dim=-1).mean()), rel=1e-4)
            shift = fitted.joints[0, 0] - truth.joints[0, 0]
            aligned = (dv - shift).norm(dim=-1)
            assert err["vertex_err_aligned"] == pytest.approx(float(aligned.mean()), rel=1e-4)
            assert err["hand_vertex_err_aligned"] == pytest.approx(float(aligned[hand].mean()), rel=1e-4)
        chosen = errors[b[f"hypothesis{suffix}"]["chosen"]]
        assert all(b[f"{k}{suffix}"] == v for k, v in chosen.items())
    # the starts: the rest pose, then random joint rotations of the stated spread, the same for both fits
    start = tmp_path / "start"
    assert cli.main([*args, "restarts=3", "steps=0", f"hydra.run.dir={start}"]) == 0
    s = metrics(start)
    assert s["hypothesis"]["params"] == s["hypothesis_hard"]["params"]
    assert all(x == 0 for values in s["hypothesis"]["params"][0].values() for x in values)
    for h in s["hypothesis"]["params"][1:]:
        spread = float(np.degrees(np.std(h["body_pose"])))
        assert 25 * 0.7 < spread < 25 * 1.3, spread  # 69 draws of N(0, 25 degrees)
        assert all(x == 0 for k in ("global_orient", "transl", "betas") for x in h[k])


def test_smplh_fits_with_the_same_command(tmp_path):
    run = tmp_path / "run"
    assert cli.main(["fit-smpl", *SMALL, "steps=3", "body.type=smplh", f"hydra.run.dir={run}"]) == 0
    m = metrics(run)
    assert m["status"] == "completed" and m["body_type"] == "smplh"
    assert len(m["params"]["body_pose"]) == 63  # 21 body joints; the hands apart
    assert m["hand_hidden_fraction"] == 1.0
    assert len(scalars(run, "loss_soft/total")) == 3


# ---- bad inputs: one line each ------------------------------------------------------------------


def _one_line(capsys, args: list[str], run: Path) -> str:
    code = cli.main(["fit-smpl", "device=cpu", "steps=1", f"hydra.run.dir={run}", *args])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert not run.exists()
    return lines[0]


def test_missing_model_file(tmp_path, capsys):
    line = _one_line(capsys, [f"body.model_path={tmp_path / 'SMPL_NEUTRAL.pkl'}"], tmp_path / "run")
    assert "body.model_path: no such file or folder" in line and "SMPL_NEUTRAL.pkl" in line


def test_a_file_that_is_not_a_body_model(tmp_path, capsys):
    bad = tmp_path / "model.pkl"
    bad.write_text("this is not a pickle\n")
    line = _one_line(capsys, [f"body.model_path={bad}"], tmp_path / "run")
    assert "body.model_path:" in line and "is not a body model file" in line and str(bad) in line
    other = tmp_path / "dict.pkl"
    other.write_bytes(pickle.dumps({"v_template": np.zeros((3, 3))}))
    line = _one_line(capsys, [f"body.model_path={other}"], tmp_path / "run")
    assert "is not a smpl body model: missing keys" in line


@pytest.mark.parametrize(
    ("override", "expected"),
    [("body.gender=female", "no smpl model for gender 'female'"), ("body.type=smplx", "no smplx model for gender")],
)
def test_a_gender_or_type_missing_from_the_folder(tmp_path, capsys, override, expected):
    folder = tmp_path / "models"
    (folder / "smpl").mkdir(parents=True)
    shutil.copy(synthetic_model_path("smpl"), folder / "smpl" / "SMPL_NEUTRAL.pkl")
    line = _one_line(capsys, [f"body.model_path={folder}", override], tmp_path / "run")
    assert line.startswith("softras fit-smpl: error: body.model_path:") and expected in line
    assert "found: smpl/neutral" in line


def _user_files(tmp_path: Path, mask_size: int = 32, camera=None) -> list[str]:
    img = np.zeros((32, 32, 3), np.uint8)
    img[8:24, 12:20] = 200
    imageio.imwrite(tmp_path / "image.png", img)
    mask = np.zeros((mask_size, mask_size), np.uint8)
    mask[8:24, 12:20] = 255
    imageio.imwrite(tmp_path / "mask.png", mask)
    np.save(tmp_path / "camera.npy", np.array([3.0, 10.0, 180.0]) if camera is None else camera)
    return [f"target.image={tmp_path / 'image.png'}", f"target.mask={tmp_path / 'mask.png'}",
            f"target.camera={tmp_path / 'camera.npy'}"]  # fmt: skip


def test_a_mask_of_another_size(tmp_path, capsys):
    line = _one_line(capsys, _user_files(tmp_path, mask_size=30), tmp_path / "run")
    assert line.endswith("target.mask: expected the size of target.image (32x32), got 30x30")


def test_a_camera_file_of_the_wrong_shape(tmp_path, capsys):
    line = _one_line(capsys, _user_files(tmp_path, camera=np.zeros((2, 2))), tmp_path / "run")
    assert "target.camera: expected 3 numbers (distance, elevation, azimuth) or a 3x4 matrix" in line
    assert line.endswith("got shape [2, 2]")


def test_a_user_image_with_a_pinhole_camera_runs(tmp_path):
    # K with f = 64 px and the centre at (16, 16) of the 32x32 image; the camera 3 m in front of the body
    K = np.array([[64.0, 0, 16], [0, 64, 16], [0, 0, 1]])
    Rt = np.array([[-1.0, 0, 0, 0], [0, -1, 0, -0.3], [0, 0, -1, 3]])
    run = tmp_path / "run"
    args = ["fit-smpl", *SMALL, "steps=2", *_user_files(tmp_path, camera=K @ Rt), f"hydra.run.dir={run}"]
    assert cli.main(args) == 0
    m = metrics(run)
    assert m["status"] == "completed" and "vertex_err" not in m  # no ground truth to measure against
    assert len(scalars(run, "loss_soft/silhouette")) == 2
    assert m["known_height"] is None  # target.height=truth: a user's image has no truth


def test_a_user_image_with_a_measured_height(tmp_path):
    run = tmp_path / "run"
    args = ["fit-smpl", *SMALL, "steps=1", "restarts=1", "compare_hard=false", "target.height=1.9",
            *_user_files(tmp_path), f"hydra.run.dir={run}"]  # fmt: skip
    assert cli.main(args) == 0
    assert metrics(run)["known_height"] == 1.9
    zero = _standing_height(load_body_model(None, use_pca=False), [0.0] * 10)
    assert scalars(run, "loss_soft/height")[0][1] == pytest.approx(((zero - 1.9) / 1.9) ** 2, rel=1e-4)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("restarts=0", "restarts: expected an integer >= 1, got 0"),
        ("restart_std_deg=-5", "restart_std_deg: expected a number >= 0, got -5"),
        ("pose_after=1.5", "pose_after: expected a fraction of the steps in [0, 1), got 1.5"),
        ("sensitivity_deg=-1", "sensitivity_deg: expected degrees in [0, 180], got -1"),
        ("sensitivity_joints=[nose]", "sensitivity_joints: expected names of body joints (l_hip, "),
        ("loss.rgb_error=l3", "loss.rgb_error: expected l1 or l2, got 'l3'"),
        ("loss.rgb_average=faces", "loss.rgb_average: expected pixels or parts, got 'faces'"),
        ("+loss.pose_prior_joints.nose=5", "loss.pose_prior_joints: expected names of body joints (l_hip, "),
        ("loss.pose_prior_joints.r_wrist=-1", "loss.pose_prior_joints.r_wrist: expected a multiplier >= 0, got -1"),
        ("target.height=-1.7", "target.height: expected a height > 0 in the model's units, truth or null, got -1.7"),
        ("target.height=tall", "target.height: expected a height > 0 in the model's units, truth or null, got 'tall'"),
    ],
)
def test_bad_fit_settings(tmp_path, capsys, override, expected):
    assert expected in _one_line(capsys, [override], tmp_path / "run")
