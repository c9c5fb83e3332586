"""Writing a dataset in the public ShapeNet rendering format (see ``softras.datasets.shapenet``).

Every object is rendered at the 24 benchmark views (RGBA, the default lighting: ambient 0.5
plus a directional light 0.5 from +y, one flat colour per object, the sharp renderer's hard
settings at 128 x 128 averaged 2 x 2 down to 64 x 64) and voxelized at 32^3 by
``softras.datasets.voxels.mesh_to_dataset_voxels``. Each ``{class}_{split}_images.npz`` /
``_voxels.npz`` is written by positional ``np.savez_compressed`` to a temporary name and
renamed; ``dataset.json`` (what was written, and from what) is written last and marks a
complete dataset. Splits are drawn by a fixed seed.
"""

from __future__ import annotations

import json
import os
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..functional.cameras import face_vertices, look_at, perspective
from ..functional.lighting import surface_normals
from ..functional.rasterize import soft_rasterize_packed
from ..functional.settings import RasterSettings
from .procedural import PROCEDURAL_CLASSES, load_obj_folder, make_shape
from .shapenet import IMAGE_SIZE, SPLITS, VIEWING_ANGLE, VIEWS, class_id_of, view_eyes
from .voxels import VOXEL_SIZE, mesh_to_dataset_voxels

__all__ = [
    "DEFAULT_FRACTIONS",
    "MANIFEST",
    "default_dataset_dir",
    "ensure_procedural_dataset",
    "make_obj_dataset",
    "make_procedural_dataset",
    "object_colors",
    "procedural_dataset_dir",
    "render_views",
    "split_objects",
    "voxelize_meshes",
    "write_dataset",
]

Mesh = tuple[np.ndarray, np.ndarray]  # vertices [V, 3] in [-0.5, 0.5], faces [F, 3]
DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)  # train, val, test
MANIFEST = "dataset.json"
FORMAT_VERSION = 1


def default_dataset_dir(name: str = "procedural") -> Path:
    """``$SOFTRAS_DATA/<name>`` if ``SOFTRAS_DATA`` is set, else ``~/.cache/softras/datasets/<name>``."""
    base = os.environ.get("SOFTRAS_DATA")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "softras" / "datasets") / name


def procedural_dataset_dir(objects_per_class: int = 300, seed: int = 0) -> Path:
    """Where the procedural set of these settings lives by default: ``default_dataset_dir('procedural')``
    for the default set (300 objects per class, seed 0), else ``procedural-<n>-seed<seed>``."""
    if (objects_per_class, seed) == (300, 0):
        return default_dataset_dir("procedural")
    return default_dataset_dir(f"procedural-{objects_per_class}-seed{seed}")


def _rng(seed: int, *keys: str) -> np.random.Generator:
    """A generator for (seed, keys...), independent of the order in which things are made."""
    return np.random.default_rng([int(seed), *(zlib.crc32(k.encode()) for k in keys)])


def object_colors(n: int, rng: np.random.Generator) -> np.ndarray:
    """``[n, 3]`` float32 flat colours, each channel uniform in [0.25, 0.95]."""
    return rng.uniform(0.25, 0.95, size=(n, 3)).astype(np.float32)


def _check_mesh(name: str, mesh) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        v, f = mesh
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a (vertices, faces) pair, got {type(mesh).__name__}") from None
    v = torch.as_tensor(np.asarray(v), dtype=torch.float32)
    f = torch.as_tensor(np.asarray(f)).long()
    if v.dim() != 2 or v.shape[1] != 3 or f.dim() != 2 or f.shape[1] != 3 or len(f) == 0:
        raise ValueError(f"{name}: expected vertices [V, 3] and faces [F, 3], got {list(v.shape)} and {list(f.shape)}")
    if int(f.min()) < 0 or int(f.max()) >= len(v):
        raise ValueError(f"{name}: expected face indices in [0, {len(v)}), got [{int(f.min())}, {int(f.max())}]")
    if float(v.abs().max()) > 0.5 + 1e-4:
        raise ValueError(
            f"{name}: expected vertices inside [-0.5, 0.5] (normalized), got |v| up to {float(v.abs().max()):.4f}"
        )
    return v, f


def render_views(
    meshes: Sequence[Mesh],
    colors: np.ndarray,  # [K, 3] in [0, 1]
    views: Sequence[int] | None = None,
    image_size: int = IMAGE_SIZE,
    backend: str = "auto",
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """RGBA renderings of K meshes at the benchmark views (all 24 by default), in one
    rasterizer call -> uint8 ``[K, n_views, 4, image_size, image_size]``.

    Flat colour times the default lighting (per face, world normals), look_at from
    ``view_eyes``, half field of view 15 degrees, hard distance and hard aggregation of colour
    and alpha at twice the size, then a 2 x 2 average (the sharp ``softras.Renderer``).
    """
    views = list(range(VIEWS)) if views is None else list(views)
    eyes = view_eyes(views).to(device)  # [n, 3]
    n = len(eyes)
    colors = torch.as_tensor(np.asarray(colors, np.float32), device=device).reshape(-1, 3)
    if len(colors) != len(meshes):
        raise ValueError(f"colors: expected {len(meshes)} colours (one per mesh), got {len(colors)}")
    fvs, texs, counts = [], [], []
    for i, mesh in enumerate(meshes):
        v, f = (t.to(device) for t in _check_mesh(f"meshes[{i}]", mesh))
        normals = surface_normals(v[None], f[None])[0]  # [F, 3]
        light = 0.5 + 0.5 * normals[:, 1].clamp_min(0)  # ambient 0.5 + directional 0.5 from +y
        tex = (colors[i] * light[:, None])[:, None, :]  # [F, 1, 3]
        proj = perspective(look_at(v[None].expand(n, -1, -1), eyes), VIEWING_ANGLE)  # [n, V, 3]
        fvs.append(face_vertices(proj, f[None].expand(n, -1, -1)).reshape(-1, 3, 3))  # [n*F, 3, 3]
        texs.append(tex.repeat(n, 1, 1))
        counts += [len(f)] * n
    first = torch.tensor([0] + counts[:-1], device=device).cumsum(0)
    settings = RasterSettings(
        image_size=(2 * image_size, 2 * image_size),
        eps=1e-6,
        dist_func="hard",
        aggr_func_rgb="hard",
        aggr_func_alpha="hard",
    )
    with torch.no_grad():
        rgba = soft_rasterize_packed(torch.cat(fvs), torch.cat(texs), first, settings, backend=backend)
        rgba = F.avg_pool2d(rgba, kernel_size=2, stride=2)  # [K*n, 4, S, S]
    out = (rgba.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return out.reshape(len(meshes), n, 4, image_size, image_size)


def voxelize_meshes(meshes: Sequence[Mesh], size: int = VOXEL_SIZE, device: str | torch.device = "cpu") -> np.ndarray:
    """Solid voxels of K meshes in the dataset layout -> bool ``[K, S, S, S]`` (one batched
    call; shorter face lists are padded by repeating a face, which changes nothing)."""
    checked = [_check_mesh(f"meshes[{i}]", m) for i, m in enumerate(meshes)]
    V = max(len(v) for v, _ in checked)
    Fn = max(len(f) for _, f in checked)
    verts = torch.zeros(len(checked), V, 3)
    faces = torch.zeros(len(checked), Fn, 3, dtype=torch.long)
    for i, (v, f) in enumerate(checked):
        verts[i, : len(v)] = v
        faces[i, : len(f)] = f
        faces[i, len(f) :] = f[0]
    return mesh_to_dataset_voxels(verts.to(device), faces.to(device), size).cpu().numpy()


def _save_npz(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, array)  # positional: the array is arr_0
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def split_objects(n: int, fractions: Sequence[float], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A random split of ``range(n)`` into train/val/test by ``fractions`` (each split sorted;
    every split of a class with at least 3 objects gets at least one)."""
    fr = np.asarray(fractions, float)
    if fr.shape != (3,) or (fr < 0).any() or fr.sum() <= 0:
        raise ValueError(f"fractions: expected 3 non-negative numbers (train, val, test), got {list(fractions)}")
    fr = fr / fr.sum()
    sizes = np.floor(fr * n).astype(int)
    if n >= 3:
        sizes = np.maximum(sizes, (fr > 0).astype(int))
    sizes[0] = n - sizes[1:].sum()
    perm = rng.permutation(n)
    bounds = np.cumsum([0, *sizes])
    return {s: np.sort(perm[bounds[i] : bounds[i + 1]]) for i, s in enumerate(SPLITS)}


def write_dataset(
    out_dir: str | os.PathLike,
    shapes: Mapping[str, Mapping[str, Sequence[Mesh]]],
    seed: int = 0,
    colors: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    batch_size: int = 16,
    progress: bool = True,
    backend: str = "auto",
    device: str | torch.device = "cpu",
    info: Mapping | None = None,
) -> dict:
    """Renders and voxelizes ``shapes[class_id][split]`` (lists of normalized meshes) into
    ``out_dir`` in the public format; returns the manifest written as ``dataset.json``.

    ``colors[class_id][split]`` ([n, 3] in [0, 1]) defaults to random colours drawn from
    ``seed``; ``batch_size`` objects are rendered (x 24 views) and voxelized per call.
    """
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    counts: dict[str, dict[str, int]] = {}
    for cid, splits in shapes.items():
        unknown = set(splits) - set(SPLITS)
        if unknown:
            raise ValueError(f"shapes[{cid!r}]: expected splits among {', '.join(SPLITS)}, got {sorted(unknown)}")
        counts[cid] = {}
        for split, meshes in splits.items():
            n = len(meshes)
            if colors is not None:
                col = np.asarray(colors[cid][split], np.float32)
            else:
                col = object_colors(n, _rng(seed, "colour", cid, split))
            images = np.zeros((n, VIEWS, 4, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
            voxels = np.zeros((n, VOXEL_SIZE, VOXEL_SIZE, VOXEL_SIZE), bool)
            bar = tqdm(total=n, desc=f"{cid} {split}", unit="obj", disable=not progress, leave=False)
            for s in range(0, n, batch_size):
                batch = meshes[s : s + batch_size]
                images[s : s + len(batch)] = render_views(
                    batch, col[s : s + len(batch)], backend=backend, device=device
                )
                voxels[s : s + len(batch)] = voxelize_meshes(batch, device=device)
                bar.update(len(batch))
            bar.close()
            _save_npz(out / f"{cid}_{split}_images.npz", images)
            _save_npz(out / f"{cid}_{split}_voxels.npz", voxels)
            counts[cid][split] = n
    manifest = {"format": "shapenet-renderings", "version": FORMAT_VERSION, "seed": seed, "objects": counts}
    manifest.update(info or {})
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{MANIFEST}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(manifest, fh, indent=2)
    os.replace(tmp, out / MANIFEST)
    return manifest


def _splits(meshes: list[Mesh], fractions, rng) -> dict[str, list[Mesh]]:
    idx = split_objects(len(meshes), fractions, rng)
    return {s: [meshes[i] for i in idx[s]] for s in SPLITS}


def make_procedural_dataset(
    out_dir: str | os.PathLike | None = None,
    class_ids: Sequence[str] | None = None,
    objects_per_class: int = 300,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    **kwargs,
) -> Path:
    """Generates the procedural dataset (default: the five families, 300 objects each, split
    70/10/20) into ``out_dir`` (default :func:`default_dataset_dir`); ``kwargs`` go to
    :func:`write_dataset`. Returns the folder."""
    out = Path(out_dir).expanduser() if out_dir is not None else default_dataset_dir()
    ids = [class_id_of(c) for c in (class_ids if class_ids is not None else PROCEDURAL_CLASSES)]
    if isinstance(objects_per_class, bool) or not isinstance(objects_per_class, int) or objects_per_class < 1:
        raise ValueError(f"objects_per_class: expected a positive int, got {objects_per_class!r}")
    shapes = {}
    for cid in ids:
        rng = _rng(seed, "shape", cid)
        meshes = [make_shape(cid, rng) for _ in range(objects_per_class)]
        shapes[cid] = _splits(meshes, fractions, _rng(seed, "split", cid))
    info = {"source": "procedural", "objects_per_class": objects_per_class, "fractions": list(fractions)}
    write_dataset(out, shapes, seed=seed, info=info, **kwargs)
    return out


def make_obj_dataset(
    obj_folder: str | os.PathLike,
    out_dir: str | os.PathLike,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    **kwargs,
) -> Path:
    """A dataset from a folder of OBJ files with one subfolder per class (see
    ``softras.datasets.procedural.load_obj_folder``), split by ``fractions``."""
    classes = load_obj_folder(obj_folder)
    shapes = {cid: _splits(meshes, fractions, _rng(seed, "split", cid)) for cid, meshes in classes.items()}
    info = {"source": str(Path(obj_folder).expanduser().resolve()), "fractions": list(fractions)}
    write_dataset(out_dir, shapes, seed=seed, info=info, **kwargs)
    return Path(out_dir).expanduser()


def ensure_procedural_dataset(
    out_dir: str | os.PathLike | None = None,
    objects_per_class: int = 300,
    seed: int = 0,
    **kwargs,
) -> Path:
    """The procedural dataset in ``out_dir`` (default :func:`default_dataset_dir`), generated
    first if its ``dataset.json`` is missing or was made with other settings (seed, objects per
    class, classes, fractions; ``kwargs`` as :func:`make_procedural_dataset`). Call it from one
    process (rank 0) and let the others wait (a barrier) before reading."""
    out = Path(out_dir).expanduser() if out_dir is not None else default_dataset_dir()
    manifest = out / MANIFEST
    if manifest.exists():
        try:
            m = json.loads(manifest.read_text())
        except (OSError, ValueError):
            m = {}
        ids = kwargs.get("class_ids")
        ids = sorted(class_id_of(c) for c in (ids if ids is not None else PROCEDURAL_CLASSES))
        same = m.get("source") == "procedural" and m.get("version") == FORMAT_VERSION and m.get("seed") == seed
        same = same and m.get("objects_per_class") == objects_per_class and sorted(m.get("objects", {})) == ids
        if same and m.get("fractions") == list(kwargs.get("fractions", DEFAULT_FRACTIONS)):
            return out
    return make_procedural_dataset(out, objects_per_class=objects_per_class, seed=seed, **kwargs)
