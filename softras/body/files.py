"""Reading body model files (SMPL, SMPL+H, SMPL-X) into plain dicts of numpy arrays.

The official SMPL ``.pkl`` files are Python-2 pickles holding ``chumpy`` objects (``shapedirs``)
and a scipy sparse ``J_regressor``. chumpy does not import on Python 3.11+, so
:class:`BodyModelUnpickler` maps every ``chumpy.*`` class to :class:`ChumpyStandIn`, which keeps
the array in its state (``x``; for an operation node, which is not evaluated, the first array
it holds), and every ``scipy.sparse`` matrix class to scipy's own class when scipy imports, or to
:class:`SparseStandIn` (rebuilt from ``data``, ``indices``, ``indptr`` and the shape) when it
does not. :func:`read_model_file` then turns every value into a dense numpy array.
"""

from __future__ import annotations

import importlib
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BodyModelUnpickler", "ChumpyStandIn", "SparseStandIn", "read_model_file"]


class ChumpyStandIn:
    """Stands in for a chumpy object (``chumpy.ch.Ch`` and its operations): keeps its array."""

    x: np.ndarray | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.x = next((a for a in args if isinstance(a, np.ndarray)), None)

    def __setstate__(self, state: Any) -> None:
        self.x = _first_array(state)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if self.x is None:
            raise ValueError("a chumpy object without an array in its state")
        return np.asarray(self.x, dtype=dtype)


def _first_array(state: Any) -> np.ndarray | None:
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):  # (state, slotstate)
        state = state[0] if state[0] is not None else state[1]
    if isinstance(state, dict):
        if "x" in state:
            return _first_array(state["x"])
        values = list(state.values())
    elif isinstance(state, (list, tuple)):
        values = list(state)
    else:
        values = [state]
    for value in values:  # a plain array first, then one held by a nested chumpy object
        if isinstance(value, np.ndarray):
            return value
    for value in values:
        if isinstance(value, ChumpyStandIn) and value.x is not None:
            return value.x
    return None


class SparseStandIn:
    """Stands in for a scipy sparse matrix (CSC, CSR or COO) when scipy is not installed."""

    state: dict = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict = {}

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:
            state = {**(state[0] or {}), **(state[1] or {})}
        self.state = dict(state)

    def toarray(self) -> np.ndarray:
        st = self.state
        shape = tuple(int(n) for n in st.get("_shape", st.get("shape", ())))
        fmt = st.get("format", "csc")
        if len(shape) != 2:
            raise ValueError(f"a sparse matrix without a 2-D shape in its state (keys {sorted(st)})")
        dense = np.zeros(shape, dtype=np.asarray(st["data"]).dtype)
        data = np.asarray(st["data"])
        if fmt == "coo":
            rows, cols = np.asarray(st["row"]), np.asarray(st["col"])
        else:
            indices, indptr = np.asarray(st["indices"]), np.asarray(st["indptr"])
            outer = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
            rows, cols = (indices, outer) if fmt == "csc" else (outer, indices)
        np.add.at(dense, (rows, cols), data)
        return dense

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.toarray() if dtype is None else self.toarray().astype(dtype)


def _scipy_sparse():
    """scipy.sparse, or None where scipy is not installed."""
    try:
        return importlib.import_module("scipy.sparse")
    except ImportError:
        return None


class BodyModelUnpickler(pickle.Unpickler):
    """An unpickler for body model files that needs neither chumpy nor scipy."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            return ChumpyStandIn
        if module.startswith("scipy.sparse") and name.endswith("_matrix"):
            sparse = _scipy_sparse()
            return getattr(sparse, name) if sparse is not None else SparseStandIn
        if module.startswith("numpy.core") and int(np.__version__.split(".")[0]) >= 2:
            module = "numpy._core" + module[len("numpy.core") :]  # pickles from numpy 1
        return super().find_class(module, name)


def _plain(value: Any) -> Any:
    if isinstance(value, (ChumpyStandIn, SparseStandIn)):
        return np.asarray(value)
    if hasattr(value, "toarray") and "scipy.sparse" in type(value).__module__:
        return np.asarray(value.toarray())
    if isinstance(value, np.ndarray) and value.dtype == object and value.shape == ():
        return value.item()
    return value


def read_model_file(path: str | Path) -> dict[str, Any]:
    """The contents of a body model file (``.pkl`` or ``.npz``) as a dict of numpy arrays (and
    the plain Python values it holds, such as a ``vertex_ids`` dict)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model_path: no body model file {str(path)!r}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=True) as npz:
                raw = {k: npz[k] for k in npz.files}
        else:
            with open(path, "rb") as fh:
                raw = BodyModelUnpickler(io.BufferedReader(fh), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, OSError, AttributeError, ImportError) as err:
        raise ValueError(f"model_path: {str(path)!r} is not a body model file ({type(err).__name__}: {err})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"model_path: {str(path)!r} is not a body model file (it holds a {type(raw).__name__})")
    return {str(k): _plain(v) for k, v in raw.items()}
