"""softras make-dataset through the real command: a round trip through the public format, the
same arrays as the library's generator, refused non-empty folders, OBJ folders, and the one
voxel convention shared by the writer and the evaluation of a predicted mesh."""

from __future__ import annotations

import json

import numpy as np
import torch

from softras.cli import main
from softras.datasets import ShapeNetRenderings, make_procedural_dataset
from softras.io import save_obj
from softras.models.evaluation import reconstruction_iou


def test_make_dataset_round_trip_equals_the_library(tmp_path, capsys):
    out = tmp_path / "data"
    args = ["make-dataset", f"out={out}", "class_ids=[chair,lamp]", "objects_per_class=4", "seed=3"]
    assert main([*args, f"hydra.run.dir={tmp_path / 'run'}"]) == 0
    capsys.readouterr()
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["objects"] == {c: {"train": 2, "val": 1, "test": 1} for c in ("03001627", "03636649")}
    ref = make_procedural_dataset(
        tmp_path / "ref", class_ids=["chair", "lamp"], objects_per_class=4, seed=3, progress=False
    )
    for split in ("train", "val", "test"):
        ds = ShapeNetRenderings(out, split=split)
        assert ds.class_ids == ("03001627", "03636649")
        for cid in ds.class_ids:
            for kind, dtype, shape in (("images", np.uint8, (24, 4, 64, 64)), ("voxels", bool, (32, 32, 32))):
                a = np.load(out / f"{cid}_{split}_{kind}.npz")["arr_0"]
                assert a.dtype == dtype and a.shape[1:] == shape
                assert np.array_equal(a, np.load(ref / f"{cid}_{split}_{kind}.npz")["arr_0"])
    # the folder now holds a dataset: a second run is refused in one line, nothing written
    assert main([*args, f"hydra.run.dir={tmp_path / 'again'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "out:" in err[0] and "not empty" in err[0]
    assert not (tmp_path / "again").exists()


def test_make_dataset_refuses_bad_sources_in_one_line(tmp_path, capsys):
    for extra, words in (
        (["source=/no/such/folder"], ("source", "/no/such/folder")),
        (["class_ids=[car]"], ("class_ids", "car", "03001627 (chair)")),
        (["objects_per_class=2"], ("objects_per_class", "2")),
    ):
        assert main(["make-dataset", f"out={tmp_path / 'x'}", *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and all(w in err[0] for w in words), err


def l_shape(offset: float) -> tuple[np.ndarray, np.ndarray]:
    """An asymmetric closed mesh (two boxes forming an L), shifted off-centre along x."""
    parts, faces = [], []
    for lo, hi in (((0.0, 0.0, 0.0), (1.0, 0.3, 0.4)), ((0.0, 0.0, 0.0), (0.25, 0.9, 0.4))):
        lo, hi = np.array(lo) + [offset, 0, 0], np.array(hi) + [offset, 0, 0]
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
        base = 8 * len(parts)
        faces += [(base + a, base + b, base + c) for a, b, c, d in quads] + [
            (base + a, base + c, base + d) for a, b, c, d in quads
        ]
        parts.append(corners)
    return np.concatenate(parts).astype(np.float32), np.array(faces)


class FixedMesh(torch.nn.Module):
    """Predicts the same mesh for every image."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        super().__init__()
        self.v, self.f = torch.as_tensor(vertices), torch.as_tensor(faces)

    def forward(self, images):
        return self.v[None].expand(len(images), -1, -1), self.f


def test_voxels_of_make_dataset_and_of_the_evaluation_agree(tmp_path):
    """An L (asymmetric, its mass off the centre of its box) written by make-dataset from an
    OBJ folder; a model predicting that mesh, normalized as make-dataset normalizes it, is
    voxelized by the evaluation and scores IoU exactly 1 against the stored grid."""
    from softras.datasets import load_obj_folder

    folder = tmp_path / "objs" / "things"
    folder.mkdir(parents=True)
    for i in range(3):  # three copies: one per split
        save_obj(folder / f"l{i}.obj", *(torch.as_tensor(a) for a in l_shape(0.3)))
    out = tmp_path / "data"
    assert main(["make-dataset", f"source={tmp_path / 'objs'}", f"out={out}", f"hydra.run.dir={tmp_path / 'run'}"]) == 0
    ds = ShapeNetRenderings(out, split="train")
    v, f = load_obj_folder(tmp_path / "objs")["things"][0]
    stored = ds.voxels("things", [0])[0]
    assert 0 < stored.sum() < 32**3 / 2
    assert not torch.equal(stored, stored.flip(0)) and not torch.equal(stored, stored.flip(1))  # asymmetric
    iou = reconstruction_iou(FixedMesh(v, f), ds, ds.items()[:1], views=[0, 7])
    assert torch.equal(iou, torch.ones(1, 2))
