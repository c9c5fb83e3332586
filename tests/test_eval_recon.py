"""softras eval-recon on a dataset written by hand in the public format.

The checkpoint is a ReconModel whose decoder heads are zeroed, so whatever the image it
predicts the undeformed template: the 642-vertex sphere scaled to radius 0.25, a convex
polyhedron. Its voxels are computed here independently of softras' voxelizer: a voxel (a
closed unit box in voxel units, mesh coordinate v at 31 v + 16) is occupied when the box meets
the solid polyhedron, decided by the separating-axis test between two convex bodies (box axes,
the polyhedron's face normals, and edge x axis cross products); the dataset layout
[i, j, k] = (y, x, 31 - z) is applied by hand. The ground truth is a hand-made asymmetric
box, so the expected IoU is |P n G| / |P u G| of these two grids.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from softras.cli import main
from softras.models import ReconModel

S = 32


def sphere_model(encoder_channels=(64, 128, 256)) -> ReconModel:
    model = ReconModel(encoder_channels=encoder_channels)
    for head in (model.decoder.fc_bias, model.decoder.fc_centroid):
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
    return model


def convex_voxels_xyz(vertices: torch.Tensor, faces: torch.Tensor) -> np.ndarray:
    """[S, S, S] bool indexed [x, y, z]: voxels whose closed box meets the convex solid."""
    u = vertices.double() * (S - 1) + S / 2  # voxel units
    fv = u[faces]  # [F, 3, 3]
    normals = torch.cross(fv[:, 1] - fv[:, 0], fv[:, 2] - fv[:, 0], dim=-1)
    edges = torch.cat([fv[:, 1] - fv[:, 0], fv[:, 2] - fv[:, 1], fv[:, 0] - fv[:, 2]])
    eye = torch.eye(3, dtype=torch.float64)
    crosses = torch.cross(edges[:, None, :].expand(-1, 3, -1), eye[None].expand(len(edges), -1, -1), dim=-1)
    axes = torch.cat([eye, normals, crosses.reshape(-1, 3)])
    axes = axes[axes.norm(dim=1) > 1e-9]
    axes = axes / axes.norm(dim=1, keepdim=True)
    proj = u @ axes.T  # [V, A]
    pmin, pmax = proj.min(0).values, proj.max(0).values
    idx = torch.arange(S, dtype=torch.float64)
    centers = torch.stack(torch.meshgrid(idx, idx, idx, indexing="ij"), -1).reshape(-1, 3) + 0.5
    radius = 0.5 * axes.abs().sum(1)  # half extent of a unit box along each axis
    out = torch.zeros(len(centers), dtype=torch.bool)
    for s in range(0, len(centers), 2048):
        c = centers[s : s + 2048] @ axes.T  # [n, A]
        separated = (c + radius < pmin - 1e-9) | (c - radius > pmax + 1e-9)
        out[s : s + 2048] = ~separated.any(1)
    return out.view(S, S, S).numpy()


def to_dataset_layout(xyz: np.ndarray) -> np.ndarray:
    """[x, y, z] -> [y, x, 31 - z] (the public files' layout), written as loops over voxels."""
    out = np.zeros_like(xyz)
    for x, y, z in zip(*np.nonzero(xyz)):
        out[y, x, S - 1 - z] = True
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.fixture(scope="module")
def hand_dataset(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """Two classes, written with np.savez_compressed directly: random images; ground truths
    that are boxes of different sizes (in the dataset layout)."""
    root = tmp_path_factory.mktemp("hand")
    rng = np.random.default_rng(0)
    boxes = {
        "03001627": [(slice(10, 24), slice(8, 20), slice(12, 30)), (slice(14, 18), slice(13, 19), slice(14, 17))],
        "my_things": [(slice(4, 28), slice(4, 28), slice(4, 28)), (slice(2, 20), slice(16, 30), slice(0, 12))],
    }
    gts = {}
    for cid, bx in boxes.items():
        for split in ("train", "val", "test"):
            vox = np.zeros((len(bx), S, S, S), np.uint8)
            for n, b in enumerate(bx):
                vox[(n, *b)] = 1
            images = rng.integers(0, 256, size=(len(bx), 24, 4, 64, 64), dtype=np.uint8)
            np.savez_compressed(root / f"{cid}_{split}_images.npz", images)
            np.savez_compressed(root / f"{cid}_{split}_voxels.npz", vox)
        gts[cid] = vox.astype(bool)
    return root, gts


def write_checkpoint(
    path: Path, root: Path, model: ReconModel | None = None, task: str = "train-recon", encoder_channels=None
) -> Path:
    model = model if model is not None else sphere_model()
    template = str(Path(__file__).resolve().parents[1] / "data" / "sphere_642.obj")
    config = {
        "model": {"template": template, "color": False, "rgb_weight": 0.0},
        "data": {"root": str(root), "class_ids": None, "objects_per_class": 300, "seed": 0, "val_views": 1},
    }
    if encoder_channels is not None:  # else a run written before the setting existed: the paper's widths
        config["model"]["encoder_channels"] = list(encoder_channels)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"task": task, "kind": "recon-model", "step": 0, "model": model.state_dict(), "config": config}, path)
    return path


def test_eval_recon_iou_equals_an_independent_voxel_computation(tmp_path, hand_dataset, capsys):
    root, gts = hand_dataset
    ckpt = write_checkpoint(tmp_path / "train" / "best.pt", root)
    run = tmp_path / "eval"
    args = ["eval-recon", f"checkpoint={ckpt.parent}", "device=cpu", "views=3", "examples=1", f"hydra.run.dir={run}"]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "| 03001627 chair |" in table and "| my_things |" in table and "**mean**" in table

    model = sphere_model()
    pred = to_dataset_layout(convex_voxels_xyz(model.template_vertices, model.faces))
    # hand check of the independent grid: a sphere of radius 0.25 * 31 = 7.75 voxels around 16
    assert pred[16, 16, 15] and pred[16, 16, 16 + 7] and not pred[16, 16, 16 + 9] and not pred[0, 0, 0]
    expected = {cid: float(np.mean([iou(pred, g) for g in gt])) for cid, gt in gts.items()}

    report = json.loads((ckpt.parent / "eval.json").read_text())
    assert set(report) >= {"mean_iou", "prior_mean_iou", "sphere_mean_iou", "per_class", "checkpoint", "split"}
    for cid, value in expected.items():
        row = report["per_class"][cid]
        assert set(row) == {"model", "prior", "sphere", "objects"}
        assert row["model"] == pytest.approx(value, abs=1e-6)
        assert row["sphere"] == pytest.approx(value, abs=1e-6)  # the model predicts the template
    assert report["mean_iou"] == pytest.approx(np.mean(list(expected.values())), abs=1e-6)
    # the prior of two train boxes: the mean grid thresholded at the best t; for the chair
    # class (a small box inside a larger one) it is the small box at t > 0.5 ... or the large
    # one at t <= 0.5: IoU 1 with the one and |small|/|large| with the other either way
    small, large = gts["03001627"][1].sum(), gts["03001627"][0].sum()
    assert report["per_class"]["03001627"]["prior"] == pytest.approx((1 + small / large) / 2, abs=1e-6)
    assert (run / "eval.md").is_file() and (ckpt.parent / "eval.md").is_file()
    assert (run / "chair_0.obj").is_file() and (run / "chair_0.gif").is_file()

    # a second evaluation never overwrites the first
    assert main([*args[:-1], f"hydra.run.dir={tmp_path / 'eval2'}"]) == 0
    assert (ckpt.parent / "eval_1.md").is_file() and (ckpt.parent / "eval_1.json").is_file()


def test_a_checkpoint_of_another_task_or_model_is_one_line(tmp_path, hand_dataset, capsys):
    root, _ = hand_dataset
    other = write_checkpoint(tmp_path / "deform" / "checkpoint.pt", root, task="deform")
    assert main(["eval-recon", f"checkpoint={other}", "device=cpu", f"hydra.run.dir={tmp_path / 'e1'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint of 'deform'" in err[0] and "train-recon" in err[0]

    colour = write_checkpoint(tmp_path / "colour" / "best.pt", root, model=ReconModel(color=True))
    assert main(["eval-recon", f"checkpoint={colour}", "device=cpu", f"hydra.run.dir={tmp_path / 'e2'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not hold this model" in err[0]
    assert not (tmp_path / "e1").exists() and not (tmp_path / "e2").exists()

    # a lighter encoder than its config states
    light = write_checkpoint(tmp_path / "light" / "best.pt", root, model=sphere_model((32, 64, 128)))
    assert main(["eval-recon", f"checkpoint={light}", "device=cpu", f"hydra.run.dir={tmp_path / 'e3'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not hold this model" in err[0]

    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert main(["eval-recon", f"checkpoint={tmp_path / 'junk.pt'}", "device=cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read" in err[0]


def test_a_lighter_encoder_is_rebuilt_from_the_run_config(tmp_path, hand_dataset):
    root, gts = hand_dataset
    model = sphere_model((32, 64, 128))
    ckpt = write_checkpoint(tmp_path / "light" / "best.pt", root, model=model, encoder_channels=(32, 64, 128))
    assert main(["eval-recon", f"checkpoint={ckpt}", "device=cpu", "views=2", f"hydra.run.dir={tmp_path / 'e'}"]) == 0
    pred = to_dataset_layout(convex_voxels_xyz(model.template_vertices, model.faces))
    report = json.loads((ckpt.parent / "eval.json").read_text())
    for cid, gt in gts.items():
        assert report["per_class"][cid]["model"] == pytest.approx(float(np.mean([iou(pred, g) for g in gt])), abs=1e-6)


def test_bad_data_is_one_line_naming_the_file(tmp_path, hand_dataset, capsys):
    root, _ = hand_dataset
    bad = tmp_path / "bad"
    bad.mkdir()
    for split in ("train", "test"):
        np.savez_compressed(bad / f"03001627_{split}_images.npz", np.zeros((2, 24, 3, 64, 64), np.uint8))
        np.savez_compressed(bad / f"03001627_{split}_voxels.npz", np.zeros((2, 32, 32, 32), np.uint8))
    ckpt = write_checkpoint(tmp_path / "t" / "best.pt", bad)
    assert main(["eval-recon", f"checkpoint={ckpt}", "device=cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "03001627_test_images.npz" in err[0] and "[N, 24, 4, 64, 64]" in err[0]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval-recon", f"checkpoint={ckpt}", f"data_root={empty}", "device=cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].count("data_root") == 1 and "_test_images.npz" in err[0]
