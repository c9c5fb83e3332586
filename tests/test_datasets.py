"""The reconstruction datasets: the public format's loader on hand-written npz files, the voxel
axis convention against hand-computed indices, procedural shapes, and the dataset writer
(written, read back, and compared with an independent rendering through ``softras.Renderer``).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import softras as sr
from softras.datasets import shapenet
from softras.datasets.procedural import PROCEDURAL_CLASSES, box, load_obj_folder, make_shape, merge
from softras.datasets.shapenet import CLASS_IDS, CLASS_NAMES, ShapeNetRenderings, shard, view_eyes
from softras.datasets.voxels import dataset_to_xyz, mesh_to_dataset_voxels, point_to_dataset_index, voxel_iou
from softras.datasets.writer import ensure_procedural_dataset, write_dataset
from softras.io import save_obj

CHAIR, TABLE = "03001627", "04379243"


# ---------------------------------------------------------------------------------------
# constants and views


def test_class_ids_and_names():
    assert len(CLASS_IDS) == 13 and len(set(CLASS_IDS)) == 13
    assert CLASS_NAMES["02691156"] == "airplane" and CLASS_NAMES["04530566"] == "watercraft"
    assert CLASS_NAMES[CHAIR] == "chair" and CLASS_NAMES[TABLE] == "table"
    assert shapenet.class_id_of("lamp") == "03636649" and shapenet.class_id_of("mine") == "mine"


def test_view_eyes_by_hand():
    d, e = 2.732, math.radians(30)
    # azimuth 0: camera on -z; view 6 has azimuth -90: camera on -x; view 12: on +z
    expected = torch.tensor(
        [
            [0, d * math.sin(e), -d * math.cos(e)],
            [-d * math.cos(e), d * math.sin(e), 0],
            [0, d * math.sin(e), d * math.cos(e)],
        ]
    )
    torch.testing.assert_close(view_eyes([0, 6, 12]), expected.float(), atol=1e-5, rtol=0)
    assert view_eyes(3).shape == (1, 3)
    with pytest.raises(ValueError, match=r"k: expected view indices in \[0, 24\), got \[0, 24\]"):
        view_eyes([0, 24])


# ---------------------------------------------------------------------------------------
# loader on a hand-written set


def _images(n: int, offset: int) -> np.ndarray:
    """[n, 24, 4, 64, 64] uint8 where image (o, v) is filled with offset + 24 o + v, channel c
    plus c (so any mix-up of object, view or channel shows)."""
    base = offset + 24 * np.arange(n)[:, None] + np.arange(24)[None, :]
    img = base[:, :, None, None, None] + np.arange(4)[None, None, :, None, None]
    return np.broadcast_to(img, (n, 24, 4, 64, 64)).astype(np.uint8)


@pytest.fixture
def tiny(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    rng = np.random.default_rng(0)
    vox = {CHAIR: rng.random((3, 32, 32, 32)) < 0.3, TABLE: (rng.random((2, 32, 32, 32)) < 0.5).astype(np.uint8)}
    for cid, n, off in ((CHAIR, 3, 0), (TABLE, 2, 100)):
        np.savez_compressed(root / f"{cid}_train_images.npz", _images(n, off))
        np.savez_compressed(root / f"{cid}_train_voxels.npz", vox[cid])
    np.savez_compressed(root / f"{CHAIR}_val_images.npz", _images(1, 50))
    np.savez_compressed(root / f"{CHAIR}_val_voxels.npz", vox[CHAIR][:1])
    return root, vox


def test_loader_reads_hand_written_set(tiny):
    root, vox = tiny
    ds = ShapeNetRenderings(root, split="train")
    assert ds.class_ids == (CHAIR, TABLE) and len(ds) == 5
    assert ds.num_objects("chair") == 3 and ds.num_objects(TABLE) == 2 and ds.num_objects(1) == 2
    img = ds.images(CHAIR, [2, 0], [5, 23])
    assert img.dtype == torch.uint8 and img.shape == (2, 4, 64, 64)
    assert img[0, :, 10, 10].tolist() == [53, 54, 55, 56] and img[1, :, 0, 63].tolist() == [23, 24, 25, 26]
    f = ds.images(TABLE, [1], [0], as_float=True)
    assert f.dtype == torch.float32 and abs(float(f[0, 3, 0, 0]) - 127 / 255) < 1e-7
    v = ds.voxels(TABLE, [1, 0])
    assert v.dtype == torch.bool and torch.equal(v, torch.from_numpy(vox[TABLE][[1, 0]] != 0))
    mixed = ds.gather_images([1, 0, 1], [0, 1, 1], [2, 3, 4])
    assert mixed[:, 0, 0, 0].tolist() == [102, 27, 128]
    mv = ds.gather_voxels([1, 0], [1, 2])
    assert torch.equal(mv[0], torch.from_numpy(vox[TABLE][1] != 0)) and torch.equal(
        mv[1], torch.from_numpy(vox[CHAIR][2])
    )
    assert ShapeNetRenderings(root, ["chair"], split="val").images(0, [0], [1])[0, 0, 0, 0] == 51
    assert ds.items().tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1]]


def test_loader_cache_is_npy_beside_and_reused(tiny, tmp_path, monkeypatch):
    root, _ = tiny
    ds = ShapeNetRenderings(root, [CHAIR])
    ds.images(CHAIR, [0], [0])
    npy = root / f"{CHAIR}_train_images.npy"
    assert ds.cache_files() == [npy]
    assert np.load(npy, mmap_mode="r").shape == (3, 24, 4, 64, 64)
    mtime = npy.stat().st_mtime_ns
    ShapeNetRenderings(root, [CHAIR]).images(CHAIR, [1], [1])
    assert npy.stat().st_mtime_ns == mtime  # reused, not rewritten
    assert not list(root.glob(".*.tmp"))
    # a read-only data folder: the cache goes to cache_dir
    monkeypatch.setattr(shapenet, "_writable", lambda folder: False)
    other = ShapeNetRenderings(root, [TABLE], cache_dir=tmp_path / "cache")
    assert other.voxels(TABLE, [0]).shape == (1, 32, 32, 32)
    assert other.cache_files() == [tmp_path / "cache" / f"{TABLE}_train_voxels.npy"]


def test_sample_pairs_follows_the_original(tiny):
    ds = ShapeNetRenderings(tiny[0])
    g = torch.Generator().manual_seed(3)
    cls, obj, va, vb = ds.sample_pairs(g, 20000)
    again = ds.sample_pairs(torch.Generator().manual_seed(3), 20000)
    assert all(torch.equal(a, b) for a, b in zip((cls, obj, va, vb), again))
    # classes uniformly (not by object count: 3 chairs, 2 tables), then objects uniformly
    assert abs(float((cls == 0).float().mean()) - 0.5) < 0.02
    for ci, n in ((0, 3), (1, 2)):
        o = obj[cls == ci]
        assert int(o.min()) == 0 and int(o.max()) == n - 1
        for k in range(n):
            assert abs(float((o == k).float().mean()) - 1 / n) < 0.03
    # two views drawn independently: uniform over 24, equal with probability 1/24
    assert int(va.min()) == 0 and int(va.max()) == 23
    assert abs(float((va == vb).float().mean()) - 1 / 24) < 0.01
    with pytest.raises(ValueError, match="batch_size: expected a positive int, got 0"):
        ds.sample_pairs(g, 0)
    with pytest.raises(TypeError, match="generator: expected a torch.Generator"):
        ds.sample_pairs(np.random.default_rng(0), 4)


@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 7])
def test_shard_covers_every_item_once(world_size):
    items = torch.arange(10)
    parts = [shard(items, r, world_size) for r in range(world_size)]
    assert sorted(torch.cat(parts).tolist()) == list(range(10))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_shard_bad_rank():
    with pytest.raises(ValueError, match="expected 0 <= rank < world_size, got rank=2, world_size=2"):
        shard([1, 2], 2, 2)


def _write(root, name, array=None, **kw):
    if array is not None:
        np.savez_compressed(root / name, array)
    else:
        np.savez_compressed(root / name, **kw)


@pytest.mark.parametrize(
    "name, array, message",
    [
        (
            f"{CHAIR}_train_images.npz",
            np.zeros((3, 24, 4, 32, 32), np.uint8),
            r"expected uint8 \[N, 24, 4, 64, 64\], found uint8 \[3, 24, 4, 32, 32\]",
        ),
        (
            f"{CHAIR}_train_images.npz",
            np.zeros((3, 24, 4, 64, 64), np.float32),
            r"expected uint8 \[N, 24, 4, 64, 64\], found float32",
        ),
        (
            f"{CHAIR}_train_voxels.npz",
            np.zeros((3, 32, 32), bool),
            r"expected bool or uint8 \[N, 32, 32, 32\], found bool \[3, 32, 32\]",
        ),
        (
            f"{CHAIR}_train_voxels.npz",
            np.zeros((3, 32, 32, 32), np.float32),
            r"expected bool or uint8 \[N, 32, 32, 32\], found float32",
        ),
        (f"{CHAIR}_train_voxels.npz", np.zeros((2, 32, 32, 32), bool), "expected 3 objects .as the images., found 2"),
    ],
)
def test_loader_bad_arrays(tiny, name, array, message):
    root, _ = tiny
    _write(root, name, array)
    with pytest.raises(ValueError, match=name + ": " + message):
        ShapeNetRenderings(root, [CHAIR])


def test_loader_bad_files(tiny, tmp_path):
    root, _ = tiny
    with pytest.raises(FileNotFoundError, match="data folder .*nowhere: expected a folder"):
        ShapeNetRenderings(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("hi")
    with pytest.raises(FileNotFoundError, match=r"expected \{class\}_train_images.npz .* found readme.txt"):
        ShapeNetRenderings(empty)
    with pytest.raises(
        FileNotFoundError, match="class 02691156 has no 02691156_test_images.npz .*present for split 'test': none"
    ):
        ShapeNetRenderings(root, ["airplane"], split="test")
    with pytest.raises(
        FileNotFoundError, match=f"class 02691156 has no .* present for split 'train': {CHAIR}, {TABLE}"
    ):
        ShapeNetRenderings(root, ["02691156"])
    with pytest.raises(ValueError, match="split: expected one of 'train', 'val', 'test', got 'training'"):
        ShapeNetRenderings(root, split="training")
    (root / f"{TABLE}_train_images.npz").write_text("not a zip")
    with pytest.raises(ValueError, match=f"{TABLE}_train_images.npz: expected an npz archive .*non-zip file"):
        ShapeNetRenderings(root, [TABLE])
    _write(root, f"{TABLE}_train_images.npz", images=_images(2, 0))
    with pytest.raises(ValueError, match=r"expected an npz whose first array is arr_0 .*found arrays \['images'\]"):
        ShapeNetRenderings(root, [TABLE])


def test_loader_bad_indices(tiny):
    ds = ShapeNetRenderings(tiny[0])
    with pytest.raises(ValueError, match=rf"obj_indices: expected indices in \[0, 2\) for class {TABLE}, got \[0, 2\]"):
        ds.images(TABLE, [0, 2], [0, 0])
    with pytest.raises(ValueError, match=r"k: expected view indices in \[0, 24\), got \[30, 30\]"):
        ds.images(TABLE, [0], [30])
    with pytest.raises(ValueError, match="view_indices: expected 2 indices .one per object., got 1"):
        ds.images(TABLE, [0, 1], [3])
    with pytest.raises(ValueError, match=f"class_id: expected one of {CHAIR}, {TABLE}, got 'lamp'"):
        ds.voxels("lamp", [0])
    with pytest.raises(TypeError, match="obj_indices: expected integers, got dtype float"):
        ds.voxels(CHAIR, [0.5])


# ---------------------------------------------------------------------------------------
# the voxel convention


def _u(u: float) -> float:
    """Mesh coordinate of voxel coordinate u (u = 31 v + 16)."""
    return (u - 16) / 31


def l_block() -> tuple[np.ndarray, np.ndarray]:
    """An L of two overlapping boxes in one corner, faces off the voxel boundaries. In voxel
    coordinates: A = x [2.3, 9.7] y [1.2, 3.6] z [20.4, 24.5]; B = x [2.3, 4.8] y [1.2, 12.6], same z."""
    parts = []
    for lo, hi in (((2.3, 1.2, 20.4), (9.7, 3.6, 24.5)), ((2.3, 1.2, 20.4), (4.8, 12.6, 24.5))):
        lo, hi = np.array([_u(c) for c in lo]), np.array([_u(c) for c in hi])
        parts.append(box((lo + hi) / 2, hi - lo))
    v, f = merge(parts)
    return v.astype(np.float32), f


def l_block_expected() -> np.ndarray:
    """By hand: A covers voxel indices x 2..9, y 1..3, z 20..24 and B x 2..4, y 1..12, z 20..24;
    dataset voxel [i, j, k] is (y = i, x = j, z = 31 - k), so z 20..24 is k 7..11."""
    g = np.zeros((32, 32, 32), bool)
    g[1:4, 2:10, 7:12] = True
    g[1:13, 2:5, 7:12] = True
    return g


def test_voxel_convention_by_hand():
    v, f = l_block()
    got = mesh_to_dataset_voxels(torch.from_numpy(v), torch.from_numpy(f))
    assert got.shape == (32, 32, 32) and got.dtype == torch.bool
    assert int(got.sum()) == 3 * 8 * 5 + 9 * 3 * 5
    assert np.array_equal(got.numpy(), l_block_expected())
    # batched, and the inverse layout back to [x, y, z]
    batched = mesh_to_dataset_voxels(torch.from_numpy(v)[None].repeat(2, 1, 1), torch.from_numpy(f))
    assert batched.shape == (2, 32, 32, 32) and torch.equal(batched[1], got)
    xyz = dataset_to_xyz(batched)
    assert bool(xyz[0, 9, 3, 24]) and not bool(xyz[0, 9, 4, 24]) and not bool(xyz[0, 10, 3, 24])
    assert point_to_dataset_index((_u(9.5), _u(3.5), _u(24.2))) == (3, 9, 7)
    assert float(voxel_iou(batched, torch.from_numpy(l_block_expected())[None].repeat(2, 1, 1, 1))[0]) == 1.0


def test_voxel_iou_by_hand():
    a = torch.zeros(2, 32, 32, 32, dtype=torch.bool)
    b = torch.zeros(2, 32, 32, 32, dtype=torch.uint8)
    a[0, :2] = True  # 2048 voxels
    b[0, 1:4] = 1  # 3072, 1024 shared -> 1024 / 4096
    torch.testing.assert_close(voxel_iou(a, b), torch.tensor([0.25, 1.0]))
    with pytest.raises(
        ValueError,
        match=r"pred, gt: expected two grids of the same shape .* got \[2, 32, 32, 32\] and \[1, 32, 32, 32\]",
    ):
        voxel_iou(a, b[:1])


# ---------------------------------------------------------------------------------------
# procedural shapes and OBJ folders


@pytest.mark.parametrize("class_id", list(PROCEDURAL_CLASSES))
def test_procedural_shapes_closed_normalized(class_id):
    rng = np.random.default_rng(7)
    for _ in range(5):
        v, f = make_shape(class_id, rng)
        assert v.dtype == np.float32 and f.dtype == np.int64 and len(f) <= 1500
        ext = v.max(0) - v.min(0)
        assert abs(float(ext.max()) - 1) < 1e-6 and np.allclose(v.max(0) + v.min(0), 0, atol=1e-6)
        # closed and consistently oriented: every directed edge meets its reverse exactly once
        edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
        keys = {tuple(e) for e in edges.tolist()}
        assert len(keys) == len(edges) and all((b, a) in keys for a, b in keys)
        # outward: the divergence theorem gives a positive volume
        fv = v.astype(np.float64)[f]
        assert np.einsum("ij,ij->i", fv[:, 0], np.cross(fv[:, 1], fv[:, 2])).sum() > 0
    a, b = make_shape(class_id, np.random.default_rng(1)), make_shape(class_id, np.random.default_rng(1))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], make_shape(class_id, np.random.default_rng(2))[0])


def test_make_shape_bad_input():
    with pytest.raises(ValueError, match="class_id: expected one of 04379243 .table.*got 'car'"):
        make_shape("car", np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng: expected a numpy.random.Generator, got int"):
        make_shape("table", 0)


def test_load_obj_folder(tmp_path):
    (tmp_path / "chair").mkdir()
    (tmp_path / "mine" / "sub").mkdir(parents=True)
    v, f = box([3.0, 1.0, -2.0], [4.0, 2.0, 1.0])  # longest side 4, centre (3, 1, -2)
    save_obj(tmp_path / "chair" / "a.obj", torch.from_numpy(v).float(), torch.from_numpy(f))
    save_obj(tmp_path / "mine" / "sub" / "b.obj", torch.from_numpy(v).float(), torch.from_numpy(f))
    out = load_obj_folder(tmp_path)
    assert sorted(out) == [CHAIR, "mine"] and len(out[CHAIR]) == 1
    nv, nf = out[CHAIR][0]
    np.testing.assert_allclose(nv.min(0), [-0.5, -0.25, -0.125], atol=1e-6)
    np.testing.assert_allclose(nv.max(0), [0.5, 0.25, 0.125], atol=1e-6)
    assert nf.shape == (12, 3)
    with pytest.raises(FileNotFoundError, match="folder: expected a folder with one subfolder"):
        load_obj_folder(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="folder: expected subfolders of .obj files"):
        load_obj_folder(tmp_path / "empty")


# ---------------------------------------------------------------------------------------
# the writer


def test_write_dataset_round_trip(tmp_path):
    lv, lf = l_block()
    table = make_shape("table", np.random.default_rng(0))
    shapes = {TABLE: {"train": [(lv, lf), table], "val": [table], "test": [(lv, lf)]}}
    colors = {TABLE: {"train": np.array([[0.8, 0.4, 0.2], [0.3, 0.6, 0.9]]), "val": [[0.5] * 3], "test": [[0.2] * 3]}}
    manifest = write_dataset(tmp_path, shapes, seed=1, colors=colors, batch_size=1, progress=False)
    assert manifest["objects"] == {TABLE: {"train": 2, "val": 1, "test": 1}}
    assert json.loads((tmp_path / "dataset.json").read_text())["objects"] == manifest["objects"]
    with np.load(tmp_path / f"{TABLE}_train_images.npz") as z:
        assert z.files == ["arr_0"] and z["arr_0"].dtype == np.uint8 and z["arr_0"].shape == (2, 24, 4, 64, 64)
    ds = ShapeNetRenderings(tmp_path, split="train")
    assert ds.class_ids == (TABLE,) and len(ds) == 2
    # voxels: the hand-computed grid, and what the evaluation computes from the same mesh (IoU 1)
    stored = ds.voxels(TABLE, [0, 1])
    assert np.array_equal(stored[0].numpy(), l_block_expected())
    pred = mesh_to_dataset_voxels(torch.from_numpy(lv)[None], torch.from_numpy(lf))
    assert float(voxel_iou(pred, stored[:1])[0]) == 1.0
    assert torch.equal(ShapeNetRenderings(tmp_path, split="test").voxels(TABLE, [0])[0], pred[0])
    # images: the stored view k equals softras.Renderer's rendering from view_eyes(k)
    for k in (0, 5, 17):
        renderer = sr.Renderer(image_size=64, viewing_angle=15, eye=view_eyes([k]))
        for obj, (v, f) in enumerate([(lv, lf), table]):
            tex = torch.tensor(colors[TABLE]["train"][obj], dtype=torch.float32).expand(1, len(f), 1, 3)
            want = renderer(torch.from_numpy(v)[None], torch.from_numpy(f)[None], tex)[0]
            got = ds.images(TABLE, [obj], [k], as_float=True)[0]
            assert float((got - want).abs().max()) <= 0.5 / 255 + 1e-6
            assert float(want[3].sum()) > 20  # the object is in view
    # the L sits at x < 0; at view 0 (camera on -z looking toward +z, its x axis is the world's
    # +x) it shows up in the left half of the image
    alpha = ds.images(TABLE, [0], [0], as_float=True)[0, 3]
    cols = torch.nonzero(alpha.sum(0) > 0)[:, 0]
    assert int(cols.max()) < 32


def test_ensure_procedural_dataset_writes_once(tmp_path):
    out = ensure_procedural_dataset(tmp_path / "p", objects_per_class=3, class_ids=["chair", "lamp"], progress=False)
    ds = ShapeNetRenderings(out, split="test")
    assert ds.class_ids == ("03001627", "03636649") and len(ds) == 2
    stamp = (out / "dataset.json").stat().st_mtime_ns
    assert ensure_procedural_dataset(out, objects_per_class=3, class_ids=["chair", "lamp"]) == out
    assert (out / "dataset.json").stat().st_mtime_ns == stamp
    assert all(len(ShapeNetRenderings(out, split=s)) == 2 for s in ("train", "val"))
