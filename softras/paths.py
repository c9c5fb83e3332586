"""Where softras finds its bundled configs and data, from a checkout or an installation."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent


def _locate(package: str, folder: str) -> Path:
    local = _ROOT / folder
    if (local / "README.md").exists() and (local / "__init__.py").exists():
        return local  # a source checkout (also an editable install)
    try:
        return Path(str(resources.files(package)))
    except (ModuleNotFoundError, TypeError):
        return local


def config_dir() -> Path:
    """The folder of the Hydra configs (``configs/`` in a checkout)."""
    return _locate("softras.configs", "configs")


def data_dir() -> Path:
    """The folder of the bundled demo data (``data/`` in a checkout)."""
    return _locate("softras.data", "data")


def data_file(name: str) -> Path:
    """A bundled data file by name, e.g. ``data_file('sphere_1352.obj')``."""
    path = data_dir() / name
    if not path.exists():
        raise FileNotFoundError(f"no bundled data file {name!r} in {data_dir()}")
    return path
