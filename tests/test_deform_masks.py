"""A deform target given as mask images gives the same result whatever the image's encoding:
8-bit or 16-bit grey, RGB, or RGBA (issue: 16-bit PNGs were divided by 255)."""

from __future__ import annotations

import json

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from softras import cli
from softras.io import load_obj_geometry
from softras.paths import data_file

VIEWS = [0, 30, 61, 95]


def _write_masks(folder, alpha: np.ndarray, encoding: str) -> None:
    folder.mkdir()
    for k, a in enumerate(alpha):  # a: uint8 [H, W]
        if encoding == "grey8":
            img = a
        elif encoding == "grey16":
            img = a.astype(np.uint16) * 257  # the same values on 0..65535
        elif encoding == "rgb":
            img = np.repeat(a[..., None], 3, axis=-1)
        else:  # rgba: colour anything, the alpha channel is the mask
            img = np.concatenate([np.full(a.shape + (3,), 90, np.uint8), a[..., None]], axis=-1)
        imageio.imwrite(folder / f"{k:03d}.png", img)


def test_mask_encodings_give_the_same_deformation(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    alpha = np.load(data_file("source.npy"))[VIEWS, 3]  # uint8 [4, 64, 64]
    np.save(tmp_path / "cams.npy", np.load(data_file("camera.npy"))[VIEWS])
    results = {}
    for encoding in ("grey8", "grey16", "rgb", "rgba"):
        _write_masks(tmp_path / encoding, alpha, encoding)
        run = tmp_path / f"run_{encoding}"
        args = ["deform", f"target.masks={tmp_path / encoding}", f"target.cameras={tmp_path / 'cams.npy'}",
                "steps=4", "device=cpu", "renderer.image_size=32", f"hydra.run.dir={run}"]  # fmt: skip
        assert cli.main(args) == 0
        m = json.loads((run / "metrics.json").read_text())
        results[encoding] = (m["initial_mean_hard_iou"], m["mean_hard_iou"], load_obj_geometry(run / "mesh.obj")[0])
    ref = results["grey8"]
    assert ref[0] > 0.1  # the masks were read as the airplane, not as noise or emptiness
    for encoding, (iou0, iou, v) in results.items():
        assert iou0 == pytest.approx(ref[0], abs=1e-6), encoding
        assert iou == pytest.approx(ref[1], abs=1e-6), encoding
        assert torch.allclose(v, ref[2], atol=1e-6), encoding
