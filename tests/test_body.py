"""Body models: the synthetic SMPL-format model, loading through smplx, chumpy-free pickles, helpers."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
import types

import numpy as np
import pytest
import smplx
import torch

from softras.body import (
    body_height,
    face_part_colors,
    face_textures_from_vertex_colors,
    find_model_file,
    load_body_model,
    part_of_vertices,
    synthetic_model,
    synthetic_model_path,
    vertex_part_colors,
    write_synthetic_model,
)
from softras.body import files as body_files

# SMPL's joint tree as published (the list), typed here independently of the generator
SMPL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]


@pytest.fixture(scope="module")
def smpl_file(tmp_path_factory):
    return write_synthetic_model(tmp_path_factory.mktemp("body") / "synthetic_smpl.pkl", "smpl")


@pytest.fixture(scope="module")
def smpl_data(smpl_file):
    with open(smpl_file, "rb") as fh:
        return pickle.load(fh)


@pytest.fixture(scope="module")
def smpl_model(smpl_file):
    return load_body_model(smpl_file, dtype=torch.float64)


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


# ---- the synthetic model ---------------------------------------------------------------------


def test_synthetic_model_has_smpl_keys_and_shapes(smpl_data):
    V = smpl_data["v_template"].shape[0]
    assert 2000 <= V <= 8000
    assert smpl_data["shapedirs"].shape == (V, 3, 10)
    assert smpl_data["posedirs"].shape == (V, 3, 207)
    assert smpl_data["J_regressor"].shape == (24, V)
    assert smpl_data["weights"].shape == (V, 24)
    assert smpl_data["kintree_table"].tolist() == [SMPL_PARENTS, list(range(24))]
    assert smpl_data["f"].shape[1] == 3 and smpl_data["f"].dtype == np.uint32
    assert not smpl_data["posedirs"].any()
    w = smpl_data["weights"]
    assert w.min() >= 0 and np.allclose(w.sum(axis=1), 1.0, atol=1e-12)
    assert np.allclose(smpl_data["J_regressor"].sum(axis=1), 1.0)


def test_synthetic_model_proportions(smpl_data):
    v = smpl_data["v_template"]
    assert 1.65 < np.ptp(v[:, 1]) < 1.75  # about 1.7 m tall, y up
    assert v[:, 0].max() == pytest.approx(-v[:, 0].min())  # left-right symmetric, arms along x
    J = smpl_data["J_regressor"] @ v
    # the designed T-pose skeleton: pelvis, hips, left wrist and hand on the x axis, head above the neck
    assert np.allclose(J[0], [0, -0.22, 0], atol=1e-9)
    assert np.allclose(J[1], [0.09, -0.31, 0], atol=1e-9) and np.allclose(J[2], [-0.09, -0.31, 0], atol=1e-9)
    assert np.allclose(J[20], [0.68, 0.22, 0], atol=1e-9) and np.allclose(J[23], [-0.78, 0.22, 0], atol=1e-9)
    assert J[15, 1] > J[12, 1] > J[9, 1] > J[6, 1] > J[3, 1] > J[0, 1]
    # the fingertips of the left hand lie beyond the left hand joint (+x), the right ones beyond -x
    ids = smpl_data["vertex_ids"]
    assert all(v[ids["l" + f], 0] > J[22, 0] for f in ("index", "middle", "ring", "pinky"))
    assert all(v[ids["r" + f], 0] < J[23, 0] for f in ("index", "middle", "ring", "pinky"))


def _components(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    parent = np.arange(num_vertices)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b, c in faces:
        for x, y in ((a, b), (b, c)):
            rx, ry = find(x), find(y)
            if rx != ry:
                parent[rx] = ry
    return np.array([find(i) for i in range(num_vertices)])


def test_synthetic_mesh_is_closed_and_outward(smpl_data):
    v, f = smpl_data["v_template"], smpl_data["f"].astype(np.int64)
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    undirected, counts = np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)
    assert (counts == 2).all()  # every edge shared by exactly two faces: closed surfaces
    assert len(np.unique(directed, axis=0)) == len(directed)  # each edge once each way: consistent winding
    comp = _components(f, len(v))
    roots = np.unique(comp)
    assert len(roots) == 19  # torso + 2 x (leg, foot, arm, palm, 4 fingers, thumb)
    for root in roots:
        ff = f[comp[f[:, 0]] == root]
        a, b, c = v[ff[:, 0]], v[ff[:, 1]], v[ff[:, 2]]
        volume = np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6
        assert volume > 0  # counter-clockwise seen from outside


def test_generator_is_deterministic(tmp_path, smpl_file):
    out = tmp_path / "again.pkl"
    subprocess.run([sys.executable, "-m", "softras.body.synthetic", "--out", str(out)], check=True, capture_output=True)
    assert out.read_bytes() == smpl_file.read_bytes()


def test_synthetic_model_path_caches(tmp_path, monkeypatch, smpl_file):
    monkeypatch.setenv("SOFTRAS_CACHE", str(tmp_path))
    path = synthetic_model_path("smpl")
    assert path.parent == tmp_path / "body" and path.read_bytes() == smpl_file.read_bytes()
    stamp = path.stat().st_mtime_ns
    assert synthetic_model_path("smpl") == path and path.stat().st_mtime_ns == stamp
    assert not list((tmp_path / "body").glob("*.tmp"))


# ---- loading through smplx -------------------------------------------------------------------


def test_loads_with_smplx_and_zero_pose_gives_template(smpl_model, smpl_data):
    assert type(smpl_model) is smplx.SMPL
    out = smpl_model()
    assert torch.allclose(out.vertices[0], torch.from_numpy(smpl_data["v_template"]), atol=1e-12)
    J = smpl_data["J_regressor"] @ smpl_data["v_template"]
    assert torch.allclose(out.joints[0, :24], torch.from_numpy(J), atol=1e-12)


def test_shape_directions(smpl_model, smpl_data):
    v0 = smpl_model().vertices[0].detach()
    j0 = smpl_model().joints[0, :24].detach()
    betas = torch.zeros(1, 10, dtype=torch.float64)
    # beta 0: 5 % taller (a uniform scale about the pelvis)
    v = smpl_model(betas=betas.index_fill(1, torch.tensor([0]), 1.0)).vertices[0].detach()
    assert float(body_height(v) / body_height(v0)) == pytest.approx(1.05, rel=1e-9)
    # beta 1: arms longer by 12 % beyond the shoulder: the left wrist at 0.68 + 0.12 * (0.68 - 0.17)
    j = smpl_model(betas=betas.index_fill(1, torch.tensor([1]), 1.0)).joints[0].detach()
    assert float(j[20, 0]) == pytest.approx(0.68 + 0.12 * 0.51, abs=1e-6)  # smplx rounds J_regressor to float32
    assert float(j[7, 1]) < float(j0[7, 1]) - 0.05  # and legs longer: the ankle lower
    # beta 2: girth moves vertices away from the limb axes, joints stay on them
    out = smpl_model(betas=betas.index_fill(1, torch.tensor([2]), 1.0))
    assert torch.allclose(out.joints[0, :24], j0, atol=1e-12)
    assert float((out.vertices[0].detach() - v0).norm(dim=1).max()) > 0.01


def test_hand_joint_bends_the_fingers(smpl_model, smpl_data):
    ids = smpl_data["vertex_ids"]
    pose = torch.zeros(1, 69, dtype=torch.float64)
    pose[0, 3 * 22 + 2] = math.pi / 2  # joint 23 (right hand), 90 degrees about z
    out = smpl_model(body_pose=pose)
    v0, v = smpl_model().vertices[0].detach(), out.vertices[0].detach()
    hand = torch.tensor([-0.78, 0.22, 0.0], dtype=torch.float64)
    tip0, tip = v0[ids["rmiddle"]] - hand, v[ids["rmiddle"]] - hand
    # the fingertip turned 90 degrees about the hand joint's z axis, the elbow did not move
    assert float(tip.norm()) == pytest.approx(float(tip0.norm()), rel=1e-6)  # joints: float32 J_regressor
    assert float(torch.dot(tip[:2], tip0[:2])) == pytest.approx(0.0, abs=1e-6)  # in the plane normal to z
    assert float(tip[2]) == pytest.approx(float(tip0[2]), abs=1e-9)
    assert torch.allclose(out.joints[0, 19], smpl_model().joints[0, 19])
    hand_mask = part_of_vertices(smpl_model.lbs_weights, (21, 23))
    assert bool(hand_mask[ids["rmiddle"]]) and not bool(hand_mask[ids["lmiddle"]])
    still = smpl_model.lbs_weights[:, 23] == 0  # joint 23 is a leaf: nothing else moves
    assert float((v - v0)[still].abs().max()) < 1e-12 and int(still.sum()) > 4000


def test_gradients_reach_pose_and_betas(smpl_model):
    g = torch.Generator().manual_seed(0)
    weights = torch.randn(smpl_model.get_num_verts(), 3, generator=g, dtype=torch.float64)
    pose0 = 0.3 * torch.randn(1, 69, generator=g, dtype=torch.float64)
    betas0 = torch.randn(1, 10, generator=g, dtype=torch.float64)

    def loss(pose, betas):
        return (smpl_model(body_pose=pose, betas=betas).vertices[0] * weights).sum()

    def fd_loss(pose, betas):
        with torch.no_grad():
            return loss(pose, betas)

    pose, betas = pose0.clone().requires_grad_(), betas0.clone().requires_grad_()
    loss(pose, betas).backward()
    eps = 1e-6
    for k in (3 * 17 + 1, 3 * 0 + 0):  # right elbow (y), left hip (x)
        d = torch.zeros_like(pose0)
        d[0, k] = eps
        fd = (fd_loss(pose0 + d, betas0) - fd_loss(pose0 - d, betas0)) / (2 * eps)
        assert float(pose.grad[0, k]) == pytest.approx(float(fd), rel=1e-5, abs=1e-7)
        assert abs(float(fd)) > 1e-3
    for k in (0, 2):
        d = torch.zeros_like(betas0)
        d[0, k] = eps
        fd = (fd_loss(pose0, betas0 + d) - fd_loss(pose0, betas0 - d)) / (2 * eps)
        assert float(betas.grad[0, k]) == pytest.approx(float(fd), rel=1e-5, abs=1e-7)
        assert abs(float(fd)) > 1e-3


@pytest.mark.parametrize("body_type", ["smplh", "smplx"])
def test_smplh_and_smplx_synthetic_files_load(tmp_path, body_type):
    data = synthetic_model(body_type)
    path = write_synthetic_model(tmp_path / f"{body_type.upper()}_NEUTRAL.pkl", body_type)
    model = load_body_model(tmp_path, body_type, dtype=torch.float64, use_pca=False)
    assert type(model) is (smplx.SMPLH if body_type == "smplh" else smplx.SMPLX)
    with torch.no_grad():
        out = model()
    assert torch.allclose(out.vertices[0], torch.from_numpy(data["v_template"]), atol=1e-12)
    # the first right-hand joint (index finger, MANO order) bends the index finger only
    hand_pose = torch.zeros(1, 45, dtype=torch.float64)
    hand_pose[0, 2] = 1.0
    with torch.no_grad():
        v = model(right_hand_pose=hand_pose).vertices[0]
    ids = data["vertex_ids"]
    assert float((v[ids["rindex"]] - out.vertices[0, ids["rindex"]]).norm()) > 0.02
    assert torch.allclose(v[ids["rmiddle"]], out.vertices[0, ids["rmiddle"]])
    assert find_model_file(tmp_path, body_type) == path


# ---- official-style files: chumpy and scipy objects, official names ---------------------------


class _FakeCh:
    """Pickles like chumpy.ch.Ch: its state is a dict holding the array under 'x'."""

    def __init__(self, x):
        self.x = x

    def __getstate__(self):
        return {"x": self.x, "_dirty_vars": set(), "_itr": None}


class _FakeCsc:
    """Pickles like scipy's csc_matrix: data, indices, indptr and _shape in its __dict__."""

    def __init__(self, dense):
        cols = [np.flatnonzero(dense[:, c]) for c in range(dense.shape[1])]
        self.data = np.concatenate([dense[rows, c] for c, rows in enumerate(cols)])
        self.indices = np.concatenate(cols).astype(np.int32)
        self.indptr = np.concatenate([[0], np.cumsum([len(r) for r in cols])]).astype(np.int32)
        self._shape = dense.shape
        self.maxprint = 50
        self.format = "csc"


def _write_official_style(path, data, sparse_module):
    """A SMPL pickle whose shapedirs is a chumpy object and J_regressor a scipy CSC matrix,
    written while modules of those names exist, which are removed afterwards."""
    names = ["chumpy", "chumpy.ch", "scipy", "scipy.sparse", sparse_module]
    saved = {n: sys.modules.get(n) for n in names}
    try:
        for n in names:
            sys.modules[n] = types.ModuleType(n)
        _FakeCh.__module__, _FakeCh.__qualname__ = "chumpy.ch", "Ch"
        _FakeCsc.__module__, _FakeCsc.__qualname__ = sparse_module, "csc_matrix"
        sys.modules["chumpy.ch"].Ch = _FakeCh
        sys.modules[sparse_module].csc_matrix = _FakeCsc
        official = dict(data)
        official["shapedirs"] = _FakeCh(data["shapedirs"])
        official["J_regressor"] = _FakeCsc(data["J_regressor"])
        official.pop("vertex_ids")  # loaded separately below, as for a file from elsewhere
        with open(path, "wb") as fh:
            pickle.dump(official, fh, protocol=2)
    finally:
        _FakeCh.__module__, _FakeCh.__qualname__ = __name__, "_FakeCh"
        _FakeCsc.__module__, _FakeCsc.__qualname__ = __name__, "_FakeCsc"
        for n, module in saved.items():
            if module is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = module
    assert b"chumpy.ch" in path.read_bytes() and sparse_module.encode() in path.read_bytes()


@pytest.mark.parametrize("sparse_module", ["scipy.sparse.csc", "scipy.sparse._csc"])
def test_official_style_pickle_loads_without_chumpy_or_scipy(
    tmp_path, monkeypatch, smpl_file, smpl_data, sparse_module
):
    monkeypatch.setattr(body_files, "_scipy_sparse", lambda: None)  # as if scipy were not installed
    folder = tmp_path / "models" / "smpl"
    folder.mkdir(parents=True)
    official = folder / "basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl"
    _write_official_style(official, smpl_data, sparse_module)
    assert "chumpy" not in sys.modules
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(official.read_bytes())  # a plain unpickler needs chumpy
    ids = smpl_data["vertex_ids"]
    plain = load_body_model(smpl_file, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    pose, betas = 0.4 * torch.randn(1, 69, generator=g), torch.randn(1, 10, generator=g)
    pose, betas = pose.double(), betas.double()
    expected = plain(body_pose=pose, betas=betas).vertices
    for source in (official, tmp_path / "models"):  # the file under its official name, and its folder
        model = load_body_model(source, dtype=torch.float64, vertex_ids=ids)
        assert torch.equal(model(body_pose=pose, betas=betas).vertices, expected)


def test_official_style_pickle_with_scipy(tmp_path, smpl_data):
    sparse = pytest.importorskip("scipy.sparse")
    data = dict(smpl_data)
    data["J_regressor"] = sparse.csc_matrix(data["J_regressor"])
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    path.write_bytes(pickle.dumps(data, protocol=2))
    read = body_files.read_model_file(path)
    assert np.array_equal(read["J_regressor"], smpl_data["J_regressor"])


def test_sparse_stand_in_rebuilds_csc_and_csr():
    dense = np.array([[0.0, 2.0, 0.0], [1.0, 0.0, 3.0]])
    csc = body_files.SparseStandIn()
    csc.__setstate__(
        {"data": np.array([1.0, 2.0, 3.0]), "indices": np.array([1, 0, 1]), "indptr": np.array([0, 1, 2, 3]),
         "_shape": (2, 3), "format": "csc"}
    )  # fmt: skip
    assert np.array_equal(np.asarray(csc), dense)
    csr = body_files.SparseStandIn()
    csr.__setstate__(
        {"data": np.array([2.0, 1.0, 3.0]), "indices": np.array([1, 0, 2]), "indptr": np.array([0, 1, 3]),
         "_shape": (2, 3), "format": "csr"}
    )  # fmt: skip
    assert np.array_equal(np.asarray(csr), dense)


# ---- bad inputs: one line each, naming the file ----------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_body_model(tmp_path / "nope.pkl")
    assert "nope.pkl" in _one_line(err)


def test_not_a_body_model(tmp_path):
    path = tmp_path / "other.pkl"
    path.write_bytes(pickle.dumps({"v_template": np.zeros((4, 3)), "faces": np.zeros((2, 3))}))
    with pytest.raises(ValueError) as err:
        load_body_model(path)
    text = _one_line(err)
    assert "other.pkl" in text and "shapedirs" in text and "J_regressor" in text and "kintree_table" in text
    text_file = tmp_path / "notes.pkl"
    text_file.write_text("hello")
    with pytest.raises(ValueError) as err:
        load_body_model(text_file)
    assert "notes.pkl" in _one_line(err) and "not a body model" in str(err.value)


def test_missing_gender_or_type_in_folder(tmp_path, smpl_file):
    (tmp_path / "smpl").mkdir()
    (tmp_path / "smpl" / "SMPL_NEUTRAL.pkl").write_bytes(smpl_file.read_bytes())
    with pytest.raises(FileNotFoundError) as err:
        load_body_model(tmp_path, gender="female")
    text = _one_line(err)
    assert "female" in text and "smpl/neutral" in text and str(tmp_path) in text
    with pytest.raises(FileNotFoundError) as err:
        load_body_model(tmp_path, "smplx")
    assert "smplx" in _one_line(err) and "smpl/neutral" in str(err.value)
    with pytest.raises(ValueError) as err:
        load_body_model(tmp_path, gender="other")
    assert "gender" in _one_line(err) and "'other'" in str(err.value)
    with pytest.raises(ValueError) as err:
        load_body_model(tmp_path, "mano")
    assert "body_type" in _one_line(err)


def test_wrong_shapes_and_layout(tmp_path, smpl_data):
    bad = dict(smpl_data)
    bad["weights"] = bad["weights"][:, :20]
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps(bad))
    with pytest.raises(ValueError) as err:
        load_body_model(path)
    text = _one_line(err)
    assert "bad.pkl" in text and "weights" in text and "[V, 24]" in text and "20" in text
    with pytest.raises(ValueError) as err:  # a SMPL file loaded as SMPL+H: hand keys missing
        load_body_model(tmp_path / "bad.pkl", "smplh")
    assert "hands_componentsl" in _one_line(err)


def test_vertex_ids_needed_for_other_topologies(tmp_path, smpl_data):
    data = dict(smpl_data)
    data.pop("vertex_ids")
    path = tmp_path / "noids.pkl"
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(ValueError) as err:
        load_body_model(path)
    assert "noids.pkl" in _one_line(err) and "vertex_ids" in str(err.value)
    with pytest.raises(ValueError) as err:
        load_body_model(path, vertex_ids={"nose": 0})
    assert "vertex_ids" in _one_line(err) and "reye" in str(err.value)


# ---- helpers -----------------------------------------------------------------------------------


def test_helpers_on_hand_made_values():
    v = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.5, 2.0], [0.0, 0.7, 0.0]]])
    assert torch.allclose(body_height(v), torch.tensor([1.7]))
    w = torch.tensor([[0.6, 0.4, 0.0], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])
    assert part_of_vertices(w, joints=(1, 2)).tolist() == [False, True, True]
    assert part_of_vertices(w, joints=(0,), threshold=0.1).tolist() == [True, True, False]
    palette = torch.eye(3)
    assert torch.equal(vertex_part_colors(w, palette), torch.eye(3)[[0, 2, 2]])
    faces = torch.tensor([[0, 1, 2], [0, 0, 1]])
    # face sums: [0.8, 0.7, 1.5] -> joint 2; [1.4, 1.1, 0.5] -> joint 0
    assert torch.equal(face_part_colors(w, faces, palette), torch.eye(3)[[2, 0]])
    tex = face_textures_from_vertex_colors(torch.eye(3), faces, texture_res=2)
    assert tex.shape == (1, 2, 4, 3)
    assert torch.allclose(tex[0, 0], torch.full((4, 3), 1 / 3)) and torch.allclose(
        tex[0, 1, 0], torch.tensor([2 / 3, 1 / 3, 0])
    )
    with pytest.raises(ValueError, match="joints"):
        part_of_vertices(w, joints=(5,))
    with pytest.raises(ValueError, match="faces"):
        face_textures_from_vertex_colors(torch.eye(3), torch.tensor([[0, 1, 3]]))
