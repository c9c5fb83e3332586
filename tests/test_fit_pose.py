"""softras fit-pose: the 6D rotation representation, the blur schedules, the occluded cube
scene, a single fit converging from a 30 degree error, trial mode's metrics and a user image
target. Fits run on small images with few steps, on CPU.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing import event_accumulator

from softras import cli
from softras.config import compose
from softras.tasks import fit_pose as fp

# a small, quick single fit: 48 px, 200 steps
SMALL = ["renderer.image_size=48", "steps=200", "logger.images_every=50", "logger.gif_every=20", "device=cpu"]


def random_rotations(n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(n, 4, generator=gen, dtype=torch.float64), dim=-1)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(n, 3, 3)  # fmt: skip


def tb_tags(run_dir: Path) -> tuple[set[str], set[str]]:
    acc = event_accumulator.EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    return set(tags["scalars"]), set(tags["images"])


# ---- rotations ----------------------------------------------------------------------------------


def test_6d_round_trips():
    R = random_rotations(200)
    d6 = fp.matrix_to_rotation_6d(R)
    assert d6.shape == (200, 6)
    torch.testing.assert_close(fp.rotation_6d_to_matrix(d6), R, atol=1e-12, rtol=0)
    # any 6-vector (two independent 3-vectors) gives a proper rotation, whose 6D gives it back
    x = torch.randn(100, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    Rx = fp.rotation_6d_to_matrix(x)
    eye = torch.eye(3, dtype=torch.float64).expand(100, 3, 3)
    torch.testing.assert_close(Rx @ Rx.transpose(1, 2), eye, atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(Rx), torch.ones(100, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(fp.rotation_6d_to_matrix(fp.matrix_to_rotation_6d(Rx)), Rx, atol=1e-12, rtol=0)
    # scaling a column, or adding the first column to the second, changes nothing (Gram-Schmidt)
    y = torch.cat([x[:, :3] * 2.5, x[:, 3:] + 0.7 * x[:, :3]], dim=-1)
    torch.testing.assert_close(fp.rotation_6d_to_matrix(y), Rx, atol=1e-10, rtol=0)
    # and its gradient exists everywhere we go (no singularity at 180 degrees, unlike axis-angle)
    flip = fp.matrix_to_rotation_6d(fp.axis_angle_to_matrix(torch.tensor([0.0, 0, 1]), torch.tensor(math.pi)))
    flip.requires_grad_(True)
    fp.rotation_6d_to_matrix(flip).sum().backward()
    assert torch.isfinite(flip.grad).all()


def test_rotation_error_is_the_geodesic_angle():
    R = random_rotations(50, seed=3)
    axes = torch.randn(50, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    angles = torch.tensor([0.0, 1e-4, 0.01, 1.0, 4.99, 5.01, 30, 90, 135, 179.9] * 5, dtype=torch.float64)
    R2 = fp.axis_angle_to_matrix(axes, torch.deg2rad(angles)) @ R
    err = fp.rotation_error_deg(R2, R)
    torch.testing.assert_close(err, angles, atol=1e-6, rtol=0)
    torch.testing.assert_close(fp.rotation_error_deg(R, R2), angles, atol=1e-6, rtol=0)  # symmetric
    # the Euler convention: R = Rz Ry Rx
    Rx = fp.euler_to_matrix([90, 0, 0])
    torch.testing.assert_close(Rx @ torch.tensor([0.0, 1, 0], dtype=torch.float64), torch.tensor([0.0, 0, 1]).double())
    R = fp.euler_to_matrix([10, 20, 30])
    torch.testing.assert_close(
        R, fp.euler_to_matrix([0, 0, 30]) @ fp.euler_to_matrix([0, 20, 0]) @ fp.euler_to_matrix([10, 0, 0])
    )


def test_random_initial_poses_are_at_their_stated_distance():
    R_gt, t_gt = fp.euler_to_matrix([-30, 40, 0]), torch.tensor([0.1, 0.0, -0.1], dtype=torch.float64)
    R0, t0, angle = fp.random_initial_poses(500, R_gt, t_gt, 90.0, 0.1, seed=0)
    torch.testing.assert_close(fp.rotation_error_deg(R0, R_gt), angle, atol=1e-6, rtol=0)
    assert float(angle.min()) >= 0 and float(angle.max()) <= 90 and float(angle.max()) > 85
    d = (t0 - t_gt).norm(dim=-1)
    assert float(d.max()) <= 0.1 + 1e-12 and float(d.max()) > 0.09
    # the same seed gives the same trials
    R1, t1, _ = fp.random_initial_poses(500, R_gt, t_gt, 90.0, 0.1, seed=0)
    assert torch.equal(R0, R1) and torch.equal(t0, t1)


# ---- schedules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, p, expected",
    [
        ("constant", 0.0, 1e-5),
        ("constant", 0.5, 1e-5),
        ("constant", 1.0, 1e-5),
        ("linear", 0.0, 1e-2),
        ("linear", 0.5, (1e-2 + 1e-5) / 2),
        ("linear", 1.0, 1e-5),
        ("log-linear", 0.0, 1e-2),
        ("log-linear", 1 / 3, 1e-3),
        ("log-linear", 0.5, math.sqrt(1e-2 * 1e-5)),
        ("log-linear", 2 / 3, 1e-4),
        ("log-linear", 1.0, 1e-5),
        ("step", 0.0, 1e-2),  # 4 plateaus: 1e-2, 1e-3, 1e-4, 1e-5
        ("step", 0.24, 1e-2),
        ("step", 0.26, 1e-3),
        ("step", 0.6, 1e-4),
        ("step", 0.8, 1e-5),
        ("step", 1.0, 1e-5),
        ("linear", -1.0, 1e-2),  # clamped to [0, 1]
        ("log-linear", 2.0, 1e-5),
    ],
)
def test_schedule_values(kind, p, expected):
    assert fp.schedule_value(kind, 1e-2, 1e-5, p, levels=4) == pytest.approx(expected, rel=1e-9)


def test_blur_schedule_window_and_defaults():
    cfg = compose("fit-pose")
    s = fp._schedule(cfg.schedule)
    # the defaults of section 6: sigma 1e-2 / gamma 1e-1 to sigma 1e-5 / gamma 1e-4, log-linear
    assert s.kind == "log-linear" and s.sigma == (1e-2, 1e-5) and s.gamma == (1e-1, 1e-4)
    assert s(0, 100) == pytest.approx((1e-2, 1e-1))
    assert s.final == (1e-5, 1e-4) and s(99, 100) == pytest.approx((1e-5, 1e-4))
    # begin/end: held before and after, annealed between
    w = fp.BlurSchedule("log-linear", (1e-2, 1e-5), (1e-1, 1e-4), begin=0.2, end=0.5)
    assert w(0, 101) == w(20, 101) == pytest.approx((1e-2, 1e-1))
    assert w(35, 101) == pytest.approx((math.sqrt(1e-7), math.sqrt(1e-5)))
    assert w(50, 101) == w(100, 101) == pytest.approx((1e-5, 1e-4))
    # no blur: the final values at every step
    nb = fp.BlurSchedule.no_blur(s)
    assert all(nb(k, 100) == (1e-5, 1e-4) for k in (0, 50, 99))
    # step plateaus over the window, and the linear schedule's midpoint
    st = fp.BlurSchedule("step", (1e-2, 1e-5), (1e-1, 1e-4), begin=0.0, end=1.0, levels=4)
    assert [st(k, 5)[0] for k in range(5)] == pytest.approx([1e-2, 1e-3, 1e-4, 1e-5, 1e-5])
    assert fp.BlurSchedule("linear", (1.0, 3.0), (2.0, 4.0))(50, 101) == pytest.approx((2.0, 3.0))
    with pytest.raises(ValueError, match="schedule.kind"):
        fp.schedule_value("cosine", 1, 2, 0.5)


# ---- the scene ----------------------------------------------------------------------------------


def test_cube_is_closed_and_wound_outward_with_six_colours():
    v, f, tex = fp.cube(0.4)
    assert v.shape == (8, 3) and f.shape == (12, 3) and tex.shape == (12, 1, 3)
    tri = v[f].double()
    n = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    assert bool(((n * tri.mean(1)).sum(-1) > 0).all())  # outward
    # each edge is used twice, in opposite directions (closed and consistently oriented)
    edges = {(int(a), int(b)) for face in f for a, b in zip(face, face.roll(-1))}
    assert len(edges) == 36 and all((b, a) in edges for a, b in edges)
    assert len({tuple(c) for c in tex[:, 0].tolist()}) == 6
    # the sides come in the order +x, -x, +y, -y, +z, -z, two triangles each, with their colours
    axes = torch.eye(3, dtype=torch.float64)
    expected = torch.stack([axes[0], -axes[0], axes[1], -axes[1], axes[2], -axes[2]]).repeat_interleave(2, 0)
    torch.testing.assert_close(torch.nn.functional.normalize(n, dim=-1), expected)
    colors = [(0.0, 0.0, 1.0)] * 6
    colors[2] = (0.0, 1.0, 0.0)
    _, _, tex = fp.cube(0.4, texture_res=2, colors=colors)
    assert tex.shape == (12, 4, 3) and tex[4:6, :, 1].eq(1).all() and tex[:4, :, 1].eq(0).all()


def test_default_occluder_hides_at_least_40_percent():
    for overrides in ([], ["experiment=fit-pose/occluded_cube"]):
        cfg = compose("fit-pose", overrides)
        scene = fp.build_scene(cfg, torch.device("cpu"))
        R = fp.euler_to_matrix(cfg.pose.rotation_deg)[None].float()
        t = torch.tensor([list(cfg.pose.translation)], dtype=torch.float32)
        frac = float(scene.occluded_fraction(R, t)[0])
        assert 0.40 <= frac < 0.9, frac
        # without the occluder nothing is hidden
        scene_free = fp.build_scene(compose("fit-pose", overrides + ["occluder.kind=none"]), torch.device("cpu"))
        assert float(scene_free.occluded_fraction(R, t)[0]) == 0.0


def test_plane_occluder_faces_the_camera():
    cfg = compose("fit-pose", ["experiment=fit-pose/plane"])
    scene = fp.build_scene(cfg, torch.device("cpu"))
    assert scene.occ_f.shape == (2, 3)
    R = fp.euler_to_matrix(cfg.pose.rotation_deg)[None].float()
    t = torch.zeros(1, 3)
    assert float(scene.occluded_fraction(R, t)[0]) >= 0.4
    img = scene.render(R, t, 1e-5, 1e-4)[0]
    dark = (img - torch.tensor(list(cfg.occluder.color))[:, None, None]).abs().amax(0) < 1e-3
    assert int(dark.sum()) > 100  # the plane is drawn (front-facing, so not culled)


def test_layered_occluder_matches_the_joint_rendering_when_sharp():
    base = ["renderer.image_size=32"]
    joint = fp.build_scene(compose("fit-pose", base), torch.device("cpu"))
    layered = fp.build_scene(compose("fit-pose", base + ["occluder.layered=true"]), torch.device("cpu"))
    R, _, _ = fp.random_initial_poses(3, fp.euler_to_matrix([0, 35, 0]), torch.zeros(3).double(), 60, 0, seed=5)
    R, t = R.float(), torch.zeros(3, 3)
    a, b = joint.render(R, t, 1e-5, 1e-4), layered.render(R, t, 1e-5, 1e-4)
    assert float((a - b).abs().gt(0.02).float().mean()) < 0.03  # the same but for a few edge pixels
    # blurry: the joint rendering lets the object show through the occluder, the layered one not
    occ = layered._occluder_layer(1e-2, 1e-1)[0, 3] > 0.999
    ja, la = joint.render(R, t, 1e-2, 1e-1), layered.render(R, t, 1e-2, 1e-1)
    grey = torch.tensor(list(compose("fit-pose").occluder.color))[:, None]
    assert float((la[:, :, occ] - grey).abs().max()) < 1e-2
    assert float((ja[:, :, occ] - grey).abs().max()) > 0.1
    m = layered.render_mask(R, t, 1e-2, 1e-1)
    assert m.shape == (3, 32, 32) and float(m[:, occ].max()) < 1e-2


# ---- fits ---------------------------------------------------------------------------------------


def test_single_fit_from_30_degrees_converges(tmp_path):
    cfg = compose("fit-pose", SMALL + ["init.angle_deg=30", "init.axis=[1,1,0]", "init.translation=[0.03,-0.03,0.03]"])
    metrics = fp.run(cfg, tmp_path)
    assert metrics["status"] == "completed" and metrics["trials"] == 1
    assert metrics["init_rot_deg"] == [pytest.approx(30.0)]
    assert metrics["rot_err_deg"][0] < 3.0, metrics["rot_err_deg"]
    assert metrics["trans_err"][0] < 0.03, metrics["trans_err"]
    assert metrics["success_rate"] == 1.0
    assert "success_rate_no_blur" in metrics  # the comparison runs by default
    assert np.allclose(np.asarray(metrics["rotation"]) @ np.asarray(metrics["rotation"]).T, np.eye(3), atol=1e-5)
    for name in ("config.yaml", "run.log", "metrics.json", "progress.gif", "final.png", "target.png"):
        assert (tmp_path / name).is_file(), name
    gif = imageio.mimread(tmp_path / "progress.gif")
    assert len(gif) == 200 // 20 + 1
    assert gif[0].shape[1] == 4 * 48 + 5 * 2  # target | sharp | blurry | loss
    scalars, images = tb_tags(tmp_path)
    expected = {
        "loss/total", "loss/rgb", "loss/silhouette", "schedule/sigma_val", "schedule/gamma_val",
        "error/rotation_deg", "error/translation", "loss/total_no_blur", "error/rotation_deg_no_blur",
    }  # fmt: skip
    assert expected <= scalars, expected - scalars
    assert "target_sharp_blurry_loss" in images


def test_trials_write_the_stated_metrics(tmp_path):
    cfg = compose("fit-pose", ["renderer.image_size=24", "steps=12", "trials=4", "device=cpu"])
    metrics = fp.run(cfg, tmp_path)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("success_rate", "success_rate_no_blur", "median_rot_err_deg", "median_rot_err_deg_no_blur"):
        assert key in metrics and key in on_disk, key
        assert 0 <= on_disk[key] <= (1 if key.startswith("success") else 180)
    assert len(on_disk["rot_err_deg"]) == len(on_disk["rot_err_deg_no_blur"]) == len(on_disk["init_rot_deg"]) == 4
    assert on_disk["median_rot_err_deg"] == pytest.approx(float(np.median(on_disk["rot_err_deg"])))
    assert on_disk["occluded_fraction"] >= 0.4
    assert (tmp_path / "errors.png").is_file() and (tmp_path / "final_renders.png").is_file()
    assert not (tmp_path / "progress.gif").exists()  # trials do not make the single fit's GIF
    scalars, images = tb_tags(tmp_path)
    assert {"trials/success_rate", "trials/success_rate_no_blur", "error/median_rotation_deg"} <= scalars
    assert {"final_errors", "final_renders"} <= images
    # without the comparison: only the blurred fits
    out = tmp_path / "solo"
    solo = fp.run(compose("fit-pose", ["renderer.image_size=24", "steps=3", "trials=3", "compare_no_blur=false"]), out)
    assert "success_rate" in solo and "success_rate_no_blur" not in solo


def test_user_image_target(tmp_path):
    # a target image (and mask) rendered from a known pose, fitted from a nearby start
    cfg = compose("fit-pose", ["renderer.image_size=32", "device=cpu"])
    scene = fp.build_scene(cfg, torch.device("cpu"))
    R = fp.euler_to_matrix(cfg.pose.rotation_deg)[None].float()
    t = torch.zeros(1, 3)
    rgb = scene.render(R, t, 1e-5, 1e-4)[0]
    mask = scene.render_mask(R, t, 1e-5, 1e-4)[0]
    imageio.imwrite(tmp_path / "target.png", (rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    imageio.imwrite(tmp_path / "mask.png", (mask.numpy() * 255).round().astype(np.uint8))
    overrides = [
        "renderer.image_size=32", "steps=120", "device=cpu", f"target.image={tmp_path / 'target.png'}",
        f"target.mask={tmp_path / 'mask.png'}", "init.angle_deg=10", "init.axis=[0,1,0]",
    ]  # fmt: skip
    metrics = fp.run(compose("fit-pose", overrides), tmp_path / "run")
    assert metrics["status"] == "completed"
    assert "success_rate" not in metrics and "rot_err_deg" not in metrics  # no ground truth: loss only
    assert metrics["final_loss"] < 0.05
    # the pose that made the image is found again from 10 degrees away
    R_fit = torch.tensor(metrics["rotation"], dtype=torch.float64)
    err = float(fp.rotation_error_deg(R_fit, R[0].double()))
    assert err < 4.0, err
    assert np.linalg.norm(metrics["translation"]) < 0.03
    scalars, _ = tb_tags(tmp_path / "run")
    assert "loss/silhouette" in scalars and "error/rotation_deg" not in scalars


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["schedule.kind=cosine"], "schedule.kind"),
        (["schedule.sigma_val=[1e-2]"], "schedule.sigma_val"),
        (["schedule.begin=0.8", "schedule.end=0.2"], "schedule.begin"),
        (["occluder.kind=sphere"], "occluder.kind"),
        (["max_init_deg=200"], "max_init_deg"),
        (["trials=0"], "trials"),
        (["optim.betas=[0.9]"], "optim.betas"),
        (["renderer.aggr_func_rgb=max"], "renderer.aggr_func_rgb"),
        (["target.image=/no/such.png"], "target.image"),
        (["object.mesh=/no/such.obj"], "object.mesh"),
        (["target.mask=/no/mask.png"], "target.mask"),
        (["trials=3", "init.angle_deg=10"], "init"),
        (["occluder.size=[0.2,1.0]"], "occluder.size"),
        (["object.colors=[[1,0,0]]"], "object.colors"),
    ],
)
def test_bad_values_name_the_key(tmp_path, overrides, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message.replace(".", r"\.")):
        fp.run(compose("fit-pose", ["renderer.image_size=16"] + overrides), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # checked before the run folder is made


def test_trials_need_a_ground_truth(tmp_path):
    png = tmp_path / "t.png"
    imageio.imwrite(png, np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="trials"):
        fp.run(compose("fit-pose", [f"target.image={png}", "trials=3"]), tmp_path / "run")


def test_the_command_knows_fit_pose():
    assert "fit-pose" in cli.SUBCOMMANDS
    assert cli.expand_config_arg("fit-pose", ["config=occluded_cube"]) == ["experiment=fit-pose/occluded_cube"]
    plain = OmegaConf.to_container(compose("fit-pose", ["experiment=fit-pose/occluded_cube"]), resolve=True)
    base = OmegaConf.to_container(compose("fit-pose"), resolve=True)
    assert set(plain) == set(base) and plain["seed"] == 0 and plain["device"] == "auto"
    assert plain["max_init_deg"] == 90 and plain["compare_no_blur"] is True
