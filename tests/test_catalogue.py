"""The catalogue of real-world inputs: every bad file, value and override a user may bring,
and the cases that must simply work, run through the real ``softras`` command in a process of
its own (``python -m softras.cli ...``), each in an empty folder of its own.

One table, one row per case: the command line, the exit code, and either the regex of the one
line on stderr (a mistake: exit 2, exactly one line, no traceback, no folder left under
``outputs/`` or wherever the case points ``hydra.run.dir``) or a check of the result (a run
that works). This is the README's promise "a bad override or a missing file is reported in one
line naming the key or the path", checked.

The processes start in a few parallel batches (two at a time, about 3 s of start-up each):
a module fixture runs the rows the session selected, then each row's test reads its result.
``{in}`` in a command line is the folder of input files made by :func:`make_inputs`, and
``HOME`` is that folder, so ``~/x`` names ``{in}/x`` (the native build cache stays where it is).
"""

# ruff: noqa: E501 - the table keeps one case per line

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from softras.paths import data_file

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 2


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str
    cwd: Path
    inputs: Path


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    code: int
    expect: str | Callable[[Result], None]  # regex of the one stderr line, or a check of the result
    absent: tuple[str, ...] = ()  # folders (relative to the case's folder) that must not exist after it
    slow: bool = False  # a whole run (marked slow)


# ---- inputs --------------------------------------------------------------------------------------


def _write_obj(path: Path, text: str) -> None:
    path.write_text(text)


def make_inputs(folder: Path) -> None:
    """Every input file a row names, in ``folder``."""
    tri = "v 0 0 0\nv 1 0 0\nv 0 1 0\n"
    _write_obj(folder / "empty.obj", "")
    (folder / "binary.obj").write_bytes(bytes(range(256)) * 8)
    _write_obj(folder / "zero_index.obj", tri + "f 0 1 2\n")
    _write_obj(folder / "out_of_range.obj", tri + "f 1 2 9\n")
    _write_obj(folder / "nan_vertex.obj", "v 0 0 0\nv 1 0 nan\nv 0 1 0\nf 1 2 3\n")
    (folder / "a_folder.obj").mkdir()
    # a real mesh with three stray 2-vertex f lines (edges), as exported scenes carry
    sphere = data_file("sphere_642.obj").read_text()
    (folder / "stray_edges.obj").write_text(sphere + "f 1 2\nf 3 4\nf 5 6\n")
    (folder / "a=b.obj").write_text(sphere)
    (folder / "sphere.obj").write_text(sphere)
    # a textured OBJ whose texture PNG is cut short
    trunc = folder / "truncated"
    trunc.mkdir()
    for name in ("spot_triangulated.obj", "spot_triangulated.mtl"):
        (trunc / name).write_text(data_file(name).read_text())
    png = data_file("spot_texture.png").read_bytes()
    (trunc / "spot_texture.png").write_bytes(png[: len(png) // 2])
    # masks of two sizes, with two cameras
    mixed = folder / "mixed_masks"
    mixed.mkdir()
    imageio.imwrite(mixed / "a.png", np.zeros((32, 32), np.uint8))
    imageio.imwrite(mixed / "b.png", np.zeros((16, 16), np.uint8))
    np.save(folder / "cams2.npy", np.array([[2.732, 0.0, 0.0], [2.732, 0.0, -90.0]]))
    # config files
    (folder / "broken.yaml").write_text("steps: 3\nrenderer: [1, 2\n")
    (folder / "list.yaml").write_text("- 1\n- 2\n")
    (folder / "wrong_type.yaml").write_text("steps: abc\n")
    (folder / "unknown_key.yaml").write_text("steps: 1\nfoo: 1\n")
    # an occupied folder, a file where a folder belongs, folders that are not runs
    (folder / "occupied").mkdir()
    (folder / "occupied" / "notes.txt").write_text("mine")
    (folder / "a_file").write_text("not a folder")
    (folder / "not_a_run").mkdir()
    run = folder / "render_run"  # a folder that holds a render's checkpoint
    run.mkdir()
    (run / "config.yaml").write_text("steps: 1\n")
    torch.save(
        {"format": 1, "task": "render", "step": 0, "world_size": 1, "rng": [], "state": {}}, run / "checkpoint.pt"
    )
    unread = folder / "unreadable_run"
    unread.mkdir()
    (unread / "config.yaml").write_text("steps: 1\n")
    (unread / "checkpoint.pt").write_text("not a checkpoint")


# ---- checks of results ---------------------------------------------------------------------------


def _run_folder(r: Result, sub: str) -> Path:
    runs = [p for p in (r.cwd / "outputs" / sub).iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def _metrics(r: Result, sub: str) -> dict:
    m = json.loads((_run_folder(r, sub) / "metrics.json").read_text())
    assert m["status"] == "completed", m
    return m


def views_with_target_mesh(r: Result) -> None:
    m = _metrics(r, "deform")
    assert m["views"] == 8 and len(m["per_view_hard_iou"]) == 8  # not the ring's 5 x 24 = 120


def sphere_rendered(r: Result) -> None:
    assert _metrics(r, "render")["faces"] == 1280  # sphere_642.obj


def stray_edges_warned_once(r: Result) -> None:
    sphere_rendered(r)
    warned = [ln for ln in r.stderr.splitlines() if re.search(r"\b3\b.*(2 corners|fewer than 3|skipped)", ln)]
    assert len(warned) == 1, r.stderr


def seen_from_above(r: Result) -> None:
    """camera.elevation=90 looks straight down: the sphere fills the middle of view.png."""
    img = imageio.imread(_run_folder(r, "render") / "view.png")
    assert img.shape == (32, 32, 4)
    alpha = img[..., 3] / 255.0
    # a unit sphere from 2.732 with a 30 degree half angle covers pi (0.37/0.58)^2 / 4 ~ 31%
    assert 0.2 < float((alpha > 0.5).mean()) < 0.5, float((alpha > 0.5).mean())
    assert alpha[16, 16] > 0.99 and alpha[0, 0] < 0.01


# ---- the table -------------------------------------------------------------------------------

TINY_RENDER = ("device=cpu", "renderer.image_size=16", "turntable.frames=1", "strip.sigma_val=[1e-4]",
               "strip.gamma_val=[1e-3]", "texture.load=false")  # fmt: skip
MISSING = "/nonexistent/softras-catalogue"

# fmt: off
CASES = [
    # -- files: missing, a folder, empty, binary, bad indices, NaN -------------------------------
    Case("missing-mesh", ("render", f"mesh={MISSING}.obj"), 2, rf"mesh: no such file {MISSING}\.obj$"),
    Case("missing-template", ("deform", f"template.mesh={MISSING}.obj"), 2, rf"template\.mesh: no such file {MISSING}"),
    Case("missing-cameras", ("deform", f"target.cameras={MISSING}.npy"), 2, r"target\.cameras: no such file"),
    Case("missing-object", ("fit-pose", f"object.mesh={MISSING}.obj"), 2, r"object\.mesh: no such file"),
    Case("missing-target-image", ("fit-pose", f"target.image={MISSING}.png"), 2, r"target\.image: no such file"),
    Case("folder-as-mesh", ("render", "mesh={in}/a_folder.obj"), 2, r"mesh: expected an OBJ file, got the folder .*a_folder\.obj"),
    Case("folder-as-template", ("deform", "template.mesh={in}/a_folder.obj"), 2, r"template\.mesh: expected a file, got the folder .*a_folder\.obj"),
    Case("empty-obj", ("render", "mesh={in}/empty.obj"), 2, r"mesh: .*no faces in .*empty\.obj"),
    Case("binary-obj", ("render", "mesh={in}/binary.obj"), 2, r"mesh: .*binary\.obj: not a text OBJ file"),
    Case("zero-index", ("render", "mesh={in}/zero_index.obj"), 2, r"mesh: .*zero_index\.obj:4: vertex index 0"),
    Case("out-of-range-index", ("deform", "template.mesh={in}/out_of_range.obj"), 2, r"template\.mesh: .*out_of_range\.obj:4: vertex index 9 out of range"),
    Case("nan-vertex", ("render", "mesh={in}/nan_vertex.obj"), 2, r"mesh: .*nan_vertex\.obj:2: non-finite value 'nan'"),
    # -- corrupt inputs (issue 10, item 4) ---------------------------------------------------------
    Case("truncated-texture-png", ("render", "mesh={in}/truncated/spot_triangulated.obj"), 2, r"mesh: .*spot_texture\.png.*truncated"),
    Case("truncated-target-png", ("fit-pose", "target.image={in}/truncated/spot_texture.png"), 2, r"target\.image: cannot read .*spot_texture\.png.*truncated"),
    Case("masks-of-mixed-sizes", ("deform", "target.masks={in}/mixed_masks", "target.cameras={in}/cams2.npy"), 2, r"target\.masks: expected every mask 32x32 .*, got 16x16 in .*b\.png"),
    Case("run-dir-is-a-file", ("render", "hydra.run.dir={in}/a_file"), 2, r"hydra\.run\.dir: .*a_file is a file, not a folder"),
    Case("run-dir-holds-files", ("render", "hydra.run.dir={in}/occupied"), 2, r"hydra\.run\.dir: .*occupied already holds files"),
    Case("named-run-dir-removed", ("render", "hydra.run.dir=new/run", f"mesh={MISSING}.obj"), 2, r"mesh: no such file", absent=("new",)),
    # -- every key honoured or refused (item 5) ------------------------------------------------------
    Case("target-views-with-target-mesh", ("deform", "target.mesh={in}/sphere.obj", "target.views=8", "steps=0", "device=cpu", "renderer.image_size=16"), 0, views_with_target_mesh, slow=True),
    Case("target-mesh-and-masks", ("deform", "target.mesh={in}/sphere.obj", "target.masks={in}/mixed_masks"), 2, r"target\.mesh, target\.masks: give one target, not both"),
    Case("mask-without-image", ("fit-pose", "target.mask={in}/mixed_masks/a.png"), 2, r"target\.mask: a mask goes with a target\.image"),
    Case("use-mask-with-target-image", ("fit-pose", "target.image={in}/mixed_masks/a.png", "target.use_mask=true"), 2, r"target\.use_mask: a target\.image takes its mask from target\.mask"),
    Case("init-with-trials", ("fit-pose", "trials=3", "init.angle_deg=10"), 2, r"init: sets the start of a single fit"),
    # -- paths with ~ or = (item 9) ----------------------------------------------------------------
    Case("tilde-expands", ("render", "mesh=~/sphere.obj", *TINY_RENDER), 0, sphere_rendered, slow=True),
    Case("tilde-missing-names-the-expanded-path", ("render", "mesh=~/missing.obj"), 2, r"mesh: no such file /.*/missing\.obj$"),
    Case("equals-in-a-path", ("render", "mesh={in}/a=b.obj"), 2, r"mesh: cannot read '.*a=b\.obj' as a value; put the value in quotes: mesh='.*a=b\.obj'$"),
    Case("equals-in-a-quoted-path", ("render", "mesh='{in}/a=b.obj'", *TINY_RENDER), 0, sphere_rendered, slow=True),
    Case("unknown-key", ("deform", "foo=1"), 2, r"foo: no such key in 'deform'"),
    Case("unknown-key-with-plus", ("deform", "+foo=1"), 2, r"foo: no such key in 'deform'; unknown keys are errors, with or without '\+'"),
    Case("unknown-key-with-plus-plus", ("render", "++camera.fov=1"), 2, r"camera\.fov: no such key in 'render'"),
    Case("unknown-key-in-a-sweep", ("deform", "-m", "foo=1,2"), 2, r"foo: no such key in 'deform'"),
    # -- values and overrides ------------------------------------------------------------------------
    Case("wrong-type-steps", ("deform", "steps=abc"), 2, r"steps: Value 'abc' .*could not be converted to Integer"),
    Case("wrong-type-in-a-list", ("render", "strip.sigma_val=[a,1]"), 2, r"strip\.sigma_val\[0\]: Value 'a'"),
    Case("string-image-size", ("render", "renderer.image_size='64'"), 2, r"renderer\.image_size: .*got '64'"),
    Case("huge-image-size", ("render", "renderer.image_size=20000"), 2, r"renderer\.image_size: .*16384"),
    Case("negative-steps", ("deform", "steps=-1"), 2, r"steps: expected an integer >= 0, got -1"),
    Case("bad-list-syntax", ("render", "-m", "turntable.frames=[1,"), 2, r"turntable\.frames: .*\[1,"),
    Case("unknown-group-option", ("deform", "optim=sgd"), 2, r"optim/sgd.*adam"),
    Case("bad-camera-eye", ("render", "camera.eye=[1,2]"), 2, r"camera\.eye: expected \[x, y, z\]"),
    Case("bad-device", ("deform", "device=tpu"), 2, r"device: expected 'auto', 'cpu', 'cuda' or 'cuda:<index>', got 'tpu'"),
    Case("missing-gpu", ("deform", "device=cuda:7"), 2, r"device: 'cuda:7'"),
    # -- config files ------------------------------------------------------------------------------
    Case("broken-yaml", ("deform", "config={in}/broken.yaml"), 2, r"config: .*broken\.yaml line 2 is not valid YAML"),
    Case("yaml-not-a-mapping", ("deform", "config={in}/list.yaml"), 2, r"config: .*list\.yaml must hold a mapping"),
    Case("yaml-wrong-type", ("deform", "config={in}/wrong_type.yaml"), 2, r"steps: Value 'abc'.*\(in .*wrong_type\.yaml\)"),
    Case("yaml-unknown-key", ("deform", "config={in}/unknown_key.yaml"), 2, r"foo: no such key .*\(in .*unknown_key\.yaml\)"),
    Case("missing-yaml", ("deform", f"config={MISSING}.yaml"), 2, rf"config: no such file '{MISSING}\.yaml'"),
    Case("unknown-preset", ("deform", "config=nope"), 2, r"config: no preset 'nope' for 'deform' \(presets: airplane, quick\)"),
    # -- resume from the wrong folder ----------------------------------------------------------------
    Case("resume-missing-folder", ("deform", f"resume={MISSING}"), 2, rf"resume: no such run folder {MISSING}$"),
    Case("resume-not-a-run", ("deform", "resume={in}/not_a_run"), 2, r"resume: .*not_a_run is not a resumable deform run"),
    Case("resume-another-task", ("deform", "resume={in}/render_run", "device=cpu"), 2, r"resume: .*checkpoint\.pt is a checkpoint of 'render', not of 'deform'", slow=True),
    Case("resume-unreadable-checkpoint", ("deform", "resume={in}/unreadable_run", "device=cpu"), 2, r"resume: cannot read .*unreadable_run/checkpoint\.pt"),
    Case("resume-changing-the-problem", ("deform", "resume={in}/render_run", "target.views=3"), 2, r"resume: target\.views would change the problem"),
    # -- real inputs that must work (items 6 and 7) ------------------------------------------------
    Case("stray-2-vertex-faces", ("render", "mesh={in}/stray_edges.obj", *TINY_RENDER), 0, stray_edges_warned_once, slow=True),
    Case("camera-straight-down", ("render", "mesh={in}/sphere.obj", "camera.elevation=90", *TINY_RENDER, "renderer.image_size=32"), 0, seen_from_above, slow=True),
]
# fmt: on


# ---- running the table -----------------------------------------------------------------------


def _run(case: Case, inputs: Path, cwd: Path) -> Result:
    from softras._native import _cache_root

    env = {**os.environ, "HOME": str(inputs), "OMP_NUM_THREADS": "1", "SOFTRAS_CACHE": str(_cache_root())}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    argv = [a.replace("{in}", str(inputs)) for a in case.argv]
    proc = subprocess.run(
        [sys.executable, "-m", "softras.cli", *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    return Result(proc.returncode, proc.stdout, proc.stderr, cwd, inputs)


@pytest.fixture(scope="module")
def results(request, tmp_path_factory) -> dict[str, Result]:
    """Runs the rows the session selected, ``WORKERS`` processes at a time."""
    module = sys.modules[__name__]
    wanted = {
        item.callspec.params["case"].id
        for item in request.session.items
        if getattr(item, "module", None) is module and hasattr(item, "callspec") and "case" in item.callspec.params
    }
    inputs = tmp_path_factory.mktemp("inputs")
    make_inputs(inputs)
    cases = [c for c in CASES if c.id in wanted]
    dirs = {c.id: tmp_path_factory.mktemp(c.id) for c in cases}
    with ThreadPoolExecutor(WORKERS) as pool:
        done = pool.map(lambda c: _run(c, inputs, dirs[c.id]), cases)
        return {c.id: r for c, r in zip(cases, done)}


def test_the_table_has_distinct_ids():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else []) for c in CASES])
def test_catalogue(case: Case, results):
    r = results[case.id]
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    assert r.code == case.code, (r.code, r.stderr)
    if isinstance(case.expect, str):
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, r.stderr
        sub = case.argv[0]
        prefix = f"softras {sub}: error: "
        assert lines[0].startswith(prefix), lines[0]
        assert re.search(case.expect, lines[0][len(prefix) :]), (case.expect, lines[0])
        assert not (r.cwd / "outputs").exists(), list((r.cwd / "outputs").rglob("*"))
    else:
        case.expect(r)
    for name in case.absent:
        assert not (r.cwd / name).exists(), name
