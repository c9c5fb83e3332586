"""Reading and writing meshes as Wavefront OBJ files (with MTL materials and texture images).

Public API
----------
- :func:`load_obj` -- vertices, triangle faces and (optionally) textures baked for the
  rasterizer, like the original SoftRas ``srf.load_obj``.
- :func:`save_obj` -- the inverse: OBJ (+ MTL + PNG atlas for surface textures, or
  ``v x y z r g b`` lines for vertex colours). ``load_obj(save_obj(m))`` reproduces vertices
  and faces exactly and textures within 1/255.
- :func:`save_voxel` / :func:`voxel_to_mesh` -- a voxel grid as a mesh of cube faces.
- :func:`read_obj` / :func:`read_mtl` -- the raw parsed contents (UVs, normals, materials...).
- :func:`texel_barycentrics` -- the barycentric centroids of the R*R sub-triangles of a face,
  in the texel order of the rasterizer's surface textures.
- :func:`load_obj_geometry` -- vertices and faces only (kept for existing callers).

This module is longer than most (about 800 lines) on purpose: it is one file format, read and
written, and keeping the parser, the texture baking and the atlas writer side by side keeps
the round trip ``load_obj(save_obj(m))`` checkable in one place.

Surface textures ``[F, R*R, 3]`` follow the rasterizer's layout (``texel_index`` in
``softras/csrc/rasterize.h``): with barycentrics (w0, w1, w2), a = floor(w0 R), b = floor(w1 R),
the lower sub-triangle of cell (a, b) (corners (a, b), (a+1, b), (a, b+1) in units of 1/R of
(w0, w1)) is texel ``b*R + a`` and the upper one (corners (a+1, b), (a, b+1), (a+1, b+1), only
for a + b <= R - 2) is texel ``(R-1-b)*R + (R-1-a)``. Every face is baked by sampling its
texture image at the centroid of each sub-triangle.
"""

from __future__ import annotations

import errno
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
import torch

from .functional.texture import texel_index
from .images import read_image

PathLike = Union[str, "os.PathLike[str]"]

__all__ = [
    "Material",
    "ObjData",
    "load_obj",
    "load_obj_geometry",
    "read_mtl",
    "read_obj",
    "save_obj",
    "save_voxel",
    "texel_barycentrics",
    "voxel_to_mesh",
]

_TEXTURE_TYPES = ("surface", "vertex")


# ---------------------------------------------------------------------------------------
# parsed contents


@dataclass
class Material:
    """One ``newmtl`` block of an MTL file (only what the rasterizer uses).

    Attributes:
        name: the material's name.
        kd: diffuse colour ``Kd`` (r, g, b), or None when the block has none.
        map_kd: the diffuse texture image ``map_Kd`` resolved relative to the MTL file (it may
            not exist), or None.
    """

    name: str
    kd: tuple[float, float, float] | None = None
    map_kd: Path | None = None


@dataclass
class ObjData:
    """Everything :func:`read_obj` parses from an OBJ file (polygons already fan-triangulated).

    Indices are 0-based; -1 marks a corner without a texture coordinate / normal (a triangle
    has either all three or none) and a face without a material.

    Attributes:
        path: the OBJ file.
        vertices: ``[V, 3]`` float64 positions.
        vertex_colors: ``[V, 3]`` float64 colours from ``v x y z r g b`` lines exactly as written
            (NaN rows for vertices without a colour), or None if no vertex has one.
        uvs: ``[T, 2]`` float64 texture coordinates (``vt u v``; v defaults to 0).
        normals: ``[N, 3]`` float64 normals (``vn``).
        faces: ``[F, 3]`` int64 vertex indices.
        face_uvs: ``[F, 3]`` int64 indices into ``uvs`` (-1: none).
        face_normals: ``[F, 3]`` int64 indices into ``normals`` (-1: none).
        face_materials: ``[F]`` int64 indices into ``material_names`` (-1: no ``usemtl``).
        material_names: the names given to ``usemtl``, in order of first use.
        mtllibs: the files named by ``mtllib``, resolved relative to the OBJ file.
        face_lines: ``[F]`` int64 line number of the ``f`` line of each triangle.
    """

    path: Path
    vertices: np.ndarray
    vertex_colors: np.ndarray | None
    uvs: np.ndarray
    normals: np.ndarray
    faces: np.ndarray
    face_uvs: np.ndarray
    face_normals: np.ndarray
    face_materials: np.ndarray
    material_names: list[str] = field(default_factory=list)
    mtllibs: list[Path] = field(default_factory=list)
    face_lines: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


# ---------------------------------------------------------------------------------------
# parsing helpers


def _logical_lines(fh):
    """(first line number, text) of each logical line: comments removed, ``\\`` continuations
    joined."""
    buf, start = "", None
    for lineno, raw in enumerate(fh, start=1):
        line = raw.split("#", 1)[0].rstrip("\r\n")
        if start is None:
            start = lineno
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        yield start, buf + line
        buf, start = "", None
    if start is not None:
        yield start, buf


def _float(token: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise ValueError(f"non-numeric value {token!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"non-finite value {token!r}")
    return value


def _floats(tokens: list[str], what: str, least: int) -> list[float]:
    if len(tokens) < least:
        raise ValueError(f"{what} needs at least {least} values, got {len(tokens)}")
    return [_float(t) for t in tokens]


def _index(token: str, count: int, what: str) -> int:
    """0-based index of a 1-based or negative (relative) OBJ index. Positive indices are
    range-checked later (they may refer to elements defined further down)."""
    try:
        i = int(token)
    except ValueError:
        raise ValueError(f"non-integer {what} index {token!r}") from None
    if i == 0:
        raise ValueError(f"{what} index 0 (OBJ indices start at 1)")
    if i < 0:
        if count + i < 0:
            raise ValueError(f"{what} index {i} out of range ({count} {what}s defined so far)")
        return count + i
    return i - 1


def _rest(line: str, key: str) -> str:
    """The text after the keyword ``key`` (file and material names may contain spaces)."""
    return line.strip()[len(key) :].strip()


def _existing(base: Path, name: str) -> Path:
    """``name`` relative to the folder ``base`` (absolute names kept); Windows separators are
    tried as ``/`` when the name as written does not exist."""
    path = base / name
    if not path.exists() and "\\" in name:
        alt = base / name.replace("\\", "/")
        if alt.exists():
            return alt
    return path


# ---------------------------------------------------------------------------------------
# reading


def read_obj(filename: PathLike) -> ObjData:
    """Parse an OBJ file into :class:`ObjData` (no MTL or image is read).

    Understood: ``v x y z [w]`` and ``v x y z r g b`` (vertex colours), ``vt u [v [w]]``,
    ``vn x y z``, ``f`` with any number (>= 3) of corners, each ``i``, ``i/j``, ``i//k`` or
    ``i/j/k`` with 1-based or negative (relative) indices (polygons are fan-triangulated:
    (0, k, k+1)), ``usemtl`` and ``mtllib``. ``f`` lines with fewer than 3 corners (stray
    edges that real files contain) are skipped with one ``UserWarning`` that counts them.
    Other statements (``o``, ``g``, ``s``, ``l``, ``p``...) are ignored.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a binary file (``"<file>: not a text OBJ file ..."``) or a malformed line
            (the message starts with ``"<file>:<line>: "``).
    """
    path = Path(filename)
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "OBJ file not found", str(path))
    name = str(path)
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if b"\0" in head:  # NUL bytes: an image, an archive, UTF-16 text... not an OBJ file
        raise ValueError(f"{name}: not a text OBJ file (it holds binary data)")

    verts: list[list[float]] = []
    colours: list[list[float] | None] = []
    uvs: list[list[float]] = []
    normals: list[list[float]] = []
    fv: list[list[int]] = []
    ft: list[list[int]] = []
    fn: list[list[int]] = []
    fmat: list[int] = []
    flines: list[int] = []
    material_names: list[str] = []
    material_ids: dict[str, int] = {}
    current = -1
    mtllibs: list[Path] = []
    any_colour = False
    skipped: list[int] = []  # line numbers of faces with fewer than 3 corners

    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in _logical_lines(fh):
            parts = line.split()
            if not parts:
                continue
            key = parts[0]
            try:
                if key == "v":
                    values = _floats(parts[1:], "a vertex", 3)
                    verts.append(values[:3])
                    if len(values) >= 6:
                        colours.append(values[3:6])
                        any_colour = True
                    else:
                        colours.append(None)
                elif key == "vt":
                    values = _floats(parts[1:], "a texture coordinate", 1)
                    uvs.append([values[0], values[1] if len(values) > 1 else 0.0])
                elif key == "vn":
                    normals.append(_floats(parts[1:], "a normal", 3)[:3])
                elif key == "f":
                    corners = parts[1:]
                    if len(corners) < 3:
                        skipped.append(lineno)
                        continue
                    vi, ti, ni = [], [], []
                    for token in corners:
                        sub = token.split("/")
                        if (
                            len(sub) > 3
                            or sub[0] == ""
                            or (len(sub) == 2 and sub[1] == "")
                            or (len(sub) == 3 and sub[2] == "")
                        ):
                            raise ValueError(f"unknown face vertex format {token!r} (expected i, i/j, i//k or i/j/k)")
                        vi.append(_index(sub[0], len(verts), "vertex"))
                        has_t = len(sub) > 1 and sub[1] != ""
                        ti.append(_index(sub[1], len(uvs), "texture coordinate") if has_t else -1)
                        ni.append(_index(sub[2], len(normals), "normal") if len(sub) > 2 else -1)
                    if min(ti) < 0:
                        ti = [-1] * len(vi)
                    if min(ni) < 0:
                        ni = [-1] * len(vi)
                    for k in range(1, len(vi) - 1):
                        fv.append([vi[0], vi[k], vi[k + 1]])
                        ft.append([ti[0], ti[k], ti[k + 1]])
                        fn.append([ni[0], ni[k], ni[k + 1]])
                        fmat.append(current)
                        flines.append(lineno)
                elif key == "usemtl":
                    mat = _rest(line, key)
                    if not mat:
                        current = -1
                    else:
                        if mat not in material_ids:
                            material_ids[mat] = len(material_names)
                            material_names.append(mat)
                        current = material_ids[mat]
                elif key == "mtllib":
                    rest = _rest(line, key)
                    if not rest:
                        raise ValueError("mtllib without a file name")
                    whole = _existing(path.parent, rest)
                    if whole.exists() or len(rest.split()) == 1:
                        mtllibs.append(whole)
                    else:  # several libraries on one line
                        mtllibs.extend(_existing(path.parent, n) for n in rest.split())
            except ValueError as err:
                raise ValueError(f"{name}:{lineno}: {err}: {line.strip()!r}") from None
    if skipped:
        n = len(skipped)
        warnings.warn(
            f"{name}: skipped {n} face{'s' if n > 1 else ''} with fewer than 3 vertices (first on line {skipped[0]})",
            UserWarning,
            stacklevel=2,
        )

    faces = np.asarray(fv, dtype=np.int64).reshape(-1, 3)
    face_uvs = np.asarray(ft, dtype=np.int64).reshape(-1, 3)
    face_normals = np.asarray(fn, dtype=np.int64).reshape(-1, 3)
    face_lines = np.asarray(flines, dtype=np.int64)
    for idx, count, what in (
        (faces, len(verts), "vertex"),
        (face_uvs, len(uvs), "texture coordinate"),
        (face_normals, len(normals), "normal"),
    ):
        bad = (idx >= count).any(axis=1)
        if bad.any():
            k = int(np.argmax(bad))
            i = int(idx[k].max()) + 1
            raise ValueError(
                f"{name}:{int(face_lines[k])}: {what} index {i} out of range "
                f"(the file has {count} {what}{'es' if what == 'vertex' else 's'})"
            )

    vertex_colors = None
    if any_colour:
        vertex_colors = np.array([c if c is not None else [np.nan] * 3 for c in colours], dtype=np.float64).reshape(
            -1, 3
        )
    return ObjData(
        path=path,
        vertices=np.asarray(verts, dtype=np.float64).reshape(-1, 3),
        vertex_colors=vertex_colors,
        uvs=np.asarray(uvs, dtype=np.float64).reshape(-1, 2),
        normals=np.asarray(normals, dtype=np.float64).reshape(-1, 3),
        faces=faces,
        face_uvs=face_uvs,
        face_normals=face_normals,
        face_materials=np.asarray(fmat, dtype=np.int64),
        material_names=material_names,
        mtllibs=mtllibs,
        face_lines=face_lines,
    )


# texture map options and how many arguments each takes (-o, -s, -t: up to 3 numbers)
_MAP_OPTIONS = {
    "-blendu": 1,
    "-blendv": 1,
    "-boost": 1,
    "-mm": 2,
    "-texres": 1,
    "-clamp": 1,
    "-bm": 1,
    "-imfchan": 1,
    "-type": 1,
    "-cc": 1,
    "-o": 3,
    "-s": 3,
    "-t": 3,
}


def _map_filename(tokens: list[str]) -> str:
    i = 0
    while i < len(tokens) and tokens[i].lower() in _MAP_OPTIONS:
        n = _MAP_OPTIONS[tokens[i].lower()]
        i += 1
        if tokens[i - 1].lower() in ("-o", "-s", "-t"):
            taken = 0
            while taken < n and i < len(tokens) - 1:
                try:
                    float(tokens[i])
                except ValueError:
                    break
                i += 1
                taken += 1
        else:
            i += n
    return " ".join(tokens[i:])


def read_mtl(filename: PathLike) -> dict[str, Material]:
    """Parse an MTL file: ``newmtl``, ``Kd`` and ``map_Kd`` (options such as ``-s`` are
    skipped; the image path is resolved relative to the MTL file). Other statements are
    ignored.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a malformed ``Kd`` / ``map_Kd`` line (``"<file>:<line>: ..."``).
    """
    path = Path(filename)
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "MTL file not found", str(path))
    materials: dict[str, Material] = {}
    current: Material | None = None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in _logical_lines(fh):
            parts = line.split()
            if not parts:
                continue
            key = parts[0].lower()
            try:
                if key == "newmtl":
                    mat = _rest(line, parts[0])
                    current = materials.setdefault(mat, Material(mat))
                elif key == "kd" and current is not None:
                    if len(parts) > 1 and parts[1].lower() in ("spectral", "xyz"):
                        continue  # not supported: keep the material without Kd
                    values = _floats(parts[1:], "Kd", 1)
                    current.kd = (values[0], values[0], values[0]) if len(values) < 3 else tuple(values[:3])
                elif key == "map_kd" and current is not None:
                    image = _map_filename(parts[1:])
                    if not image:
                        raise ValueError("map_Kd without a file name")
                    current.map_kd = _existing(path.parent, image)
            except ValueError as err:
                raise ValueError(f"{path}:{lineno}: {err}: {line.strip()!r}") from None
    return materials


def _read_image(path: Path) -> np.ndarray:
    """An image file as float64 RGB [H, W, 3] in [0, 1] (alpha dropped, grey replicated)."""
    img = np.clip(read_image(path, "map_Kd", dtype=torch.float64).numpy(), 0.0, 1.0)
    if img.shape[2] < 3:
        img = np.repeat(img[:, :, :1], 3, axis=2)
    return img[:, :, :3]


def _wrap(t: np.ndarray) -> np.ndarray:
    """Texture coordinates outside [0, 1] wrapped into [0, 1) (repeat); values in [0, 1] kept,
    so that 1.0 stays the top / right edge."""
    return np.where((t < 0) | (t > 1), t - np.floor(t), t)


def _sample_bilinear(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear samples [..., 3] of an RGB image [H, W, 3] at texture coordinates uv [..., 2]:
    u across, v up (row 0 is v = 1); pixel centres at integer + 0.5; clamped at the borders."""
    H, W = img.shape[:2]
    x = _wrap(uv[..., 0]) * W - 0.5
    y = (1.0 - _wrap(uv[..., 1])) * H - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0i, y0i = x0.astype(np.int64), y0.astype(np.int64)
    xa, xb = np.clip(x0i, 0, W - 1), np.clip(x0i + 1, 0, W - 1)
    ya, yb = np.clip(y0i, 0, H - 1), np.clip(y0i + 1, 0, H - 1)
    top = img[ya, xa] * (1 - fx) + img[ya, xb] * fx
    bottom = img[yb, xa] * (1 - fx) + img[yb, xb] * fx
    return top * (1 - fy) + bottom * fy


def texel_barycentrics(texture_res: int) -> np.ndarray:
    """Barycentric centroids ``[R*R, 3]`` (float64) of a face's R*R sub-triangles, row t being
    the sub-triangle whose colour is texel t of a surface texture.

    Lower cells (a, b), a + b <= R-1: centroid ((3a+1)/3R, (3b+1)/3R), texel ``b*R + a``.
    Upper cells (a, b), a + b <= R-2: centroid ((3a+2)/3R, (3b+2)/3R), texel
    ``(R-1-b)*R + (R-1-a)``. The rasterizer's ``texel_index`` maps each centroid back to its
    row; together they cover all R*R texels once.
    """
    R = int(texture_res)
    if R < 1:
        raise ValueError(f"texture_res must be >= 1, got {texture_res}")
    w = np.full((R * R, 3), np.nan)
    for b in range(R):
        for a in range(R - b):
            w[b * R + a, :2] = ((3 * a + 1) / (3 * R), (3 * b + 1) / (3 * R))
            if a + b <= R - 2:
                w[(R - 1 - b) * R + (R - 1 - a), :2] = ((3 * a + 2) / (3 * R), (3 * b + 2) / (3 * R))
    w[:, 2] = 1.0 - w[:, 0] - w[:, 1]
    return w


def _surface_textures(obj: ObjData, R: int) -> np.ndarray:
    """Bake the surface textures [F, R*R, 3] (float64) of a parsed OBJ."""
    F = obj.faces.shape[0]
    tex = np.ones((F, R * R, 3), dtype=np.float64)
    if F == 0 or not obj.material_names:
        return tex
    materials: dict[str, Material] = {}
    for lib in obj.mtllibs:
        if not lib.is_file():
            warnings.warn(f"{obj.path}: material library {lib} not found; its faces are white", stacklevel=3)
            continue
        for mname, mat in read_mtl(lib).items():
            materials.setdefault(mname, mat)
    has_uv = (obj.face_uvs >= 0).all(axis=1)
    weights = texel_barycentrics(R)  # [T, 3]
    images: dict[Path, np.ndarray | None] = {}
    for mid, mname in enumerate(obj.material_names):
        sel = obj.face_materials == mid
        if not sel.any():
            continue
        mat = materials.get(mname)
        if mat is None:
            warnings.warn(f"{obj.path}: material {mname!r} is not defined; its faces are white", stacklevel=3)
            continue
        if mat.kd is not None:
            tex[sel] = np.clip(np.asarray(mat.kd, dtype=np.float64), 0.0, 1.0)
        if mat.map_kd is None:
            continue
        if mat.map_kd not in images:
            if mat.map_kd.is_file():
                images[mat.map_kd] = _read_image(mat.map_kd)
            else:
                warnings.warn(
                    f"{obj.path}: texture image {mat.map_kd} of material {mname!r} not found; "
                    f"its faces are {'its Kd colour' if mat.kd is not None else 'white'}",
                    stacklevel=3,
                )
                images[mat.map_kd] = None
        img = images[mat.map_kd]
        sel_uv = sel & has_uv
        if img is None or not sel_uv.any():
            continue
        face_uv = obj.uvs[obj.face_uvs[sel_uv]]  # [f, 3, 2]
        uv = np.einsum("tk,fkd->ftd", weights, face_uv)  # [f, T, 2]
        tex[sel_uv] = _sample_bilinear(img, uv)
    return tex


def load_obj(
    filename: PathLike,
    normalization: bool = False,
    load_texture: bool = False,
    texture_res: int = 1,
    texture_type: str = "surface",
) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Load a mesh from an OBJ file (like the original SoftRas ``srf.load_obj``).

    Args:
        filename: the OBJ file. ``mtllib`` files are found relative to it and ``map_Kd``
            images (PNG, JPG...) relative to their MTL file.
        normalization: centre the bounding box at the origin and scale so that the largest
            absolute coordinate is 1 (``v -= (max + min) / 2; v /= abs(v).max()``).
        load_texture: also return textures.
        texture_res: R, sub-triangles per face edge of surface textures.
        texture_type: ``"surface"`` (per face texels ``[F, R*R, 3]``) or ``"vertex"``
            (per vertex colours ``[V, 3]``; index them with ``faces`` for the rasterizer's
            ``[F, 3, 3]`` vertex textures).

    Surface textures: each sub-triangle's colour is the face's texture image sampled
    bilinearly at the sub-triangle's centroid (UVs interpolated with its barycentrics, wrapped
    into [0, 1] when outside, v up); a material without ``map_Kd`` gives its ``Kd``; a face
    without a material, or with a textured material but no UVs and no ``Kd``, is white. A
    missing MTL file or image warns (``UserWarning`` naming it) and falls back to ``Kd`` /
    white. Vertex textures: the ``v x y z r g b`` colours (divided by 255 when any exceeds
    1), white for vertices without one.

    Returns:
        ``(vertices, faces)`` or, with ``load_texture``, ``(vertices, faces, textures)``:
        vertices ``[V, 3]`` float32, faces ``[F, 3]`` int64 (0-based), textures float32 in
        [0, 1].

    Raises:
        FileNotFoundError: the OBJ file does not exist.
        ValueError: a file without faces (``"no faces in <file>"``), a binary file, a
            malformed line (the message starts with ``"<file>:<line>: "``) or a bad argument.
    """
    if texture_type not in _TEXTURE_TYPES:
        raise ValueError(f"texture_type must be 'surface' or 'vertex', got {texture_type!r}")
    if load_texture and (int(texture_res) != texture_res or texture_res < 1):
        raise ValueError(f"texture_res must be a positive integer, got {texture_res!r}")
    obj = read_obj(filename)
    if obj.faces.shape[0] == 0:
        raise ValueError(f"no faces in {obj.path}")
    v = obj.vertices.copy()
    if normalization and v.shape[0] > 0:
        v -= (v.max(axis=0) + v.min(axis=0)) / 2
        scale = np.abs(v).max()
        if scale > 0:
            v /= scale
    vertices = torch.from_numpy(v.astype(np.float32))
    faces = torch.from_numpy(obj.faces.copy())
    if not load_texture:
        return vertices, faces
    if texture_type == "surface":
        tex = _surface_textures(obj, int(texture_res))
    else:
        tex = np.ones((v.shape[0], 3), dtype=np.float64)
        if obj.vertex_colors is not None:
            col = obj.vertex_colors
            has = ~np.isnan(col).any(axis=1)
            if has.any():
                scale = 255.0 if col[has].max() > 1.0 else 1.0
                tex[has] = col[has] / scale
    textures = torch.from_numpy(np.clip(tex, 0.0, 1.0).astype(np.float32))
    return vertices, faces, textures


def load_obj_geometry(path: PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertices [V, 3] (float32) and triangle faces [F, 3] (int64, 0-based) of an OBJ file.

    Polygons are fan-triangulated; negative (relative) indices are resolved. A malformed
    line raises ValueError naming the file and the line number, as does a file without
    faces or a binary file.
    """
    vertices, faces = load_obj(path)
    return vertices, faces


# ---------------------------------------------------------------------------------------
# writing


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _atlas(tex: np.ndarray, R: int, tile_min: int) -> tuple[np.ndarray, np.ndarray]:
    """Texture atlas of surface textures [F, R*R, 3] (in [0, 1]): an RGB uint8 image and the
    UVs [F, 3, 2] of each face's corners.

    Face f owns a square tile of side T = s*R pixels (s >= 6 pixels per barycentric cell).
    Its corner 2 sits at the tile's top-left, corner 0 at the top-right and corner 1 at the
    bottom-left, so barycentrics (w0, w1) map linearly to (w0*T, w1*T) pixels. Each pixel is
    painted with the texel the rasterizer would use at the barycentrics of its centre; with
    s >= 6 the 2x2 pixels read by a bilinear sample at any sub-triangle centroid all lie in
    that sub-triangle, so :func:`load_obj` with the same R gets the texels back exactly (up to
    the 8-bit quantization).
    """
    F = tex.shape[0]
    s = max(6, -(-int(tile_min) // R))
    T = s * R
    cols = max(1, math.ceil(math.sqrt(F)))
    rows = max(1, math.ceil(F / cols))
    centres = (np.arange(T) + 0.5) / T
    c = torch.from_numpy(centres)
    idx = texel_index(c[None, :], c[:, None], R).numpy()  # [T (row: w1), T (column: w0)]
    q = np.round(np.clip(tex, 0.0, 1.0) * 255.0).astype(np.uint8)  # [F, R*R, 3]
    tiles = np.full((rows * cols, T, T, 3), 255, dtype=np.uint8)
    tiles[:F] = q[:, idx]
    image = tiles.reshape(rows, cols, T, T, 3).transpose(0, 2, 1, 3, 4).reshape(rows * T, cols * T, 3)
    H, W = image.shape[:2]
    f = np.arange(F)
    x0, y0 = (f % cols) * T, (f // cols) * T
    xs = np.stack([x0 + T, x0, x0], axis=1).astype(np.float64)  # corners 0, 1, 2
    ys = np.stack([y0, y0 + T, y0], axis=1).astype(np.float64)
    uv = np.stack([xs / W, 1.0 - ys / H], axis=-1)
    return image, uv


def save_obj(
    filename: PathLike,
    vertices: torch.Tensor | np.ndarray,
    faces: torch.Tensor | np.ndarray,
    textures: torch.Tensor | np.ndarray | None = None,
    texture_res_out: int = 16,
    texture_type: str = "surface",
) -> None:
    """Write a mesh as an OBJ file (the inverse of :func:`load_obj`).

    Args:
        filename: the OBJ file to write (overwritten if it exists).
        vertices: ``[V, 3]`` positions (a leading batch dimension of 1 is accepted).
        faces: ``[F, 3]`` 0-based vertex indices.
        textures: None; surface textures ``[F, R*R, 3]``; or vertex colours ``[V, 3]``;
            values in [0, 1] (clipped).
        texture_res_out: the smallest side, in pixels, of each face's square tile in the
            texture atlas of surface textures (it is at least 6*R and a multiple of R).
        texture_type: ``"surface"`` or ``"vertex"``.

    Surface textures are written as ``<stem>.mtl`` and a PNG atlas ``<stem>.png`` next to the
    OBJ (``<stem>`` being the OBJ's file name without its suffix), with one ``vt`` per face
    corner, such that ``load_obj(filename, load_texture=True, texture_res=R)`` returns them
    within 1/255. Vertex colours are written as ``v x y z r g b``. Coordinates are written
    with 9 significant digits, so float32 vertices load back exactly.
    """
    if texture_type not in _TEXTURE_TYPES:
        raise ValueError(f"texture_type must be 'surface' or 'vertex', got {texture_type!r}")
    path = Path(filename)
    v = _as_numpy(vertices)
    f = _as_numpy(faces)
    if v.ndim == 3 and v.shape[0] == 1:
        v = v[0]
    if f.ndim == 3 and f.shape[0] == 1:
        f = f[0]
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must be [V, 3], got {tuple(v.shape)}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces must be [F, 3], got {tuple(f.shape)}")
    f = f.astype(np.int64)
    if f.size and (f.min() < 0 or f.max() >= v.shape[0]):
        raise ValueError(f"face indices must lie in [0, {v.shape[0] - 1}]")
    # 9 significant digits give float32 values back exactly, 17 float64 ones
    vfmt = ".9g" if v.dtype in (np.float32, np.float16) else ".17g"
    v = v.astype(np.float64)

    tex = None
    if textures is not None:
        tex = _as_numpy(textures).astype(np.float64)
        if texture_type == "surface":
            if tex.ndim == 4 and tex.shape[0] == 1:
                tex = tex[0]
            R = int(round(math.sqrt(tex.shape[1]))) if tex.ndim == 3 else 0
            if tex.ndim != 3 or tex.shape[0] != f.shape[0] or tex.shape[2] != 3 or R * R != tex.shape[1]:
                raise ValueError(f"surface textures must be [F={f.shape[0]}, R*R, 3], got {tuple(tex.shape)}")
        else:
            if tex.ndim == 3 and tex.shape[0] == 1:
                tex = tex[0]
            if tex.shape != (v.shape[0], 3):
                raise ValueError(f"vertex textures must be [V={v.shape[0]}, 3], got {tuple(tex.shape)}")
            tex = np.clip(tex, 0.0, 1.0)

    lines = ["# written by softras.io.save_obj"]
    if tex is not None and texture_type == "surface":
        if path.suffix.lower() in (".mtl", ".png"):
            raise ValueError(f"{path}: the OBJ's name must not end in .mtl or .png")
        mtl_path = path.with_name(path.stem + ".mtl")
        png_path = path.with_name(path.stem + ".png")
        image, uv = _atlas(tex, R, texture_res_out)
        import imageio.v3 as iio

        iio.imwrite(png_path, image)
        mtl_path.write_text(
            "# written by softras.io.save_obj\nnewmtl material_1\nKa 0 0 0\nKd 1 1 1\nKs 0 0 0\n"
            f"illum 1\nmap_Kd {png_path.name}\n",
            encoding="utf-8",
        )
        lines.append(f"mtllib {mtl_path.name}")
        lines.extend(f"v {x:{vfmt}} {y:{vfmt}} {z:{vfmt}}" for x, y, z in v.tolist())
        lines.extend(f"vt {s:.9g} {t:.9g}" for s, t in uv.reshape(-1, 2).tolist())
        lines.append("usemtl material_1")
        lines.extend(
            f"f {a + 1}/{3 * i + 1} {b + 1}/{3 * i + 2} {c + 1}/{3 * i + 3}" for i, (a, b, c) in enumerate(f.tolist())
        )
    else:
        if tex is not None:  # vertex colours
            lines.extend(
                f"v {x:{vfmt}} {y:{vfmt}} {z:{vfmt}} {r:.9g} {g:.9g} {b:.9g}"
                for (x, y, z), (r, g, b) in zip(v.tolist(), tex.tolist())
            )
        else:
            lines.extend(f"v {x:{vfmt}} {y:{vfmt}} {z:{vfmt}}" for x, y, z in v.tolist())
        lines.extend(f"f {a + 1} {b + 1} {c + 1}" for a, b, c in f.tolist())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def voxel_to_mesh(voxel: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The exposed faces of the cubes of the occupied voxels of a grid ``[X, Y, Z]``.

    Voxel (i, j, k) is the cube [i, i+1] x [j, j+1] x [k, k+1] (voxel units). Occupied means
    True for a boolean grid and > 0.5 otherwise. Only faces between an occupied voxel and an
    empty one (or the outside) are kept, two triangles each, counter-clockwise about the
    outward normal; cube corners are shared, so a solid gives a closed surface.

    Returns:
        vertices ``[V, 3]`` float32 and faces ``[F, 3]`` int64.
    """
    occ = _as_numpy(voxel)
    if occ.ndim != 3:
        raise ValueError(f"voxel must be a 3-D grid, got shape {tuple(occ.shape)}")
    occ = occ.astype(bool) if occ.dtype == np.bool_ else occ > 0.5
    shape = np.array(occ.shape)
    padded = np.pad(occ, 1)
    quads = []
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1]])  # (u, v) corners, CCW about +e_d
    for d in range(3):
        u, w = (d + 1) % 3, (d + 2) % 3
        for sign in (1, -1):
            neighbour = np.roll(padded, -sign, axis=d)[1:-1, 1:-1, 1:-1]
            cells = np.argwhere(occ & ~neighbour)  # [n, 3]
            if len(cells) == 0:
                continue
            corners = np.repeat(cells[:, None, :], 4, axis=1)  # [n, 4, 3]
            corners[:, :, d] += 1 if sign > 0 else 0
            corners[:, :, u] += square[:, 0]
            corners[:, :, w] += square[:, 1]
            if sign < 0:
                corners = corners[:, ::-1]
            quads.append(corners)
    if not quads:
        return torch.zeros(0, 3, dtype=torch.float32), torch.zeros(0, 3, dtype=torch.int64)
    corners = np.concatenate(quads)  # [Q, 4, 3]
    ny, nz = shape[1] + 1, shape[2] + 1
    ids = (corners[..., 0] * ny + corners[..., 1]) * nz + corners[..., 2]
    unique, inverse = np.unique(ids.reshape(-1), return_inverse=True)
    inverse = inverse.reshape(-1, 4)
    verts = np.stack([unique // (ny * nz), (unique // nz) % ny, unique % nz], axis=1)
    tris = np.stack([inverse[:, [0, 1, 2]], inverse[:, [0, 2, 3]]], axis=1).reshape(-1, 3)
    return torch.from_numpy(verts.astype(np.float32)), torch.from_numpy(tris.astype(np.int64))


def save_voxel(filename: PathLike, voxel: torch.Tensor | np.ndarray) -> None:
    """Write a voxel grid ``[S, S, S]`` (bool, or values in [0, 1] thresholded at 0.5) as an
    OBJ of the exposed cube faces of its occupied voxels, in voxel units (see
    :func:`voxel_to_mesh`)."""
    vertices, faces = voxel_to_mesh(voxel)
    save_obj(filename, vertices, faces)
