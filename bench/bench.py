"""Benchmarks of the soft rasterizer: forward and forward+backward time, peak memory, targets.

Run ``python -m bench.bench`` (``make bench``) from the repository root. Every (workload,
backend) case runs in a fresh subprocess, so that its peak memory is its own and a crash in
one case does not hide the others. The parent prints a table and writes a JSON report.

Workloads (float32, one camera transform + rasterization per call; the loss is the sum of
the whole RGBA output, and its backward goes through the camera transform to the vertices):

- W1, one step of the sphere-deformation demo: sphere_1352 scaled by 0.5 (2700 faces), all
  120 views of data/camera.npy as one batch, viewing angle 15, 64x64, sigma 1e-4, rgb 'hard'.
- W2, textured render: Spot (5856 faces), 256x256, random surface textures 5x5 (25 texels per
  face), default settings, one view (distance 2.732, elevation 30, azimuth 45), angle 30.
- W3, a large mesh: an icosphere of 81,920 faces (radius 1), 512x512, sigma 1e-5, softmax,
  one view (distance 2.732), angle 30, one random colour per face.
- W4, one train-recon step at batch 64: ReconModel (softras.models) on 2 x 64 random RGBA
  images, each predicted mesh (642 vertices, 1280 faces) rendered at two of the 24 dataset
  views (256 images, 64x64, sigma 1e-4, dist_eps 1e-10, rgb 'hard', angle 15), loss 1 - IoU +
  Laplacian + flatten; fwd+bwd covers network and rasterizer. ``rasterizer_fwd_bwd_s`` (info)
  times the rasterizer alone on the same face vertices, and ``rasterizer_share`` is its share
  of the step. Not run on the reference backend (a whole step is what it measures).

The ``reference`` backend (pure PyTorch brute force) is far too slow at full size, so it runs
a fraction of each problem and its times are EXTRAPOLATED (multiplied by a factor recorded in
the report): W1 on a subset of the 120 views; W2 and W3 on a random sample of pixels, shaded in
the reference's own checkpointed chunks by its per-chunk function. Brute force costs the same
for every (pixel, face) pair, so the scaling is linear. Its peak memory is not reported.

Times are medians over ``--repeats`` calls after one warm-up call (which may build the native
extension); the reference makes at most 3 (1 with ``--quick``) and stops early once its timed
calls took 30 s (10 s). Each case records the CPU pressure (Linux PSI) during its timed calls:
on a shared machine other load can inflate times, and the table warns when it was high.
"fwd" is the forward pass with autograd recording (as in a training step); "fwd+bwd" adds
``loss.backward()``. Peak memory (MiB) is, on CPU, the peak resident set size of the case's
process during the warm-up and timed calls minus its resident size just before them (VmHWM,
reset through /proc/self/clear_refs; else ru_maxrss, which also covers the set-up), and on CUDA
the growth of torch.cuda.max_memory_allocated over the memory allocated before them.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
ALL_WORKLOADS = ("W1", "W2", "W3", "W4")
ALL_BACKENDS = ("reference", "cpu", "cuda")
DEFAULT_OUT = "outputs/bench/bench.json"
CASE_TIMEOUT_S = 1200
NOISY_PCT = 25.0  # CPU pressure (% of the timed wall time with a task waiting for a CPU) to warn at

# How much of each problem the reference runs: W1 -> number of views (of 120);
# W2 / W3 -> number of the reference's own pixel chunks (chunk_pairs // F pixels each).
REF_SAMPLE = {"full": {"W1": 2, "W2": 12, "W3": 32}, "quick": {"W1": 1, "W2": 1, "W3": 1}}
REF_MAX_REPEATS = {"full": 3, "quick": 1}
# The reference stops repeating (after at least one timed pair) once its timed calls took this long,
# so that a loaded machine cannot stretch the run much beyond its budget.
REF_TIME_BUDGET_S = {"full": 30.0, "quick": 10.0}

# Targets: (backend, workload or "*", metric, op, threshold, label)
TARGETS = [
    ("cpu", "W1", "fwd_bwd_s", "<=", 0.25, "fwd+bwd <= 0.25 s"),
    ("cpu", "*", "speedup_fwd_bwd", ">=", 100.0, ">= 100x reference (fwd+bwd)"),
    ("cpu", "W3", "peak_mb", "<", 2048.0, "peak memory < 2 GiB"),
    ("cuda", "W1", "fwd_bwd_s", "<=", 0.010, "fwd+bwd <= 0.010 s"),
    ("cuda", "W3", "fwd_bwd_s", "<=", 0.005, "fwd+bwd <= 0.005 s"),
]


# ----------------------------------------------------------------------------------------------
# workloads


@dataclass
class Case:
    """One benchmark case: ``forward()`` returns the tensor whose sum is the loss."""

    forward: Callable[[], torch.Tensor]
    leaves: list[torch.Tensor]  # tensors that require grad (their .grad is cleared between calls)
    info: dict = field(default_factory=dict)
    scale: float = 1.0  # measured time x scale = reported time (reference only)
    scaled: str | None = None  # how the reference problem was shrunk
    check: Callable[[], float | None] | None = None  # max |reference - cpu| on the sample


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _render(verts, faces, eye, angle, textures, image_size, backend, **kw):
    """Camera transform + rasterization of one mesh (verts [V, 3]) seen from eyes [B, 3]."""
    from softras.functional import soft_rasterize
    from softras.functional.cameras import face_vertices, look_at, perspective

    B = eye.shape[0]
    v = look_at(verts[None].expand(B, -1, -1), eye)
    v = perspective(v, angle=angle)
    fv = face_vertices(v, faces[None].expand(B, -1, -1))
    return soft_rasterize(fv, textures, image_size=image_size, backend=backend, **kw)


def _project(verts, faces, eye, angle):
    from softras.functional.cameras import face_vertices, look_at, perspective

    v = perspective(look_at(verts[None], eye), angle=angle)
    return face_vertices(v, faces[None])[0]  # [F, 3, 3]


def _native_ok() -> bool:
    from softras import _native

    return _native.available("cpu")


def build_w1(backend: str, device: torch.device, mode: str) -> Case:
    import numpy as np

    from softras.functional.cameras import get_points_from_angles
    from softras.io import load_obj_geometry

    verts, faces = load_obj_geometry(DATA / "sphere_1352.obj")
    verts = (verts * 0.5).to(device).requires_grad_(True)
    faces = faces.to(device)
    cam = np.load(DATA / "camera.npy")  # [120, 3] distance, elevation, azimuth
    n_all = cam.shape[0]
    views = list(range(n_all))
    info = {
        "mesh": "data/sphere_1352.obj x 0.5",
        "faces": int(faces.shape[0]),
        "batch": n_all,
        "image_size": [64, 64],
        "settings": {"sigma_val": 1e-4, "aggr_func_rgb": "hard", "viewing_angle": 15},
        "textures": "ones [B, F, 1, 3], no grad",
        "grad": "vertices",
    }
    scale, scaled = 1.0, None
    if backend == "reference":
        k = REF_SAMPLE[mode]["W1"]
        views = [round(i * n_all / k) for i in range(k)]  # spread over the elevations
        scale = n_all / len(views)
        scaled = f"reference ran {len(views)} of {n_all} views (indices {views}); times x {scale:g}"
    eye = get_points_from_angles(cam[views, 0], cam[views, 1], cam[views, 2]).to(device)
    B, F = len(views), faces.shape[0]
    tex = torch.ones(B, F, 1, 3, device=device)
    kw = dict(sigma_val=1e-4, aggr_func_rgb="hard")

    def forward():
        return _render(verts, faces, eye, 15.0, tex, 64, backend, **kw)

    def check():
        if not _native_ok():
            return None
        with torch.no_grad():
            ref = forward()
            nat = _render(verts, faces, eye, 15.0, tex, 64, "cpu", **kw)
        return float((ref - nat).abs().max())

    return Case(forward, [verts], info, scale, scaled, check if backend == "reference" else None)


def _single_view(
    name: str,
    verts: torch.Tensor,
    faces: torch.Tensor,
    textures: torch.Tensor,
    size: int,
    settings_kw: dict,
    backend: str,
    device: torch.device,
    mode: str,
    info: dict,
) -> Case:
    """A batch-1 workload; the reference shades a random sample of pixels and is scaled."""
    from softras.functional import _torch_impl
    from softras.functional.cameras import get_points_from_angles
    from softras.functional.settings import RasterSettings

    verts = verts.to(device).requires_grad_(True)
    faces = faces.to(device)
    tex = textures.to(device).requires_grad_(True)
    eye = get_points_from_angles(2.732, 30.0, 45.0).to(device)
    angle = 30.0
    F = faces.shape[0]

    if backend != "reference":

        def forward():
            return _render(verts, faces, eye, angle, tex, size, backend, **settings_kw)

        return Case(forward, [verts, tex], info)

    # reference: the reference's own chunking (chunk_pairs // F pixels per checkpointed chunk)
    s = RasterSettings(image_size=size, **settings_kw)
    H, W = s.image_size
    chunk_pairs = inspect.signature(_torch_impl.soft_rasterize_packed).parameters["chunk_pairs"].default
    step = max(1, chunk_pairs // F)
    n_chunks = REF_SAMPLE[mode][name]
    n_pix = min(H * W, n_chunks * step)
    px_all, py_all = _torch_impl.pixel_centres(H, W, device, verts.dtype)
    sample = torch.randperm(H * W, generator=_seeded(1234))[:n_pix].to(device)
    px, py = px_all[sample], py_all[sample]
    scale = H * W / n_pix
    scaled = (
        f"reference shaded {n_pix} of {H * W} pixels (random sample, seed 1234) in {n_chunks} "
        f"checkpointed chunks of {step} pixels (its own chunk_pairs={chunk_pairs} // {F} faces) "
        f"with _torch_impl._shade_chunk; times x {scale:g}"
    )

    def forward():
        from torch.utils.checkpoint import checkpoint

        fv = _project(verts, faces, eye, angle)
        t = tex[0]
        parts = []
        for p0 in range(0, n_pix, step):
            args = (px[p0 : p0 + step], py[p0 : p0 + step], fv, t, s, F)
            if torch.is_grad_enabled():
                parts.append(checkpoint(_torch_impl._shade_chunk, *args, use_reentrant=False)[0])
            else:
                parts.append(_torch_impl._shade_chunk(*args)[0])
        return torch.cat(parts)  # [n_pix, 4]

    def check():
        if not _native_ok():
            return None
        with torch.no_grad():
            ref = forward()
            nat = _render(verts, faces, eye, angle, tex, size, "cpu", **settings_kw)
        nat = nat[0].reshape(4, H * W)[:, sample].t()
        return float((ref - nat).abs().max())

    return Case(forward, [verts, tex], info, scale, scaled, check)


def build_w2(backend: str, device: torch.device, mode: str) -> Case:
    from softras.io import load_obj_geometry

    verts, faces = load_obj_geometry(DATA / "spot_triangulated.obj")
    F = faces.shape[0]
    textures = torch.rand(1, F, 25, 3, generator=_seeded(2))
    info = {
        "mesh": "data/spot_triangulated.obj",
        "faces": int(F),
        "batch": 1,
        "image_size": [256, 256],
        "settings": {"defaults": True, "sigma_val": 1e-5, "gamma_val": 1e-4, "viewing_angle": 30},
        "camera": "distance 2.732, elevation 30, azimuth 45",
        "textures": "random [1, F, 25, 3] (texture_res 5), requires grad",
        "grad": "vertices, textures",
    }
    return _single_view("W2", verts, faces, textures, 256, {}, backend, device, mode, info)


def build_w3(backend: str, device: torch.device, mode: str) -> Case:
    from .scenes import icosphere

    verts, faces = icosphere(6)
    F = faces.shape[0]
    textures = torch.rand(1, F, 1, 3, generator=_seeded(3))
    info = {
        "mesh": "icosphere, 6 subdivisions, radius 1",
        "faces": int(F),
        "batch": 1,
        "image_size": [512, 512],
        "settings": {"sigma_val": 1e-5, "aggr_func_rgb": "softmax", "viewing_angle": 30},
        "camera": "distance 2.732, elevation 30, azimuth 45",
        "textures": "random [1, F, 1, 3], requires grad",
        "grad": "vertices, textures",
    }
    kw = {"sigma_val": 1e-5, "aggr_func_rgb": "softmax"}
    return _single_view("W3", verts, faces, textures, 512, kw, backend, device, mode, info)


def build_w4(backend: str, device: torch.device, mode: str) -> Case:
    from softras.datasets import view_eyes
    from softras.functional.cameras import face_vertices, look_at, perspective
    from softras.functional.losses import iou_loss
    from softras.functional.rasterize import soft_rasterize_packed
    from softras.functional.settings import RasterSettings
    from softras.losses import FlattenLoss, LaplacianLoss
    from softras.models import ReconModel

    torch.manual_seed(0)
    B = 64
    model = ReconModel().to(device)
    faces = model.faces
    lap, flat = LaplacianLoss(model.template_vertices, faces).to(device), FlattenLoss(faces).to(device)
    gen = _seeded(0)
    images = torch.rand(2 * B, 4, 64, 64, generator=gen).to(device)
    views = torch.randint(24, (2, B), generator=gen)
    eyes = torch.cat([view_eyes(views[0])] * 2 + [view_eyes(views[1])] * 2).to(device)
    target = torch.cat([images[:B, 3], images[:B, 3], images[B:, 3], images[B:, 3]])
    settings = RasterSettings(image_size=(64, 64), sigma_val=1e-4, dist_eps=1e-10, aggr_func_rgb="hard")
    F = faces.shape[0]
    first = torch.arange(4 * B, device=device) * F
    tex = torch.ones(1, 1, 3, device=device).expand(4 * B * F, 1, 3)

    def project(vertices):
        v = perspective(look_at(vertices.repeat(2, 1, 1), eyes), 15.0, (64, 64))
        return face_vertices(v, faces[None].expand(4 * B, -1, -1)).reshape(-1, 3, 3)

    def forward():
        vertices, _, _ = model(images)
        alpha = soft_rasterize_packed(project(vertices), tex, first, settings, backend=backend)[:, 3]
        loss = iou_loss(alpha, target) + 5e-3 * lap(vertices).mean() + 5e-4 * flat(vertices).mean()
        return loss[None]

    with torch.no_grad():
        fv0 = project(model(images)[0])
    fv = fv0.clone().requires_grad_(True)
    times = []
    for _ in range(4):  # the rasterizer alone on the same faces (1 warm-up + 3 timed)
        t0 = time.perf_counter()
        soft_rasterize_packed(fv, tex, first, settings, backend=backend)[:, 3].sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        fv.grad = None
    info = {
        "model": "ReconModel (642-vertex sphere, 1280 faces)",
        "batch": B,
        "images_rendered": 4 * B,
        "image_size": [64, 64],
        "settings": {"sigma_val": 1e-4, "dist_eps": 1e-10, "aggr_func_rgb": "hard", "viewing_angle": 15},
        "grad": "network parameters (through the rasterizer)",
        "rasterizer_fwd_bwd_s": statistics.median(times[1:]),
    }
    return Case(forward, [p for p in model.parameters()], info)


BUILDERS = {"W1": build_w1, "W2": build_w2, "W3": build_w3, "W4": build_w4}


# ----------------------------------------------------------------------------------------------
# one case, in a child process


def _proc_status_kib(field_name: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field_name}:\s+(\d+)\s+kB", text, re.M)
    return int(m.group(1)) if m else None


def _maxrss_kib() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r // 1024 if sys.platform == "darwin" else r


def _cpu_pressure_us() -> int | None:
    """Total microseconds in which some runnable task waited for a CPU (PSI), or None."""
    try:
        m = re.search(r"^some .*total=(\d+)", Path("/proc/pressure/cpu").read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _proc_status_kib("VmHWM") is not None
    except OSError:
        return False


def run_case(workload: str, backend: str, repeats: int, mode: str) -> dict:
    import gc

    device = torch.device("cuda" if backend == "cuda" else "cpu")
    if backend in ("cpu", "cuda"):
        from softras import _native

        _native.load(backend)  # build / load before measuring (raises if unavailable)
    case = BUILDERS[workload](backend, device, mode)
    if backend == "reference":
        repeats = max(1, min(repeats, REF_MAX_REPEATS[mode]))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def clear():
        for t in case.leaves:
            t.grad = None

    def fwd():
        out = case.forward()
        sync()
        return out

    def fwd_bwd():
        out = case.forward()
        out.sum().backward()
        sync()

    gc.collect()
    sync()
    rss0 = _proc_status_kib("VmRSS")
    maxrss0 = _maxrss_kib()
    hwm_reset = device.type == "cpu" and _reset_hwm()  # VmHWM := current RSS
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        cuda0 = torch.cuda.memory_allocated()

    t0 = time.perf_counter()
    fwd_bwd()  # warm-up
    warmup_s = time.perf_counter() - t0
    clear()

    t_fwd, t_fb = [], []
    psi0, t_timed0 = _cpu_pressure_us(), time.perf_counter()
    budget = REF_TIME_BUDGET_S[mode] if backend == "reference" else math.inf
    for _ in range(repeats):  # interleaved, so that slow drifts affect both alike
        t0 = time.perf_counter()
        out = fwd()
        t_fwd.append(time.perf_counter() - t0)
        del out
        t0 = time.perf_counter()
        fwd_bwd()
        t_fb.append(time.perf_counter() - t0)
        clear()
        if time.perf_counter() - t_timed0 > budget:
            break
    psi1, t_timed1 = _cpu_pressure_us(), time.perf_counter()
    stall = None
    if psi0 is not None and psi1 is not None:
        stall = 100.0 * (psi1 - psi0) / 1e6 / max(t_timed1 - t_timed0, 1e-9)

    peak_mb, peak_method = None, None
    if case.scale == 1.0:
        if device.type == "cuda":
            peak_mb = (torch.cuda.max_memory_allocated() - cuda0) / 2**20
            peak_method = "cuda max_memory_allocated growth (warm-up + timed calls)"
        elif hwm_reset and rss0 is not None:
            # VmHWM was reset to the RSS just before the warm-up: the peak of warm-up + timed calls
            peak_mb = ((_proc_status_kib("VmHWM") or 0) - rss0) / 1024
            peak_method = "VmHWM (reset via /proc/self/clear_refs before warm-up) - RSS before warm-up"
        elif rss0 is not None:
            peak_mb = (_maxrss_kib() - rss0) / 1024
            peak_method = "ru_maxrss - RSS before warm-up (upper bound: includes the set-up)"
        else:
            peak_mb = (_maxrss_kib() - maxrss0) / 1024
            peak_method = "ru_maxrss delta (lower bound)"

    check = case.check() if case.check is not None else None
    fwd_m, fb_m = statistics.median(t_fwd), statistics.median(t_fb)
    if "rasterizer_fwd_bwd_s" in case.info:  # W4: the rasterizer's share of a training step
        case.info["rasterizer_share"] = case.info["rasterizer_fwd_bwd_s"] / fb_m
    return {
        "workload": workload,
        "backend": backend,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "repeats": len(t_fb),
        "extrapolated": case.scale != 1.0,
        "scale_factor": case.scale,
        "scaled": case.scaled,
        "fwd_s": fwd_m * case.scale,
        "fwd_bwd_s": fb_m * case.scale,
        "measured_fwd_s": fwd_m,
        "measured_fwd_bwd_s": fb_m,
        "measured_fwd_s_all": t_fwd,
        "measured_fwd_bwd_s_all": t_fb,
        "warmup_s": warmup_s,
        "cpu_pressure_pct": stall,
        "peak_mb": peak_mb,
        "peak_method": peak_method,
        "baseline_rss_mb": rss0 / 1024 if rss0 is not None else None,
        "check_max_abs_diff_vs_cpu": check,
        "info": case.info,
    }


def child_main(args) -> int:
    try:
        result = run_case(args.case_workload, args.case_backend, args.repeats, args.mode)
    except Exception:
        traceback.print_exc()
        return 1
    Path(args._result_file).write_text(json.dumps(result))
    return 0


# ----------------------------------------------------------------------------------------------
# parent: spawn cases, targets, table, JSON


def machine_info() -> dict:
    cpu_model = None
    try:
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu_model = m.group(1).strip() if m else None
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "torch_threads": torch.get_num_threads(),
        "cuda_available": cuda,
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
        "cuda_version": torch.version.cuda,
    }


def spawn_case(workload: str, backend: str, repeats: int, mode: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        cmd = [
            sys.executable,
            "-m",
            "bench.bench",
            "--_case",
            workload,
            backend,
            "--repeats",
            str(repeats),
            "--_mode",
            mode,
            "--_result-file",
            str(result_file),
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=CASE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return {"workload": workload, "backend": backend, "error": f"timed out after {CASE_TIMEOUT_S} s"}
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not result_file.exists():
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-15:]
            last = tail[-1].strip() if tail else "no output"
            return {
                "workload": workload,
                "backend": backend,
                "error": f"exit code {proc.returncode}: {last}",
                "stderr_tail": tail,
            }
        result = json.loads(result_file.read_text())
        result["case_wall_s"] = wall
        result["error"] = None
        return result


def _compare(value: float, op: str, threshold: float) -> bool:
    return {"<=": value <= threshold, "<": value < threshold, ">=": value >= threshold}[op]


def evaluate(cases: list[dict]) -> None:
    """Adds speedups over the reference and the targets of each case (in place)."""
    ref = {c["workload"]: c for c in cases if c["backend"] == "reference" and not c.get("error")}
    for c in cases:
        if c.get("error"):
            c["targets"] = []
            continue
        r = ref.get(c["workload"])
        if c["backend"] != "reference" and r is not None:
            c["speedup_fwd_vs_reference"] = r["fwd_s"] / c["fwd_s"]
            c["speedup_fwd_bwd_vs_reference"] = r["fwd_bwd_s"] / c["fwd_bwd_s"]
        else:
            c["speedup_fwd_vs_reference"] = c["speedup_fwd_bwd_vs_reference"] = None
        values = {"fwd_bwd_s": c["fwd_bwd_s"], "peak_mb": c["peak_mb"]}
        values["speedup_fwd_bwd"] = c["speedup_fwd_bwd_vs_reference"]
        c["targets"] = []
        for backend, workload, metric, op, threshold, label in TARGETS:
            if backend != c["backend"] or workload not in ("*", c["workload"]):
                continue
            v = values[metric]
            c["targets"].append(
                {
                    "target": label,
                    "metric": metric,
                    "op": op,
                    "threshold": threshold,
                    "value": v,
                    "met": None if v is None else _compare(v, op, threshold),
                }
            )


def _fmt(v, spec: str, none: str = "-") -> str:
    return none if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def print_table(cases: list[dict]) -> None:
    head = ["workload", "backend", "fwd s", "fwd+bwd s", "peak MiB", "speedup", "targets", "result"]
    rows = []
    for c in cases:
        if c.get("error"):
            rows.append([c["workload"], c["backend"], "ERROR", "", "", "", c["error"], "error"])
            continue
        star = "*" if c["extrapolated"] else ""
        tg = []
        for t in c["targets"]:
            mark = "n/a" if t["met"] is None else ("ok" if t["met"] else "MISS")
            tg.append(f"{t['target']} [{mark}]")
        if not c["targets"]:
            result = "-"
        elif any(t["met"] is False for t in c["targets"]):
            result = "FAIL"
        elif any(t["met"] is None for t in c["targets"]):
            result = "n/a"
        else:
            result = "PASS"
        sp = c.get("speedup_fwd_bwd_vs_reference")
        rows.append(
            [
                c["workload"],
                c["backend"] + star,
                _fmt(c["fwd_s"], ".4g"),
                _fmt(c["fwd_bwd_s"], ".4g"),
                _fmt(c["peak_mb"], ".1f", "n/a" if c["extrapolated"] else "-"),
                "-" if sp is None else f"{sp:,.0f}x",
                "; ".join(tg) or "-",
                result,
            ]
        )
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*head))
    print(line.format(*["-" * w for w in widths]))
    for r in rows:
        print(line.format(*r))
    extrap = [c for c in cases if not c.get("error") and c["extrapolated"]]
    if extrap:
        print("\n* reference times are EXTRAPOLATED from a fraction of the problem (peak memory not measured):")
        for c in extrap:
            print(f"  {c['workload']}: {c['scaled']}")
    print("speedup = reference fwd+bwd / backend fwd+bwd (reference on CPU)")
    noisy = [c for c in cases if not c.get("error") and (c.get("cpu_pressure_pct") or 0) > NOISY_PCT]
    if noisy:
        names = ", ".join(f"{c['workload']}/{c['backend']} ({c['cpu_pressure_pct']:.0f}%)" for c in noisy)
        print(
            f"warning: tasks waited for a CPU during the timed calls of {names}: "
            "other load on the machine; times may be inflated"
        )


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.bench", description=__doc__.split("\n\n")[0])
    default_backends = "reference,cpu" + (",cuda" if torch.cuda.is_available() else "")
    p.add_argument("--backends", default=default_backends, help=f"comma list (default {default_backends})")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per case (default 5; 2 with --quick)")
    p.add_argument("--workloads", default=",".join(ALL_WORKLOADS), help="comma list (default W1,W2,W3,W4)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"JSON report (default {DEFAULT_OUT})")
    p.add_argument("--quick", action="store_true", help="smoke run: fewer repeats, smaller reference sample")
    p.add_argument("--_case", nargs=2, metavar=("WORKLOAD", "BACKEND"), help=argparse.SUPPRESS)
    p.add_argument("--_mode", default="full", choices=("full", "quick"), help=argparse.SUPPRESS)
    p.add_argument("--_result-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 2 if args.quick else 5
    if args.repeats < 1:
        p.error("--repeats: expected >= 1")
    if args._case:
        args.case_workload, args.case_backend = args._case
        args.mode = args._mode
        return args
    args.workload_list = [w.strip().upper() for w in args.workloads.split(",") if w.strip()]
    args.backend_list = [b.strip().lower() for b in args.backends.split(",") if b.strip()]
    for w in args.workload_list:
        if w not in ALL_WORKLOADS:
            p.error(f"--workloads: unknown {w!r} (known: {', '.join(ALL_WORKLOADS)})")
    for b in args.backend_list:
        if b not in ALL_BACKENDS:
            p.error(f"--backends: unknown {b!r} (known: {', '.join(ALL_BACKENDS)})")
    args.mode = "quick" if args.quick else "full"
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args._case:
        return child_main(args)
    # the reference first: the speedups need it
    backends = sorted(args.backend_list, key=ALL_BACKENDS.index)
    t_start = time.perf_counter()
    cases = []
    for w in args.workload_list:
        for b in backends:
            if (w, b) == ("W4", "reference"):  # a whole training step: not a rasterizer comparison
                continue
            print(f"[bench] {w} / {b} ...", end=" ", flush=True, file=sys.stderr)
            c = spawn_case(w, b, args.repeats, args.mode)
            if c.get("error"):
                print(f"ERROR ({c['error']})", file=sys.stderr)
                for line in c.get("stderr_tail", []):
                    print(f"    {line}", file=sys.stderr)
            else:
                print(
                    f"fwd {c['fwd_s']:.4g} s, fwd+bwd {c['fwd_bwd_s']:.4g} s ({c['case_wall_s']:.0f} s)",
                    file=sys.stderr,
                )
            cases.append(c)
    evaluate(cases)
    print()
    print_table(cases)

    all_targets = [t for c in cases for t in c.get("targets", [])]
    report = {
        "machine": machine_info(),
        "config": {
            "workloads": args.workload_list,
            "backends": backends,
            "repeats": args.repeats,
            "reference_max_repeats": REF_MAX_REPEATS[args.mode],
            "reference_time_budget_s": REF_TIME_BUDGET_S[args.mode],
            "quick": args.quick,
            "reference_sample": REF_SAMPLE[args.mode],
            "dtype": "float32",
            "timing": "median wall seconds after one warm-up; fwd = forward with autograd recording incl. "
            "camera transform; fwd_bwd adds loss.backward() of the sum of the RGBA output",
            "peak_mb": "MiB; CPU: peak RSS growth of a fresh process per case; CUDA: max_memory_allocated "
            "growth; null for the extrapolated reference",
            "cpu_pressure_pct": "share of the timed wall time in which some task waited for a CPU "
            "(Linux PSI, whole machine); high values mean other load disturbed the timing",
            "total_wall_s": time.perf_counter() - t_start,
        },
        "targets": [
            {"backend": b, "workload": w, "metric": m, "op": op, "threshold": th, "target": label}
            for b, w, m, op, th, label in TARGETS
        ],
        "cases": cases,
        "targets_met": sum(t["met"] is True for t in all_targets),
        "targets_missed": sum(t["met"] is False for t in all_targets),
        "targets_not_evaluated": sum(t["met"] is None for t in all_targets),
        "errors": sum(bool(c.get("error")) for c in cases),
    }
    out = Path(args.out)
    if not out.is_absolute():
        out = Path.cwd() / out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}  ({report['config']['total_wall_s']:.0f} s)")
    if report["errors"]:
        print(f"{report['errors']} case(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
