"""Procedural shape families for a small reconstruction dataset, and OBJ folders.

Each shape is a union of closed, outward-oriented parametric parts (boxes, frusta/cylinders,
ellipsoids) with random proportions, normalized as the benchmark normalizes ShapeNet objects:
the bounding box is centred at the origin and scaled so that its longest side is 1, i.e. the
coordinates lie in ``[-0.5, 0.5]``. Parts may overlap; the solid voxelizer fills a union of
closed parts as the union of their interiors. Up is +y; the front of chairs, cabinets, lamps
faces -z (toward the camera of view 0) and airplanes fly toward +z.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .shapenet import CLASS_NAMES, class_id_of

__all__ = [
    "PROCEDURAL_CLASSES",
    "box",
    "ellipsoid",
    "frustum",
    "load_obj_folder",
    "make_shape",
    "merge",
    "normalize_unit_cube",
]

Part = tuple[np.ndarray, np.ndarray]  # vertices [V, 3] float64, faces [F, 3] int64


# ---------------------------------------------------------------------------------------
# parts (counter-clockwise seen from outside, so face normals point outward)


def box(center, size) -> Part:
    """An axis-aligned box: 8 vertices, 12 triangles."""
    c, s = np.asarray(center, float), np.asarray(size, float)
    corners = np.array([[(i >> 0) & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], float) - 0.5
    quads = [(0, 4, 6, 2), (1, 3, 7, 5), (0, 1, 5, 4), (2, 6, 7, 3), (0, 2, 3, 1), (4, 5, 7, 6)]
    faces = np.array([t for a, b, cc, d in quads for t in ((a, b, cc), (a, cc, d))], np.int64)
    return c + corners * s, faces


def _frame(axis) -> np.ndarray:
    """Rotation [3, 3] whose second column (local y) is ``axis``."""
    y = np.asarray(axis, float)
    y = y / np.linalg.norm(y)
    helper = np.array([1.0, 0, 0]) if abs(y[0]) < 0.9 else np.array([0, 0, 1.0])
    x = np.cross(y, helper)
    x /= np.linalg.norm(x)
    z = np.cross(x, y)
    return np.stack([x, y, z], 1)


def frustum(base, axis, r0: float, r1: float, length: float, segments: int = 12) -> Part:
    """A closed truncated cone from ``base`` along ``axis`` (radius r0 at the base, r1 at the
    top; r0 == r1 is a cylinder); caps included."""
    a = 2 * np.pi * np.arange(segments) / segments
    ring = np.stack([np.cos(a), np.zeros_like(a), -np.sin(a)], 1)  # counter-clockwise seen from +y
    bottom, top = ring * r0, ring * r1 + [0, length, 0]
    v = np.concatenate([bottom, top, [[0, 0, 0], [0, length, 0]]])
    n = segments
    i = np.arange(n)
    j = (i + 1) % n
    side = np.concatenate([np.stack([i, j, n + j], 1), np.stack([i, n + j, n + i], 1)])
    caps = np.concatenate([np.stack([np.full(n, 2 * n), j, i], 1), np.stack([np.full(n, 2 * n + 1), n + i, n + j], 1)])
    return np.asarray(base, float) + v @ _frame(axis).T, np.concatenate([side, caps]).astype(np.int64)


def ellipsoid(center, radii, rings: int = 8, segments: int = 12) -> Part:
    """A closed UV ellipsoid with poles on the y axis."""
    theta = np.pi * np.arange(1, rings) / rings  # latitude rings between the poles
    a = 2 * np.pi * np.arange(segments) / segments
    st, ct = np.sin(theta)[:, None], np.cos(theta)[:, None]
    ring = np.stack([st * np.cos(a), np.broadcast_to(ct, (len(theta), segments)), -st * np.sin(a)], -1)
    v = np.concatenate([ring.reshape(-1, 3), [[0, 1, 0], [0, -1, 0]]])
    m, n = rings - 1, segments
    faces = []
    for r in range(m - 1):  # quads between ring r (upper) and r + 1 (lower)
        for k in range(n):
            a0, a1 = r * n + k, r * n + (k + 1) % n
            b0, b1 = a0 + n, a1 + n
            faces += [(a0, b0, b1), (a0, b1, a1)]
    top, bot = m * n, m * n + 1
    for k in range(n):
        faces.append((top, k, (k + 1) % n))
        faces.append((bot, (m - 1) * n + (k + 1) % n, (m - 1) * n + k))
    return np.asarray(center, float) + v * np.asarray(radii, float), np.array(faces, np.int64)


def merge(parts: list[Part]) -> Part:
    """One mesh from several parts (faces re-indexed)."""
    vs, fs, offset = [], [], 0
    for v, f in parts:
        vs.append(v)
        fs.append(f + offset)
        offset += len(v)
    return np.concatenate(vs), np.concatenate(fs)


def normalize_unit_cube(vertices: np.ndarray) -> np.ndarray:
    """Centre the bounding box at the origin and scale its longest side to 1 (as float32)."""
    v = np.asarray(vertices, np.float64)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise ValueError(f"vertices: expected a non-empty [V, 3] array, got shape {list(v.shape)}")
    lo, hi = v.min(0), v.max(0)
    extent = float((hi - lo).max())
    if not math.isfinite(extent) or extent <= 0:
        raise ValueError(f"vertices: expected a finite mesh of positive extent, got bounding box {lo} .. {hi}")
    return ((v - (lo + hi) / 2) / extent).astype(np.float32)


# ---------------------------------------------------------------------------------------
# families


def _table(rng: np.random.Generator) -> list[Part]:
    w, d = rng.uniform(1.0, 2.0), rng.uniform(0.6, 1.2)
    h, t = rng.uniform(0.5, 0.9), rng.uniform(0.04, 0.1)
    parts = [box([0, h - t / 2, 0], [w, t, d])]
    if rng.random() < 0.3:  # pedestal table
        r = rng.uniform(0.05, 0.12)
        parts.append(frustum([0, 0.03, 0], [0, 1, 0], r, r, h - t))
        parts.append(frustum([0, 0, 0], [0, 1, 0], rng.uniform(0.25, 0.4), rng.uniform(0.2, 0.3), 0.05, 16))
    else:
        leg, inset = rng.uniform(0.04, 0.09), rng.uniform(0.0, 0.1)
        round_legs = rng.random() < 0.5
        for sx in (-1, 1):
            for sz in (-1, 1):
                x, z = sx * (w / 2 - leg - inset), sz * (d / 2 - leg - inset)
                if round_legs:
                    parts.append(frustum([x, 0, z], [0, 1, 0], leg * 0.6, leg * 0.6, h - t / 2, 8))
                else:
                    parts.append(box([x, (h - t) / 2, z], [leg, h - t, leg]))
        if rng.random() < 0.4:  # a lower shelf
            parts.append(box([0, rng.uniform(0.1, 0.3) * h, 0], [w - 2 * inset - leg, t * 0.7, d - 2 * inset - leg]))
    return parts


def _chair(rng: np.random.Generator) -> list[Part]:
    w, d = rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6)
    h, t = rng.uniform(0.4, 0.5), rng.uniform(0.04, 0.09)
    back_h, back_t = rng.uniform(0.4, 0.7), rng.uniform(0.03, 0.08)
    leg = rng.uniform(0.03, 0.06)
    parts = [box([0, h - t / 2, 0], [w, t, d])]
    tilt = rng.uniform(0.0, 0.12)  # backrest leaning back (+z)
    parts.append(box([0, h + back_h / 2, d / 2 - back_t / 2 + tilt / 2], [w, back_h, back_t]))
    for sx in (-1, 1):
        for sz in (-1, 1):
            parts.append(box([sx * (w / 2 - leg / 2), (h - t) / 2, sz * (d / 2 - leg / 2)], [leg, h - t, leg]))
    if rng.random() < 0.35:  # armrests
        arm_h = rng.uniform(0.15, 0.25)
        for sx in (-1, 1):
            parts.append(box([sx * (w / 2 - 0.02), h + arm_h, 0], [0.04, 0.04, d]))
            parts.append(box([sx * (w / 2 - 0.02), h + arm_h / 2, -d / 2 + 0.03], [0.04, arm_h, 0.04]))
    return parts


def _lamp(rng: np.random.Generator) -> list[Part]:
    base_r, base_h = rng.uniform(0.12, 0.25), rng.uniform(0.03, 0.08)
    pole_h, pole_r = rng.uniform(0.6, 1.2), rng.uniform(0.015, 0.04)
    parts = [frustum([0, 0, 0], [0, 1, 0], base_r, base_r * rng.uniform(0.6, 1.0), base_h, 16)]
    parts.append(frustum([0, base_h * 0.5, 0], [0, 1, 0], pole_r, pole_r, pole_h, 8))
    top = np.array([0, base_h * 0.5 + pole_h, 0])
    if rng.random() < 0.4:  # an arm bending forward
        reach = rng.uniform(0.2, 0.4)
        arm_dir = np.array([0, rng.uniform(-0.2, 0.3), -1.0])
        parts.append(frustum(top, arm_dir, pole_r, pole_r, reach * np.linalg.norm(arm_dir), 8))
        top = top + arm_dir * reach
    shade_h = rng.uniform(0.15, 0.35)
    r_bottom, r_top = rng.uniform(0.12, 0.3), rng.uniform(0.05, 0.2)
    parts.append(frustum(top - [0, shade_h * 0.6, 0], [0, 1, 0], r_bottom, r_top, shade_h, 16))
    if rng.random() < 0.5:
        parts.append(ellipsoid(top - [0, shade_h * 0.6, 0], [r_top * 0.5] * 3, 6, 10))
    return parts


def _airplane(rng: np.random.Generator) -> list[Part]:
    length, radius = 1.0, rng.uniform(0.04, 0.12)
    span, chord = rng.uniform(0.5, 1.5), rng.uniform(0.1, 0.3)
    wing_z, sweep = rng.uniform(-0.2, 0.15), rng.uniform(0.0, 0.45)
    wing_y = rng.uniform(-0.7, 0.7) * radius  # low, mid or high wing
    parts = [ellipsoid([0, 0, 0], [radius, radius, length / 2], 8, 12)]
    # wings: two slabs swept back (toward -z) from the fuselage
    for sx in (-1, 1):
        v, f = box([0, 0, 0], [span / 2, 0.025, chord])
        v[:, 0] += sx * span / 4
        v[:, 2] -= sweep * np.abs(v[:, 0])  # swept back, more toward the tips
        v[:, 2] += wing_z
        v[:, 1] += wing_y
        parts.append((v, f))
    tail_span, tail_chord = span * rng.uniform(0.25, 0.4), chord * rng.uniform(0.5, 0.8)
    parts.append(box([0, 0, -length / 2 + tail_chord], [tail_span, 0.02, tail_chord]))
    fin_h = rng.uniform(0.1, 0.2)
    parts.append(box([0, fin_h / 2 + radius * 0.5, -length / 2 + tail_chord], [0.02, fin_h, tail_chord]))
    if rng.random() < 0.5:  # engines under the wings
        for sx in (-1, 1):
            x = sx * span * rng.uniform(0.15, 0.3)
            parts.append(frustum([x, -radius * 0.8, wing_z - chord / 2], [0, 0, 1], 0.035, 0.035, chord * 0.9, 10))
    return parts


def _cabinet(rng: np.random.Generator) -> list[Part]:
    w, h, d = rng.uniform(0.3, 1.4), rng.uniform(0.4, 1.8), rng.uniform(0.3, 0.8)
    feet = rng.uniform(0.0, 0.12) if rng.random() < 0.5 else 0.0
    parts = [box([0, feet + h / 2, 0], [w, h, d])]
    if rng.random() < 0.5:  # a top overhanging the body
        parts.append(box([0, feet + h + 0.02, 0], [w + 0.06, 0.04, d + 0.06]))
    if feet > 0:
        for sx in (-1, 1):
            for sz in (-1, 1):
                parts.append(box([sx * (w / 2 - 0.04), feet / 2, sz * (d / 2 - 0.04)], [0.05, feet, 0.05]))
    doors = int(rng.integers(1, 3))
    for k in range(doors):  # handles on the front (-z)
        x = 0.0 if doors == 1 else (k - 0.5) * 0.12
        parts.append(box([x, feet + h * rng.uniform(0.45, 0.6), -d / 2 - 0.015], [0.03, 0.12, 0.03]))
    return parts


PROCEDURAL_CLASSES: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "04379243": _table,
    "03001627": _chair,
    "03636649": _lamp,
    "02691156": _airplane,
    "02933112": _cabinet,
}


def make_shape(class_id: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random shape of a procedural family (id or name: table, chair, lamp, airplane,
    cabinet) -> vertices ``[V, 3]`` float32 in ``[-0.5, 0.5]`` (longest side exactly 1),
    faces ``[F, 3]`` int64 (a few hundred to ~1000)."""
    cid = class_id_of(class_id)
    if cid not in PROCEDURAL_CLASSES:
        names = ", ".join(f"{c} ({CLASS_NAMES[c]})" for c in PROCEDURAL_CLASSES)
        raise ValueError(f"class_id: expected one of {names}, got {class_id!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    v, f = merge(PROCEDURAL_CLASSES[cid](rng))
    return normalize_unit_cube(v), f


def load_obj_folder(folder: str | os.PathLike) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Meshes from a folder with one subfolder per class (named by class id, by a ShapeNet
    class name such as ``chair``, or by any other name used as is), OBJ files anywhere below
    it (sorted by path) -> ``{class_id: [(vertices [V, 3] float32 in [-0.5, 0.5], faces [F, 3]
    int64), ...]}``, each mesh normalized by :func:`normalize_unit_cube`."""
    from ..io import load_obj_geometry

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"folder: expected a folder with one subfolder of OBJ files per class, got {root}")
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(sub.rglob("*.obj"))
        if not files:
            continue
        cid = class_id_of(sub.name)
        if cid in out:
            raise ValueError(f"folder: classes {sub.name!r} and {CLASS_NAMES.get(cid, cid)!r} name the same id {cid}")
        meshes = []
        for path in files:
            v, f = load_obj_geometry(path)
            if len(f) == 0:
                raise ValueError(f"{path}: expected a mesh with triangles, found none")
            meshes.append((normalize_unit_cube(v.numpy()), f.numpy().astype(np.int64)))
        out[cid] = meshes
    if not out:
        found = ", ".join(sorted(p.name for p in root.iterdir())[:20]) or "nothing"
        raise ValueError(f"folder: expected subfolders of .obj files (one per class) in {root}, found {found}")
    return out
