"""Builds the native backends ahead of first use, or compile-checks the CUDA sources.

python -m softras.build                      # build the CPU backend (and CUDA if a GPU is present)
python -m softras.build --cuda-compile-check # nvcc -c every .cu (needs nvcc, no GPU)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import torch

from . import _native

# The CPU wheel of torch lacks this generated header, which the CUDA headers include.
_CMAKE_MACROS = "#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n"


def nvcc_command(src: Path, obj: Path, arch: str, includes: list[str]) -> list[str]:
    """The nvcc command line of the compile check: the flags of the real build (softras's
    own from ``_native.nvcc_flags()``, torch's common ones, the extension's defines) for one
    architecture, compile only."""
    from torch.utils import cpp_extension

    nvcc = shutil.which("nvcc") or (
        os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc") if cpp_extension.CUDA_HOME else None
    )
    if nvcc is None or not os.path.exists(nvcc):
        raise RuntimeError("nvcc not found")
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    cmd = [nvcc, "-c", str(src), "-o", str(obj), f"-arch={arch}"]
    cmd += list(cpp_extension.COMMON_NVCC_FLAGS) + ["--compiler-options", "'-fPIC'"]
    cmd += ["-DTORCH_API_INCLUDE_EXTENSION_H", "-DTORCH_EXTENSION_NAME=softras_cuda", f"-D_GLIBCXX_USE_CXX11_ABI={abi}"]
    cmd += _native.nvcc_flags()
    cmd += [f"-I{i}" for i in includes]
    return [c.strip("'") for c in cmd]


def cuda_compile_check(arch: str = "sm_90", verbose: bool = False) -> list[Path]:
    """Compiles every .cu source with nvcc (compile only, no link) with the flags of the real
    build (see ``nvcc_command``); returns the sources.

    Raises RuntimeError with the compiler's output when one fails.
    """
    from torch.utils import cpp_extension

    sources = sorted(_native.CSRC.glob("*.cu"))
    with tempfile.TemporaryDirectory() as tmp:
        shim = Path(tmp) / "shim" / "c10" / "cuda" / "impl"
        shim.mkdir(parents=True)
        (shim / "cuda_cmake_macros.h").write_text(_CMAKE_MACROS)
        includes = [str(Path(tmp) / "shim"), str(_native.CSRC)] + cpp_extension.include_paths()
        includes.append(sysconfig.get_paths()["include"])
        for src in sources:
            cmd = nvcc_command(src, Path(tmp) / (src.stem + ".o"), arch, includes)
            if verbose:
                print("softras: " + " ".join(c for c in cmd if not c.startswith("-I")))
            start = time.time()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"nvcc failed on {src.name}:\n{proc.stdout}\n{proc.stderr}")
            if verbose:
                print(f"compiled {src.name} for {arch} in {time.time() - start:.0f} s")
    return sources


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m softras.build", description=__doc__.splitlines()[0])
    parser.add_argument("--cuda-compile-check", action="store_true", help="only compile the .cu sources")
    parser.add_argument("--arch", default="sm_90", help="GPU architecture for the compile check")
    args = parser.parse_args(argv)
    if args.cuda_compile_check:
        try:
            cuda_compile_check(args.arch, verbose=True)
        except RuntimeError as err:
            print(f"softras: CUDA compile check failed: {err}", file=sys.stderr)
            return 1
        return 0
    kinds = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    status = 0
    for kind in kinds:
        try:
            _native.load(kind)
            print(f"softras: {kind} backend ready")
        except _native.BackendUnavailable as err:
            print(f"softras: {kind} backend unavailable: {err}", file=sys.stderr)
            status = 1 if kind == "cpu" else status
    return status


if __name__ == "__main__":
    sys.exit(main())
