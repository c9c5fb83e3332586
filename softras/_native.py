"""Loading of the native backends (built on first use, cached) and their autograd Function.

Importing softras never compiles. The first call that needs a backend builds it with
torch's C++ extension tools into a cache folder keyed by a hash of the sources, the
compiler flags and the torch version, so a change to any source rebuilds it and an
unchanged tree loads in milliseconds. The folder is also keyed by the location of the
sources: ninja records absolute source paths, so two checkouts sharing one folder would
rebuild each other's build at every switch; each checkout gets its own. One line goes to
stderr whenever a call has to compile. Environment:

- ``SOFTRAS_CACHE``: the cache folder (default ``~/.cache/softras``);
- ``SOFTRAS_VERBOSE=1``: show the compiler's output;
- ``SOFTRAS_CUDA_FAST_MATH=1``: compile the CUDA backend with ``--use_fast_math`` (off by
  default: approximate division and exponentials, and flushing denormals to zero, make
  float32 results differ from the CPU backend by more than rounding);
- ``MAX_JOBS`` and ``TORCH_CUDA_ARCH_LIST``: honoured as by torch.

This module sits below ``softras.functional`` (which imports it, never the reverse).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

CSRC = Path(__file__).parent / "csrc"
_HEADERS = ["rasterize.h", "host.h"]
_SOURCES = {
    "cpu": ["rasterize_cpu.cpp", "bindings.cpp"],
    "cuda": ["rasterize_cuda.cu", "bindings.cpp"],
}
_CFLAGS = ["-O3", "-fopenmp", "-std=c++17"]
_CUDA_CFLAGS = ["-O3", "-std=c++17", "-lineinfo"]
_CUDA_DEFINE = "-DSOFTRAS_WITH_CUDA"


def _fast_math() -> bool:
    return os.environ.get("SOFTRAS_CUDA_FAST_MATH", "") not in ("", "0")


def cxx_flags(kind: str) -> list[str]:
    """Flags of the C++ compiler for backend ``kind`` (the ones the build passes)."""
    return _CFLAGS + ([_CUDA_DEFINE] if kind == "cuda" else [])


def nvcc_flags() -> list[str]:
    """Flags the CUDA build passes to nvcc (besides torch's own); the compile check uses them too."""
    return _CUDA_CFLAGS + (["--use_fast_math"] if _fast_math() else []) + [_CUDA_DEFINE]


_lock = threading.Lock()
_modules: dict[str, ModuleType | None] = {}
_warned: set[str] = set()


class BackendUnavailable(RuntimeError):
    """A native backend cannot be built or loaded here."""


def _cache_root() -> Path:
    return Path(os.environ.get("SOFTRAS_CACHE", Path.home() / ".cache" / "softras"))


def _build_key(kind: str) -> str:
    """Hash of what the build's result depends on: sources, flags, torch and Python versions."""
    h = hashlib.sha256()
    for name in _HEADERS + _SOURCES[kind]:
        h.update(name.encode())
        h.update((CSRC / name).read_bytes())
    flags = cxx_flags(kind) + (nvcc_flags() if kind == "cuda" else [])
    h.update(repr((flags, torch.__version__, sys.version_info[:2])).encode())
    if kind == "cuda":
        h.update(os.environ.get("TORCH_CUDA_ARCH_LIST", "").encode())
    return h.hexdigest()[:16]


def _checkout_key() -> str:
    """Hash of where the sources live (the build's ninja file names them by absolute path)."""
    return hashlib.sha256(str(CSRC.resolve()).encode()).hexdigest()[:8]


def build_dir(kind: str, name: str | None = None) -> Path:
    """The cache folder of backend ``kind`` built from the sources in ``CSRC`` as module ``name``.

    The same sources at the same place always map to the same folder; a change of content,
    flags, torch version or location maps to another one.
    """
    name = name or f"softras_{kind}"
    return _cache_root() / f"{name}_{_build_key(kind)}_{_checkout_key()}"


def needs_compile(kind: str, name: str | None = None) -> bool:
    """Whether loading ``kind`` will run the compiler: no built module in its folder, or one
    older than a source (ninja's own test, by modification time)."""
    name = name or f"softras_{kind}"
    built = list(build_dir(kind, name).glob(f"{name}*.so"))
    if not built:
        return True
    newest_source = max((CSRC / s).stat().st_mtime for s in _HEADERS + _SOURCES[kind])
    return min(p.stat().st_mtime for p in built) < newest_source


def _compile(kind: str, name: str | None = None) -> ModuleType:
    from torch.utils import cpp_extension

    if shutil.which(os.environ.get("CXX", "c++")) is None:
        raise BackendUnavailable("no C++ compiler found (set CXX or install g++)")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailable("torch sees no CUDA device")
        if cpp_extension.CUDA_HOME is None:
            raise BackendUnavailable("no CUDA toolkit found (set CUDA_HOME)")
    name = name or f"softras_{kind}"
    folder = build_dir(kind, name)
    folder.mkdir(parents=True, exist_ok=True)
    verbose = os.environ.get("SOFTRAS_VERBOSE", "") not in ("", "0")
    if needs_compile(kind, name):
        print(f"softras: compiling the {kind} backend (cached in {folder})", file=sys.stderr, flush=True)
    sources = [str(CSRC / s) for s in _SOURCES[kind]]
    kwargs = dict(
        name=name,
        sources=sources,
        extra_cflags=cxx_flags(kind),
        extra_ldflags=["-fopenmp"],
        extra_include_paths=[str(CSRC)],
        build_directory=str(folder),
        verbose=verbose,
    )
    if kind == "cuda":
        kwargs["extra_cuda_cflags"] = nvcc_flags()
    try:
        return cpp_extension.load(**kwargs)
    except (RuntimeError, OSError, ImportError, FileNotFoundError) as err:
        raise BackendUnavailable(f"building the {kind} backend failed: {err}") from err


def load(kind: str) -> ModuleType:
    """The native module of backend ``kind`` ('cpu' or 'cuda'), built on first use.

    Raises BackendUnavailable when it cannot be built here.
    """
    with _lock:
        if kind not in _modules:
            try:
                _modules[kind] = _compile(kind)
            except BackendUnavailable as err:
                _modules[kind] = None
                _modules[f"{kind}:error"] = err  # type: ignore[assignment]
        module = _modules[kind]
    if module is None:
        raise _modules[f"{kind}:error"]  # type: ignore[misc]
    return module


def available(kind: str) -> bool:
    """Whether backend ``kind`` can be used (builds it if needed)."""
    try:
        load(kind)
        return True
    except BackendUnavailable:
        return False


def warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _params(module: ModuleType, s: Any, num_meshes: int, num_faces: int, texture_size: int):
    p = module.RasterParams()
    p.num_meshes = num_meshes
    p.num_faces = num_faces
    p.height, p.width = s.image_size
    p.texture_size = texture_size
    p.texture_res = max(1, round(texture_size**0.5)) if s.texture_type == "surface" else 1
    p.tile = 8
    p.dist_func = getattr(module.DistFunc, s.dist_func)
    p.aggr_rgb = getattr(module.AggrRGB, s.aggr_func_rgb)
    p.aggr_alpha = getattr(module.AggrAlpha, s.aggr_func_alpha)
    p.texture_type = getattr(module.TextureType, s.texture_type)
    p.fill_back = s.fill_back
    p.near, p.far, p.eps = s.near, s.far, s.eps
    p.sigma, p.gamma = s.sigma_val, s.gamma_val
    p.threshold, p.grow = s.threshold, s.grow
    p.set_background(*s.background_color)
    return p


# settings: a softras.functional.RasterSettings (not imported here: functional imports this module)
class NativeRasterize(torch.autograd.Function):
    """Soft rasterization through a native backend; backward is the exact gradient."""

    @staticmethod
    def forward(ctx, face_vertices, textures, mesh_first_face, settings, kind):
        module = load(kind)
        params = _params(module, settings, mesh_first_face.shape[0], face_vertices.shape[0], textures.shape[1])
        rgba, depth, index, aux = module.forward(face_vertices, textures, mesh_first_face, params)
        ctx.save_for_backward(face_vertices, textures, mesh_first_face, rgba, aux, index)
        ctx.module, ctx.params = module, params
        ctx.mark_non_differentiable(depth, index)
        return rgba, depth, index

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_rgba, grad_depth, grad_index):
        face_vertices, textures, first, rgba, aux, index = ctx.saved_tensors
        if grad_rgba is None:
            return None, None, None, None, None
        grad_fv, grad_tex = ctx.module.backward(
            grad_rgba.contiguous(),
            face_vertices,
            textures,
            first,
            rgba,
            aux,
            index,
            ctx.params,
            ctx.needs_input_grad[1],
        )
        return (
            grad_fv if ctx.needs_input_grad[0] else None,
            grad_tex if ctx.needs_input_grad[1] else None,
            None,
            None,
            None,
        )
