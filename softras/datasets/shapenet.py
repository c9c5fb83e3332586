"""The public ShapeNet rendering set of the reconstruction benchmark, read lazily.

Format (the set published with the Neural 3D Mesh Renderer and used by SoftRas): per class id
and split, ``{class}_{split}_images.npz`` holding uint8 ``[N, 24, 4, 64, 64]`` (RGBA) and
``{class}_{split}_voxels.npz`` holding ``[N, 32, 32, 32]`` (bool or integers), each written by
positional ``np.savez_compressed`` so its one array is ``arr_0``. View k of 24 is seen from
elevation 30 degrees, distance 2.732 and azimuth ``-15 k`` degrees (look_at the origin, half
field of view 15 degrees). The voxel layout is described in ``softras.datasets.voxels``.

Loading is lazy per class: on first use an array is decompressed, by streaming, into an
uncompressed ``.npy`` beside its ``.npz`` (or under a cache folder when the data folder is
read-only) and opened memory-mapped, so a 13-class set never has to fit in RAM. The cache is
written to a temporary name and renamed, so several processes may create it at once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..functional.cameras import get_points_from_angles

__all__ = [
    "CLASS_IDS",
    "CLASS_NAMES",
    "DISTANCE",
    "ELEVATION",
    "IMAGE_SIZE",
    "SPLITS",
    "VIEWING_ANGLE",
    "VIEWS",
    "ShapeNetRenderings",
    "class_id_of",
    "shard",
    "view_azimuths",
    "view_eyes",
]

CLASS_NAMES = {
    "02691156": "airplane",
    "02828884": "bench",
    "02933112": "cabinet",
    "02958343": "car",
    "03001627": "chair",
    "03211117": "display",
    "03636649": "lamp",
    "03691459": "loudspeaker",
    "04090263": "rifle",
    "04256520": "sofa",
    "04379243": "table",
    "04401088": "telephone",
    "04530566": "watercraft",
}
CLASS_IDS = tuple(CLASS_NAMES)
SPLITS = ("train", "val", "test")
VIEWS = 24
ELEVATION = 30.0  # degrees
DISTANCE = 2.732
AZIMUTH_STEP = -15.0  # degrees per view
VIEWING_ANGLE = 15.0  # half field of view, degrees
IMAGE_SIZE = 64
VOXEL_SIZE = 32
IMAGES_SHAPE = (VIEWS, 4, IMAGE_SIZE, IMAGE_SIZE)
VOXELS_SHAPE = (VOXEL_SIZE, VOXEL_SIZE, VOXEL_SIZE)


def class_id_of(name_or_id: str) -> str:
    """A class id from an id or a name (``'chair'`` -> ``'03001627'``); other strings are
    returned unchanged (a user's own class)."""
    if not isinstance(name_or_id, str):
        raise TypeError(f"class_id: expected a str (id or name), got {type(name_or_id).__name__}")
    by_name = {name: cid for cid, name in CLASS_NAMES.items()}
    return by_name.get(name_or_id, name_or_id)


def _view_index(k) -> torch.Tensor:
    k = torch.as_tensor(k).reshape(-1)
    if k.dtype.is_floating_point or k.dtype == torch.bool:
        raise TypeError(f"k: expected integer view indices, got dtype {k.dtype}")
    if k.numel() and (int(k.min()) < 0 or int(k.max()) >= VIEWS):
        raise ValueError(f"k: expected view indices in [0, {VIEWS}), got [{int(k.min())}, {int(k.max())}]")
    return k


def view_azimuths(k) -> torch.Tensor:
    """Azimuths in degrees ``-15 k`` of views ``k`` (int or [n]) -> [n] float32."""
    return _view_index(k).to(torch.float32) * AZIMUTH_STEP


def view_eyes(k) -> torch.Tensor:
    """Camera positions of views ``k`` (int or [n] integers in [0, 24)) -> [n, 3] float32."""
    az = view_azimuths(k)
    return get_points_from_angles(torch.full_like(az, DISTANCE), torch.full_like(az, ELEVATION), az).to(torch.float32)


def shard(indices: Sequence[int] | np.ndarray | torch.Tensor, rank: int, world_size: int):
    """This rank's share ``indices[rank::world_size]``: the shares of all ranks together hold
    every index exactly once (no padding, no duplicates; sizes differ by at most one)."""
    for name, value in (("rank", rank), ("world_size", world_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank, world_size: expected 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return indices[rank::world_size]


# ---------------------------------------------------------------------------------------
# npz / npy plumbing


def _read_header(fh) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(fh)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(fh)
    return tuple(shape), np.dtype(dtype)


def _npz_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of ``arr_0`` in an npz, from its header only (nothing decompressed
    beyond the first bytes)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if "arr_0.npy" not in names:
                raise ValueError(
                    f"{path}: expected an npz whose first array is arr_0 (positional np.savez_compressed), "
                    f"found arrays {[n.removesuffix('.npy') for n in names]}"
                )
            with zf.open("arr_0.npy") as fh:
                return _read_header(fh)
    except zipfile.BadZipFile:
        raise ValueError(f"{path}: expected an npz archive (np.savez_compressed), found a non-zip file") from None


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype] | None:
    try:
        with open(path, "rb") as fh:
            return _read_header(fh)
    except (OSError, ValueError):
        return None


def _writable(folder: Path) -> bool:
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".softras-probe-")
    except OSError:
        return False
    os.close(fd)
    os.unlink(tmp)
    return True


def default_cache_dir(root: Path) -> Path:
    """Where the ``.npy`` caches of a read-only data folder go:
    ``$SOFTRAS_CACHE/datasets-npy/<hash of the folder>`` (``~/.cache/softras`` by default)."""
    base = Path(os.environ.get("SOFTRAS_CACHE", Path.home() / ".cache" / "softras"))
    return base / "datasets-npy" / hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]


def _decompress(npz: Path, npy: Path) -> None:
    """Streams ``arr_0.npy`` out of ``npz`` into ``npy`` (a temporary file, then a rename)."""
    npy.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=npy.parent, prefix=f".{npy.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, zipfile.ZipFile(npz) as zf, zf.open("arr_0.npy") as src:
            shutil.copyfileobj(src, out, length=1 << 24)
        os.replace(tmp, npy)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class ShapeNetRenderings:
    """The rendering set of one split, for some or all classes found in ``root``.

    Args:
        root: the data folder holding ``{class}_{split}_images.npz`` / ``_voxels.npz``.
        class_ids: ids (or names, e.g. ``'chair'``) to use; None: every class with both
            files for ``split`` (sorted).
        split: ``'train'``, ``'val'`` or ``'test'``.
        cache_dir: where the uncompressed ``.npy`` copies go when ``root`` is read-only
            (default :func:`default_cache_dir`).

    Headers are checked at construction (cheap); arrays are decompressed and mapped on first
    use per class. Object ``o`` of class ``c`` has images ``[24, 4, 64, 64]`` and voxels
    ``[32, 32, 32]``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        class_ids: Sequence[str] | str | None = None,
        split: str = "train",
        cache_dir: str | os.PathLike | None = None,
    ):
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {', '.join(map(repr, SPLITS))}, got {split!r}")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"data folder {self.root}: expected a folder of *_images.npz / *_voxels.npz files, found none"
            )
        self.split = split
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        found = sorted(p.name for p in self.root.iterdir())
        available = sorted(
            name.removesuffix(f"_{split}_images.npz")
            for name in found
            if name.endswith(f"_{split}_images.npz") and f"{name.removesuffix('_images.npz')}_voxels.npz" in found
        )
        if class_ids is None:
            if not available:
                shown = ", ".join(found[:20]) + (", ..." if len(found) > 20 else "") if found else "nothing"
                raise FileNotFoundError(
                    f"data folder {self.root}: expected {{class}}_{split}_images.npz and {{class}}_{split}_voxels.npz "
                    f"files, found {shown}"
                )
            class_ids = available
        if isinstance(class_ids, str):
            class_ids = [class_ids]
        ids = [class_id_of(c) for c in class_ids]
        if not ids:
            raise ValueError("class_ids: expected at least one class id, got an empty list")
        if len(set(ids)) != len(ids):
            raise ValueError(f"class_ids: expected distinct classes, got {list(class_ids)}")
        for cid in ids:
            if cid not in available:
                for kind in ("images", "voxels"):
                    if not (self.root / f"{cid}_{split}_{kind}.npz").exists():
                        raise FileNotFoundError(
                            f"class_ids: class {cid} has no {cid}_{split}_{kind}.npz in {self.root}; "
                            f"classes present for split {split!r}: {', '.join(available) or 'none'}"
                        )
        self.class_ids: tuple[str, ...] = tuple(ids)
        self._counts: list[int] = []
        for cid in ids:
            ishape, idtype = _npz_header(self._npz(cid, "images"))
            if len(ishape) != 5 or ishape[1:] != IMAGES_SHAPE or idtype != np.uint8:
                raise ValueError(
                    f"{self._npz(cid, 'images')}: expected uint8 [N, {', '.join(map(str, IMAGES_SHAPE))}], "
                    f"found {idtype} {list(ishape)}"
                )
            vshape, vdtype = _npz_header(self._npz(cid, "voxels"))
            if len(vshape) != 4 or vshape[1:] != VOXELS_SHAPE or vdtype.kind not in "biu":
                raise ValueError(
                    f"{self._npz(cid, 'voxels')}: expected bool or uint8 [N, {', '.join(map(str, VOXELS_SHAPE))}], "
                    f"found {vdtype} {list(vshape)}"
                )
            if vshape[0] != ishape[0]:
                raise ValueError(
                    f"{self._npz(cid, 'voxels')}: expected {ishape[0]} objects (as the images), found {vshape[0]}"
                )
            self._counts.append(int(ishape[0]))
        self._arrays: dict[tuple[str, str], np.ndarray] = {}

    # ---- files -----------------------------------------------------------------------
    def _npz(self, cid: str, kind: str) -> Path:
        return self.root / f"{cid}_{self.split}_{kind}.npz"

    def _array(self, cid: str, kind: str) -> np.ndarray:
        key = (cid, kind)
        if key not in self._arrays:
            npz = self._npz(cid, kind)
            header = _npz_header(npz)
            name = npz.with_suffix(".npy").name
            folder = self.root if self._cache_dir is None and _writable(self.root) else None
            if folder is None:
                folder = self._cache_dir if self._cache_dir is not None else default_cache_dir(self.root)
            npy = folder / name
            fresh = npy.exists() and npy.stat().st_mtime >= npz.stat().st_mtime and _npy_header(npy) == header
            if not fresh:
                _decompress(npz, npy)
            self._arrays[key] = np.load(npy, mmap_mode="r")
        return self._arrays[key]

    def cache_files(self) -> list[Path]:
        """The ``.npy`` files mapped so far."""
        return [Path(a.filename) for a in self._arrays.values()]

    # ---- sizes -----------------------------------------------------------------------
    def __len__(self) -> int:
        return sum(self._counts)

    def _class_index(self, class_id: str | int) -> int:
        if isinstance(class_id, (int, np.integer)) and not isinstance(class_id, bool):
            if not 0 <= class_id < len(self.class_ids):
                raise ValueError(f"class_id: expected a class index in [0, {len(self.class_ids)}), got {class_id}")
            return int(class_id)
        cid = class_id_of(class_id)
        if cid not in self.class_ids:
            raise ValueError(f"class_id: expected one of {', '.join(self.class_ids)}, got {class_id!r}")
        return self.class_ids.index(cid)

    def num_objects(self, class_id: str | int) -> int:
        """Objects of a class (id, name or index into ``class_ids``)."""
        return self._counts[self._class_index(class_id)]

    def __repr__(self) -> str:
        parts = ", ".join(f"{c}:{n}" for c, n in zip(self.class_ids, self._counts))
        return f"ShapeNetRenderings({str(self.root)!r}, split={self.split!r}, objects={{{parts}}})"

    # ---- data ------------------------------------------------------------------------
    def _objects(self, ci: int, obj_indices) -> np.ndarray:
        obj = np.asarray(torch.as_tensor(obj_indices).cpu()).reshape(-1)
        if obj.dtype.kind not in "iu":
            raise TypeError(f"obj_indices: expected integers, got dtype {obj.dtype}")
        n = self._counts[ci]
        if obj.size and (obj.min() < 0 or obj.max() >= n):
            raise ValueError(
                f"obj_indices: expected indices in [0, {n}) for class {self.class_ids[ci]}, "
                f"got [{obj.min()}, {obj.max()}]"
            )
        return obj

    def images(self, class_id: str | int, obj_indices, view_indices, as_float: bool = False) -> torch.Tensor:
        """Views ``view_indices[i]`` of objects ``obj_indices[i]`` of one class -> ``[n, 4, 64, 64]``,
        uint8, or float32 in [0, 1] with ``as_float``."""
        ci = self._class_index(class_id)
        obj = self._objects(ci, obj_indices)
        views = _view_index(view_indices).numpy()
        if views.shape != obj.shape:
            raise ValueError(f"view_indices: expected {obj.size} indices (one per object), got {views.size}")
        out = torch.from_numpy(np.ascontiguousarray(self._array(self.class_ids[ci], "images")[obj, views]))
        return out.float().div_(255) if as_float else out

    def voxels(self, class_id: str | int, obj_indices) -> torch.Tensor:
        """Voxels of objects ``obj_indices`` of one class -> bool ``[n, 32, 32, 32]``."""
        ci = self._class_index(class_id)
        obj = self._objects(ci, obj_indices)
        return torch.from_numpy(self._array(self.class_ids[ci], "voxels")[obj] != 0)

    def gather_images(self, class_index, obj_index, view_index, as_float: bool = False) -> torch.Tensor:
        """:meth:`images` for a batch mixing classes (``class_index`` [n] into ``class_ids``)."""
        class_index = torch.as_tensor(class_index).reshape(-1)
        obj_index, view_index = torch.as_tensor(obj_index).reshape(-1), torch.as_tensor(view_index).reshape(-1)
        if not (class_index.shape == obj_index.shape == view_index.shape):
            raise ValueError(
                f"class_index, obj_index, view_index: expected equal lengths, got "
                f"{class_index.numel()}, {obj_index.numel()}, {view_index.numel()}"
            )
        dtype = torch.float32 if as_float else torch.uint8
        out = torch.empty(class_index.numel(), 4, IMAGE_SIZE, IMAGE_SIZE, dtype=dtype)
        for ci in class_index.unique().tolist():
            sel = class_index == ci
            out[sel] = self.images(int(ci), obj_index[sel], view_index[sel], as_float=as_float)
        return out

    def gather_voxels(self, class_index, obj_index) -> torch.Tensor:
        """:meth:`voxels` for a batch mixing classes -> bool ``[n, 32, 32, 32]``."""
        class_index, obj_index = torch.as_tensor(class_index).reshape(-1), torch.as_tensor(obj_index).reshape(-1)
        if class_index.shape != obj_index.shape:
            raise ValueError(
                f"class_index, obj_index: expected equal lengths, got {class_index.numel()}, {obj_index.numel()}"
            )
        out = torch.empty(class_index.numel(), *VOXELS_SHAPE, dtype=torch.bool)
        for ci in class_index.unique().tolist():
            sel = class_index == ci
            out[sel] = self.voxels(int(ci), obj_index[sel])
        return out

    # ---- sampling and iteration ------------------------------------------------------
    def sample_pairs(
        self, generator: torch.Generator, batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """A training batch as the original draws it: per sample a class uniformly, then an
        object of that class uniformly, then two views a, b independently (they may coincide).

        Returns ``(class_index, obj_index, view_a, view_b)``, each int64 ``[batch_size]``
        (``class_index`` into ``class_ids``). All randomness comes from ``generator``.
        """
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a torch.Generator, got {type(generator).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        counts = torch.tensor(self._counts, dtype=torch.float64)
        if (counts == 0).any():
            empty = [c for c, n in zip(self.class_ids, self._counts) if n == 0]
            raise ValueError(f"class_ids: classes without objects cannot be sampled: {', '.join(empty)}")
        cls = torch.randint(len(self.class_ids), (batch_size,), generator=generator)
        u = torch.rand(batch_size, generator=generator, dtype=torch.float64)
        obj = torch.minimum((u * counts[cls]).long(), counts[cls].long() - 1)
        view_a = torch.randint(VIEWS, (batch_size,), generator=generator)
        view_b = torch.randint(VIEWS, (batch_size,), generator=generator)
        return cls, obj, view_a, view_b

    def items(self) -> torch.Tensor:
        """Every object once, class by class: ``[len(self), 2]`` int64 rows (class_index,
        obj_index); ``shard(ds.items(), rank, world_size)`` splits them over ranks."""
        rows = [torch.stack([torch.full((n,), ci), torch.arange(n)], 1) for ci, n in enumerate(self._counts)]
        return torch.cat(rows).long() if rows else torch.zeros(0, 2, dtype=torch.long)
