"""Body models (SMPL, SMPL+H, SMPL-X) through ``smplx``, from a file under any name or a folder.

``smplx`` implements the blend skinning; this module finds and reads the file (without chumpy or
scipy, see :mod:`softras.body.files`), checks it, and hands it to ``smplx.SMPL``/``SMPLH``/
``SMPLX`` as their ``data_struct``. ``smplx.create`` is not used: it rejects the official file
names (``basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl``) and reads pickles with chumpy.
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .files import read_model_file
from .synthetic import BODY_TYPES, synthetic_model_path

__all__ = ["BODY_TYPES", "GENDERS", "NUM_JOINTS", "find_model_file", "load_body_model", "read_body_model"]

GENDERS = ("neutral", "female", "male")
NUM_JOINTS = {"smpl": 24, "smplh": 52, "smplx": 55}
_REQUIRED = {
    "smpl": ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f"),
    "smplh": ("hands_componentsl", "hands_componentsr", "hands_meanl", "hands_meanr"),
    "smplx": ("lmk_faces_idx", "lmk_bary_coords"),
}
_CONTOUR_KEYS = ("dynamic_lmk_faces_idx", "dynamic_lmk_bary_coords")
# the vertex counts of the official topologies, whose vertex_ids smplx knows
_OFFICIAL_VERTICES = {"smpl": (6890, "smplh"), "smplh": (6890, "smplh"), "smplx": (10475, "smplx")}


def _identify(relative: str) -> tuple[str, str] | None:
    """(body type, gender) of a model file from its path relative to the folder, or None."""
    name = relative.lower()
    m = re.fullmatch(r"(?:(?:smpl|smplh|smplx)/)?(smpl|smplh|smplx)_(neutral|female|male)\.(pkl|npz)", name)
    if m:
        return m.group(1), m.group(2)
    m = re.fullmatch(r"(?:smpl/)?basicmodel_(neutral|f|m)_lbs_[^/]*\.pkl", name)
    if m:
        return "smpl", {"f": "female", "m": "male"}.get(m.group(1), m.group(1))
    m = re.fullmatch(r"(?:smplh/)?(neutral|female|male)/model\.npz", name)  # AMASS's SMPL+H layout
    if m:
        return "smplh", m.group(1)
    return None


def find_model_file(folder: str | Path, body_type: str = "smpl", gender: str = "neutral") -> Path:
    """The model file of ``body_type`` and ``gender`` in ``folder``: smplx's layout
    (``<folder>/smpl/SMPL_NEUTRAL.pkl`` or ``<folder>/SMPL_NEUTRAL.pkl``, ``SMPLH_*``, ``SMPLX_*``
    as ``.pkl`` or ``.npz``), the official SMPL names (``basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl``,
    ``basicModel_f_lbs_...``) or AMASS's ``smplh/<gender>/model.npz``."""
    folder = Path(folder)
    found: dict[tuple[str, str], Path] = {}
    for path in sorted(folder.glob("*")) + sorted(folder.glob("*/*")) + sorted(folder.glob("*/*/model.npz")):
        key = _identify(path.relative_to(folder).as_posix()) if path.is_file() else None
        if key is not None and key not in found:
            found[key] = path
    if (body_type, gender) not in found:
        have = ", ".join(f"{t}/{g}" for t, g in sorted(found)) or "no body model files"
        raise FileNotFoundError(
            f"model_path: no {body_type} model for gender {gender!r} in {str(folder)!r} (found: {have})"
        )
    return found[(body_type, gender)]


def _check(data: dict[str, Any], path: Path, body_type: str, use_face_contour: bool) -> None:
    where = f"model_path: {str(path)!r}"
    required = _REQUIRED["smpl"]
    if body_type != "smpl":
        required += _REQUIRED["smplh"]
    if body_type == "smplx":
        required += _REQUIRED["smplx"] + (_CONTOUR_KEYS if use_face_contour else ())
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"{where} is not a {body_type} body model: missing keys {', '.join(missing)}")
    for key in required:
        if not isinstance(data[key], np.ndarray) or data[key].dtype == object:
            raise ValueError(f"{where}: {key} is not a numeric array (a {type(data[key]).__name__})")
    V, J = data["v_template"].shape[0], NUM_JOINTS[body_type]
    min_betas = 20 if body_type == "smplx" else 1  # SMPL-X: shape, then expression directions
    expected = {
        "v_template": ((V, 3), "[V, 3]"),
        "shapedirs": ((V, 3, None), f"[V, 3, >={min_betas}]"),
        "posedirs": ((V, 3, 9 * (J - 1)), f"[V, 3, {9 * (J - 1)}]"),
        "J_regressor": ((J, V), f"[{J}, V]"),
        "weights": ((V, J), f"[V, {J}]"),
        "kintree_table": ((2, J), f"[2, {J}]"),
        "f": ((None, 3), "[F, 3]"),
    }
    for key, (shape, text) in expected.items():
        got = data[key].shape
        if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
            hint = f" (V = {V}, the vertices of v_template)" if "V" in text else ""
            raise ValueError(f"{where}: {key} expected shape {text} for {body_type}{hint}, got {list(got)}")
    if data["shapedirs"].shape[2] < min_betas:
        got = list(data["shapedirs"].shape)
        raise ValueError(f"{where}: shapedirs expected shape [V, 3, >={min_betas}], got {got}")
    faces = data["f"]
    if faces.size and (faces.min() < 0 or faces.max() >= V):
        raise ValueError(f"{where}: f expected indices in [0, {V}), got [{faces.min()}, {faces.max()}]")


def _vertex_ids(data: dict[str, Any], path: Path, body_type: str, given: dict | None) -> dict[str, int]:
    import smplx.vertex_ids

    V = data["v_template"].shape[0]
    if given is not None:
        ids, source = dict(given), "vertex_ids"
    elif isinstance(data.get("vertex_ids"), dict):
        ids, source = data["vertex_ids"], f"model_path: {str(path)!r}: vertex_ids"
    elif V == _OFFICIAL_VERTICES[body_type][0]:
        return dict(smplx.vertex_ids.vertex_ids[_OFFICIAL_VERTICES[body_type][1]])
    else:
        raise ValueError(
            f"model_path: {str(path)!r} has {V} vertices, not the official {body_type} topology "
            f"({_OFFICIAL_VERTICES[body_type][0]}), and holds no vertex_ids dict: pass vertex_ids= or add one"
        )
    needed = set(smplx.vertex_ids.vertex_ids["smplh"])
    missing = sorted(needed - set(ids))
    if missing:
        raise ValueError(f"{source}: missing the vertices {', '.join(missing)}")
    bad = {k: v for k, v in ids.items() if not 0 <= int(v) < V}
    if bad:
        raise ValueError(f"{source}: expected indices in [0, {V}), got {bad}")
    return {k: int(v) for k, v in ids.items()}


class _Struct:
    """Attribute access to a dict (what smplx expects as ``data_struct``)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.__dict__.update(data)


def read_body_model(model_path: str | Path | None, body_type: str = "smpl", gender: str = "neutral") -> dict:
    """The checked contents of a body model file (or of the one of ``body_type`` and ``gender``
    in a folder; the bundled synthetic model when ``model_path`` is None) as a dict of numpy
    arrays, with its path under ``"path"``."""
    if body_type not in BODY_TYPES:
        raise ValueError(f"body_type: expected one of {', '.join(BODY_TYPES)}, got {body_type!r}")
    if gender not in GENDERS:
        raise ValueError(f"gender: expected one of {', '.join(GENDERS)}, got {gender!r}")
    if model_path is None:
        path = synthetic_model_path(body_type)
    else:
        path = Path(model_path).expanduser()
        if path.is_dir():
            path = find_model_file(path, body_type, gender)
        elif not path.exists():
            raise FileNotFoundError(f"model_path: no such file or folder {str(path)!r}")
    data = read_model_file(path)
    data["path"] = path
    return data


def load_body_model(
    model_path: str | Path | None,
    body_type: str = "smpl",
    gender: str = "neutral",
    num_betas: int = 10,
    **kwargs: Any,
) -> torch.nn.Module:
    """An ``smplx.SMPL``/``SMPLH``/``SMPLX`` module for a model file or folder.

    model_path: a file under any name (``.pkl`` or ``.npz``: the official
    ``basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl``, ``SMPL_NEUTRAL.pkl``, ...), a folder in
    smplx's layout (see :func:`find_model_file`), or None for the bundled synthetic model.
    Official pickles load without chumpy or scipy. ``kwargs`` go to the smplx class
    (``batch_size``, ``dtype``, ``use_pca``, ``num_pca_comps``, ``flat_hand_mean``,
    ``use_face_contour``, ``vertex_ids``, ...). ``vertex_ids`` (the nose, eyes, ears, fingertips
    and toes smplx adds as extra joints) default to smplx's for the official topologies and
    otherwise come from the file's ``vertex_ids`` dict.
    """
    import smplx
    from smplx.vertex_joint_selector import VertexJointSelector

    if not isinstance(num_betas, int) or num_betas < 1:
        raise ValueError(f"num_betas: expected a positive int, got {num_betas!r}")
    data = read_body_model(model_path, body_type, gender)
    path = data.pop("path")
    _check(data, path, body_type, bool(kwargs.get("use_face_contour", False)))
    vertex_ids = _vertex_ids(data, path, body_type, kwargs.pop("vertex_ids", None))
    common = dict(gender=gender, num_betas=num_betas, **kwargs)
    quiet = contextlib.redirect_stdout(io.StringIO())  # smplx prints a warning for 10-beta files
    if body_type == "smplx":
        # smplx.SMPLX reads its file itself (no data_struct): hand it the checked arrays as an .npz
        arrays = {k: v for k, v in data.items() if isinstance(v, np.ndarray) and v.dtype != object}
        with tempfile.TemporaryDirectory(prefix="softras_body_") as tmp, quiet:
            np.savez(Path(tmp) / "model.npz", **arrays)
            model = smplx.SMPLX(str(Path(tmp) / "model.npz"), ext="npz", **common)
        selector_kw = {k: kwargs[k] for k in ("use_hands", "use_feet_keypoints") if k in kwargs}
        model.vertex_joint_selector = VertexJointSelector(vertex_ids=vertex_ids, **selector_kw)
        return model
    cls = smplx.SMPL if body_type == "smpl" else smplx.SMPLH
    with quiet:
        return cls(str(path), data_struct=_Struct(data), vertex_ids=vertex_ids, **common)
