"""A synthetic body model in SMPL's own file format, so body fitting runs without licensed files.

The humanoid is a set of closed tubes swept along SMPL's skeleton (T-pose, SMPL's frame: y up,
facing +z, the body's left on +x, metres, about 1.71 m tall): one tube for the torso, neck and
head, one per leg, per foot, per arm and per palm, and one per finger (four fingers and a thumb
on each hand). The parts are **separate closed surfaces** that overlap where they join (a leg
starts inside the torso, the fingers inside the palm): every part is watertight (each edge is
shared by exactly two of its faces), its faces are counter-clockwise seen from outside, and the
union looks like one body. Rings of vertices sit exactly at the joints, so the ``J_regressor``
(the mean of one ring per joint) puts every joint on its limb's axis.

Skinning follows the skeleton along each tube: a ring belongs to the joint whose bone it lies
on, blended smoothly (a smoothstep over a few centimetres) into the next bone around each
joint. The fingers and the second half of the palm follow the hand joint (22 left, 23 right),
so they bend with it; the thumb and the rest of the palm follow the wrist (20, 21). The SMPL+H
and SMPL-X variants give each finger its three MANO joints.

Shape directions: beta 0 scales the body about the pelvis (height, 5 % per unit), beta 1
lengthens arms and legs (12 % of each limb per unit), beta 2 thickens every tube (girth, 15 %
of the radius per unit); betas 3-9 are zero. Pose correctives are zeros.

The file is generated on first use into ``$SOFTRAS_CACHE/body`` (default ``~/.cache/softras``)
under a name that carries a hash of this module's source, written atomically; the output is a
deterministic function of the source, byte for byte.

    python -m softras.body.synthetic --out model.pkl [--type smpl|smplh|smplx]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "SMPL_JOINT_NAMES",
    "SMPL_PARENTS",
    "synthetic_model",
    "synthetic_model_path",
    "write_synthetic_model",
]

SMPL_JOINT_NAMES = (
    "pelvis", "l_hip", "r_hip", "spine1", "l_knee", "r_knee", "spine2", "l_ankle", "r_ankle", "spine3",
    "l_foot", "r_foot", "neck", "l_collar", "r_collar", "head", "l_shoulder", "r_shoulder", "l_elbow",
    "r_elbow", "l_wrist", "r_wrist", "l_hand", "r_hand",
)  # fmt: skip
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
BODY_TYPES = ("smpl", "smplh", "smplx")

# Finger joints in MANO's order (as SMPL+H and SMPL-X number them), three per finger.
_FINGERS = ("index", "middle", "pinky", "ring", "thumb")
# The extended skeleton the generator skins to: SMPL's 24 joints, then 15 left and 15 right
# finger joints (24 + 15 * side + 3 * finger + k).
_NUM_EXT = 24 + 30
_MIRROR = {1: 2, 4: 5, 7: 8, 10: 11, 13: 14, 16: 17, 18: 19, 20: 21, 22: 23}
_MIRROR.update({v: k for k, v in list(_MIRROR.items())})


def _finger_joint(side: int, finger: str, k: int) -> int:
    return 24 + 15 * side + 3 * _FINGERS.index(finger) + k


def _mirror_joint(j: int) -> int:
    if j >= 24:
        return j + 15 if j < 39 else j - 15
    return _MIRROR.get(j, j)


@dataclass(frozen=True)
class _Node:
    point: tuple[float, float, float]  # on the tube's axis
    radii: tuple[float, float]  # along the ring's first and second axis
    joint: int | None = None  # the extended joint whose bone starts here
    regress: bool = False  # this ring defines the joint's position


@dataclass(frozen=True)
class _Part:
    name: str
    nodes: tuple[_Node, ...]
    up: tuple[float, float, float]  # the ring's first axis is `up` made orthogonal to the axis
    ring: int  # vertices per ring
    step: float  # ring spacing along the axis
    cap_rings: int
    girth: float  # girth shape direction (fraction of the radius per unit beta)
    limb: str | None  # "arm" or "leg": lengthened by beta 1


def _n(x, y, z, a, b, joint=None, regress=False) -> _Node:
    return _Node((x, y, z), (a, b), joint, regress)


def _parts_left_and_centre() -> list[_Part]:
    """The torso and the left limbs; the right limbs are their mirror images."""
    y_up, z_fwd = (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)
    torso = _Part(
        "torso",
        (
            _n(0, -0.36, 0, 0.09, 0.13),
            _n(0, -0.22, 0, 0.11, 0.17, 0, True),
            _n(0, -0.11, 0, 0.10, 0.145, 3, True),
            _n(0, 0.03, 0, 0.11, 0.16, 6, True),
            _n(0, 0.09, 0, 0.115, 0.17, 9, True),
            _n(0, 0.20, 0, 0.11, 0.18),
            _n(0, 0.27, 0, 0.06, 0.07),
            _n(0, 0.30, 0, 0.055, 0.055, 12, True),
            _n(0, 0.35, 0, 0.075, 0.07),
            _n(0, 0.38, 0, 0.095, 0.085, 15, True),
            _n(0, 0.44, 0, 0.10, 0.09),
        ),
        z_fwd, 24, 0.02, 4, 0.15, None,
    )  # fmt: skip
    leg = _Part(
        "l_leg",
        (
            _n(0.09, -0.20, 0, 0.07, 0.07),
            _n(0.09, -0.31, 0, 0.075, 0.078, 1, True),
            _n(0.095, -0.50, 0, 0.062, 0.065),
            _n(0.10, -0.70, 0, 0.05, 0.05, 4, True),
            _n(0.10, -0.85, -0.01, 0.05, 0.048),
            _n(0.10, -1.10, -0.02, 0.035, 0.035, 7, True),
        ),
        z_fwd, 14, 0.025, 3, 0.15, "leg",
    )  # fmt: skip
    foot = _Part(
        "l_foot",
        (
            _n(0.10, -1.135, -0.07, 0.035, 0.04),
            _n(0.10, -1.135, -0.02, 0.035, 0.042, 7),
            _n(0.11, -1.14, 0.10, 0.03, 0.04, 10, True),
            _n(0.11, -1.14, 0.15, 0.025, 0.035),
        ),
        y_up, 10, 0.02, 3, 0.05, "leg",
    )  # fmt: skip
    arm = _Part(
        "l_arm",
        (
            _n(0.05, 0.22, 0, 0.05, 0.05),
            _n(0.07, 0.22, 0, 0.055, 0.055, 13, True),
            _n(0.17, 0.22, 0, 0.058, 0.055, 16, True),
            _n(0.30, 0.22, 0, 0.048, 0.045),
            _n(0.43, 0.22, 0, 0.04, 0.04, 18, True),
            _n(0.55, 0.22, 0, 0.037, 0.035),
            _n(0.68, 0.22, 0, 0.026, 0.032, 20, True),
        ),
        y_up, 12, 0.022, 3, 0.15, "arm",
    )  # fmt: skip
    palm = _Part(
        "l_palm",
        (
            _n(0.665, 0.22, 0, 0.014, 0.030),
            _n(0.68, 0.22, 0, 0.015, 0.038, 20),
            _n(0.78, 0.22, 0, 0.014, 0.042, 22, True),
            _n(0.795, 0.22, 0, 0.012, 0.040),
        ),
        y_up, 10, 0.012, 3, 0.05, "arm",
    )  # fmt: skip
    parts = [torso, leg, foot, arm, palm]
    for finger, z, length in (("index", 0.027, 0.075), ("middle", 0.009, 0.085), ("ring", -0.009, 0.08),
                              ("pinky", -0.027, 0.065)):  # fmt: skip
        x0, y = 0.785, 0.218
        nodes = (
            _n(0.77, y, z, 0.0085, 0.0085),
            *(
                _n(x0 + f * length, y, z, 0.0085 - 0.001 * k, 0.0085 - 0.001 * k, _finger_joint(0, finger, k), True)
                for k, f in enumerate((0.0, 0.4, 0.7))
            ),
            _n(x0 + length, y, z, 0.0075, 0.0075),
        )
        parts.append(_Part(f"l_{finger}", nodes, y_up, 6, 0.01, 2, 0.05, "arm"))
    thumb = (
        _n(0.690, 0.212, 0.030, 0.011, 0.011),
        _n(0.700, 0.212, 0.035, 0.011, 0.011, _finger_joint(0, "thumb", 0), True),
        _n(0.725, 0.210, 0.058, 0.010, 0.010, _finger_joint(0, "thumb", 1), True),
        _n(0.745, 0.208, 0.075, 0.0095, 0.0095, _finger_joint(0, "thumb", 2), True),
        _n(0.760, 0.207, 0.088, 0.009, 0.009),
    )
    parts.append(_Part("l_thumb", thumb, y_up, 6, 0.01, 2, 0.05, "arm"))
    return parts


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _tube(part: _Part) -> dict:
    """One closed tube: vertices, faces, per-vertex centres and extended skinning weights."""
    pts = np.array([n.point for n in part.nodes], dtype=np.float64)
    radii = np.array([n.radii for n in part.nodes], dtype=np.float64)
    seg_len = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    node_s = np.concatenate([[0.0], np.cumsum(seg_len)])
    # samples along the axis: every node exactly, and evenly between them
    s_list, node_sample = [0.0], [0]
    for k, length in enumerate(seg_len):
        m = max(1, int(np.ceil(length / part.step - 1e-9)))
        s_list += [node_s[k] + length * i / m for i in range(1, m + 1)]
        node_sample.append(len(s_list) - 1)
    s = np.array(s_list)
    centres = np.stack([np.interp(s, node_s, pts[:, d]) for d in range(3)], axis=1)
    rad = np.stack([np.interp(s, node_s, radii[:, d]) for d in range(2)], axis=1)
    seg_dir = np.diff(pts, axis=0) / seg_len[:, None]
    seg_of = np.clip(np.searchsorted(node_s, s, side="right") - 1, 0, len(seg_len) - 1)
    tangents = seg_dir[seg_of].copy()
    for k in range(1, len(pts) - 1):  # at an inner node: the mean of both directions
        t = seg_dir[k - 1] + seg_dir[k]
        tangents[node_sample[k]] = t / np.linalg.norm(t)
    up = np.array(part.up)
    n1 = up[None] - (tangents @ up)[:, None] * tangents
    n1 /= np.linalg.norm(n1, axis=1, keepdims=True)
    n2 = np.cross(tangents, n1)

    # extended skinning weights per sample, along the labelled nodes
    labelled = [(node_s[k], n.joint) for k, n in enumerate(part.nodes) if n.joint is not None]
    w_sample = np.zeros((len(s), _NUM_EXT))
    prev = np.ones(len(s))
    for i, (s_i, joint) in enumerate(labelled):
        if i + 1 < len(labelled):
            s_next = labelled[i + 1][0]
            gap = [s_next - s_i] + ([labelled[i + 2][0] - s_next] if i + 2 < len(labelled) else [])
            width = min(0.025, 0.3 * min(gap))
            nxt = _smoothstep((s - (s_next - width)) / (2 * width))
        else:
            nxt = np.zeros(len(s))
        w_sample[:, joint] += prev - nxt
        prev = nxt

    theta = 2 * np.pi * np.arange(part.ring) / part.ring
    cos, sin = np.cos(theta), np.sin(theta)

    def ring(c, a, b, e1, e2):
        return c[None] + a * cos[:, None] * e1[None] + b * sin[:, None] * e2[None]

    rings, ring_centre, ring_sample = [], [], []
    caps = []
    for end in (0, len(s) - 1):
        sign = -1.0 if end == 0 else 1.0
        a, b = rad[end]
        depth = 0.5 * (a + b)
        cap = []
        for k in range(1, part.cap_rings):
            phi = 0.5 * np.pi * k / part.cap_rings
            c = centres[end] + sign * depth * np.sin(phi) * tangents[end]
            cap.append(ring(c, a * np.cos(phi), b * np.cos(phi), n1[end], n2[end]))
        caps.append((cap, centres[end] + sign * depth * tangents[end]))
    start_cap, start_pole = caps[0]
    end_cap, end_pole = caps[1]
    for r in reversed(start_cap):
        rings.append(r), ring_centre.append(centres[0]), ring_sample.append(0)
    first_tube_ring = len(rings)
    for i in range(len(s)):
        rings.append(ring(centres[i], rad[i, 0], rad[i, 1], n1[i], n2[i]))
        ring_centre.append(centres[i]), ring_sample.append(i)
    for r in end_cap:
        rings.append(r), ring_centre.append(centres[-1]), ring_sample.append(len(s) - 1)

    n, R = part.ring, len(rings)
    verts = np.concatenate([start_pole[None], *rings, end_pole[None]])
    centre_of = np.concatenate([centres[:1], np.repeat(np.array(ring_centre), n, axis=0), centres[-1:]])
    sample_of = np.concatenate([[0], np.repeat(ring_sample, n), [len(s) - 1]])
    idx = 1 + np.arange(R * n).reshape(R, n)
    nxt = np.roll(idx, -1, axis=1)
    faces = [np.stack([np.zeros(n, dtype=np.int64), nxt[0], idx[0]], axis=1)]
    for j in range(R - 1):
        a, b, c, d = idx[j], nxt[j], nxt[j + 1], idx[j + 1]
        faces += [np.stack([a, b, c], axis=1), np.stack([a, c, d], axis=1)]
    faces.append(np.stack([idx[-1], nxt[-1], np.full(n, R * n + 1)], axis=1))
    regress = {n_.joint: idx[first_tube_ring + node_sample[k]] for k, n_ in enumerate(part.nodes) if n_.regress}
    return {
        "v": verts,
        "f": np.concatenate(faces),
        "centre": centre_of,
        "w": w_sample[sample_of],
        "regress": regress,
    }


def _assemble() -> dict:
    """All parts (the right ones mirrored), concatenated, with the extended skeleton."""
    pieces = []
    for part in _parts_left_and_centre():
        tube = _tube(part)
        pieces.append((part, tube))
        if part.name.startswith("l_"):
            perm = [_mirror_joint(j) for j in range(_NUM_EXT)]
            flip = np.array([-1.0, 1.0, 1.0])
            w = np.zeros_like(tube["w"])
            w[:, perm] = tube["w"]
            mirrored = {
                "v": tube["v"] * flip,
                "f": tube["f"][:, [0, 2, 1]],  # a mirror image turns the winding around
                "centre": tube["centre"] * flip,
                "w": w,
                "regress": {_mirror_joint(j): ids for j, ids in tube["regress"].items()},
            }
            pieces.append((dataclasses.replace(part, name="r_" + part.name[2:]), mirrored))
    verts, faces, centres, weights, part_id, regress = [], [], [], [], [], {}
    offset = 0
    for k, (_, tube) in enumerate(pieces):
        verts.append(tube["v"])
        faces.append(tube["f"] + offset)
        centres.append(tube["centre"])
        weights.append(tube["w"])
        part_id.append(np.full(len(tube["v"]), k))
        for j, ids in tube["regress"].items():
            regress[j] = ids + offset
        offset += len(tube["v"])
    return {
        "v": np.concatenate(verts),
        "f": np.concatenate(faces),
        "centre": np.concatenate(centres),
        "w": np.concatenate(weights),
        "part": np.concatenate(part_id),
        "parts": [p for p, _ in pieces],
        "regress": regress,
    }


def _shapedirs(body: dict, num: int) -> np.ndarray:
    v, centre = body["v"], body["centre"]
    parts = body["parts"]
    dirs = np.zeros((len(v), 3, num))
    pelvis = v[body["regress"][0]].mean(axis=0)
    dirs[:, :, 0] = 0.05 * (v - pelvis)  # height: a uniform scale about the pelvis
    limb = np.array([parts[p].limb or "" for p in body["part"]])
    arm, leg = limb == "arm", limb == "leg"
    dirs[arm, 0, 1] = 0.12 * np.sign(v[arm, 0]) * np.maximum(np.abs(v[arm, 0]) - 0.17, 0.0)
    dirs[leg, 1, 1] = -0.12 * np.maximum(-0.31 - v[leg, 1], 0.0)
    girth = np.array([parts[p].girth for p in body["part"]])
    dirs[:, :, 2] = girth[:, None] * (v - centre)
    return dirs


def _nearest(v: np.ndarray, mask: np.ndarray, target) -> int:
    ids = np.flatnonzero(mask)
    return int(ids[np.argmin(np.linalg.norm(v[ids] - np.asarray(target), axis=1))])


def _vertex_ids(body: dict) -> dict[str, int]:
    v, names = body["v"], np.array([p.name for p in body["parts"]])[body["part"]]
    head = (names == "torso") & (v[:, 1] > 0.36)
    ids = {
        "nose": _nearest(v, head, (0, 0.43, 0.12)),
        "reye": _nearest(v, head, (-0.035, 0.46, 0.10)),
        "leye": _nearest(v, head, (0.035, 0.46, 0.10)),
        "rear": _nearest(v, head, (-0.10, 0.44, 0.0)),
        "lear": _nearest(v, head, (0.10, 0.44, 0.0)),
    }
    for side, sx in (("l", 1.0), ("r", -1.0)):
        for finger in ("thumb", "index", "middle", "ring", "pinky"):
            mask = names == f"{side}_{finger}"
            tip = v[mask][np.argmax(sx * v[mask, 0] + (v[mask, 2] if finger == "thumb" else 0))]
            ids[f"{side}{finger}"] = _nearest(v, mask, tip)
    for side, sx in (("L", 1.0), ("R", -1.0)):
        foot = names == f"{side.lower()}_foot"
        ids[f"{side}BigToe"] = _nearest(v, foot, (sx * 0.09, -1.15, 0.19))
        ids[f"{side}SmallToe"] = _nearest(v, foot, (sx * 0.14, -1.15, 0.15))
        ids[f"{side}Heel"] = _nearest(v, foot, (sx * 0.10, -1.16, -0.11))
    return ids


def _joint_map(body_type: str) -> tuple[np.ndarray, list[int], list[int]]:
    """How the extended joints map onto ``body_type``'s: a [54, J] weight map, J's regressor
    sources (an extended joint per joint) and J's parents."""
    ext_parent = list(SMPL_PARENTS) + [0] * 30
    for side, wrist in ((0, 20), (1, 21)):
        for finger in _FINGERS:
            for k in range(3):
                j = _finger_joint(side, finger, k)
                ext_parent[j] = wrist if k == 0 else j - 1
    if body_type == "smpl":
        target = list(range(24)) + [22] * 15 + [23] * 15
        for side, wrist in ((0, 20), (1, 21)):  # the thumb moves with the wrist
            for k in range(3):
                target[_finger_joint(side, "thumb", k)] = wrist
        sources = list(range(24))
        parents = list(SMPL_PARENTS)
    else:
        first_finger = 22 if body_type == "smplh" else 25
        target = list(range(22)) + [20, 21] + [first_finger + j for j in range(30)]
        sources = list(range(22))
        parents = list(SMPL_PARENTS[:22])
        if body_type == "smplx":  # jaw and eyes, at the head's position
            sources += [15, 15, 15]
            parents += [15, 15, 15]
        sources += list(range(24, 54))
        remap = {j: j for j in range(22)} | {24 + j: first_finger + j for j in range(30)}
        parents += [remap[ext_parent[j]] for j in range(24, 54)]
    mapping = np.zeros((_NUM_EXT, len(sources)))
    mapping[np.arange(_NUM_EXT), target] = 1.0
    return mapping, sources, parents


def synthetic_model(body_type: str = "smpl") -> dict:
    """The synthetic model as a dict of numpy arrays with SMPL's (or SMPL+H's, SMPL-X's) keys."""
    if body_type not in BODY_TYPES:
        raise ValueError(f"body_type: expected one of {BODY_TYPES}, got {body_type!r}")
    body = _assemble()
    v, f = body["v"], body["f"]
    mapping, sources, parents = _joint_map(body_type)
    J = len(sources)
    regressor = np.zeros((J, len(v)))
    for j, src in enumerate(sources):
        ids = body["regress"][src]
        regressor[j, ids] = 1.0 / len(ids)
    kintree = np.stack([np.array(parents, dtype=np.int64), np.arange(J, dtype=np.int64)])
    data = {
        "v_template": v,
        "shapedirs": _shapedirs(body, 10 if body_type != "smplx" else 20),  # SMPL-X: 10 shape + 10 expression
        "posedirs": np.zeros((len(v), 3, 9 * (J - 1)), dtype=np.float32),
        "J_regressor": regressor,
        "weights": body["w"] @ mapping,
        "kintree_table": kintree,
        "f": f.astype(np.uint32),
        "vertex_ids": _vertex_ids(body),
    }
    if body_type != "smpl":
        for side in ("l", "r"):
            data[f"hands_components{side}"] = np.eye(45)
            data[f"hands_mean{side}"] = np.zeros(45)
    if body_type == "smplx":
        names = np.array([p.name for p in body["parts"]])[body["part"]]
        head = (names == "torso") & (v[:, 1] > 0.36)
        head_faces = np.flatnonzero(head[f].all(axis=1))
        data["lmk_faces_idx"] = head_faces[np.linspace(0, len(head_faces) - 1, 51).astype(np.int64)]
        data["lmk_bary_coords"] = np.full((51, 3), 1.0 / 3.0)
        dyn = head_faces[np.linspace(0, len(head_faces) - 1, 79 * 17).astype(np.int64)]
        data["dynamic_lmk_faces_idx"] = dyn.reshape(79, 17)
        data["dynamic_lmk_bary_coords"] = np.full((79, 17, 3), 1.0 / 3.0)
    return data


def write_synthetic_model(path: str | Path, body_type: str = "smpl") -> Path:
    """Writes the synthetic model as a pickle (atomically: a temporary file, then a rename)."""
    path = Path(path)
    data = synthetic_model(body_type)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(data, fh, protocol=4)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _source_key() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def synthetic_model_path(body_type: str = "smpl") -> Path:
    """The cached synthetic model file of ``body_type``, generated on first use."""
    if body_type not in BODY_TYPES:
        raise ValueError(f"body_type: expected one of {BODY_TYPES}, got {body_type!r}")
    root = Path(os.environ.get("SOFTRAS_CACHE", Path.home() / ".cache" / "softras")) / "body"
    path = root / f"synthetic_{body_type}_{_source_key()}.pkl"
    if not path.exists():
        write_synthetic_model(path, body_type)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the pickle to write")
    parser.add_argument("--type", default="smpl", choices=BODY_TYPES, help="the body model's layout")
    args = parser.parse_args(argv)
    print(write_synthetic_model(args.out, args.type))


if __name__ == "__main__":
    main()
