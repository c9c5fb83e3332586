"""Several processes: `torchrun --standalone --nproc_per_node=2` runs of deform on CPU (gloo).

The views are split across the ranks and the gradients summed, so a two-process run takes
the single-process steps: one run folder, one set of TensorBoard events, one metrics.json,
the same mesh on both ranks, and that mesh equal to a one-process run's within float
tolerance (the sums over views are added in another order).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from softras import cli
from softras.io import load_obj_geometry

ARGS = ["steps=20", "device=cpu", "target.views=8", "renderer.image_size=32", "logger.scalars_every=1"]
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed")
def test_two_process_deform_equals_one_process(tmp_path, monkeypatch):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "softras.cli", "deform", *ARGS]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = list((tmp_path / "outputs" / "deform").iterdir())
    assert len(runs) == 1, runs  # rank 0 made the folder; rank 1 used it
    run = runs[0]
    assert len(list((run / "tb").glob("events.out.tfevents.*"))) == 1
    assert not list(run.rglob("*.tmp"))
    m = json.loads((run / "metrics.json").read_text())
    assert m["status"] == "completed" and m["world_size"] == 2 and m["views"] == 8
    assert m["max_vertex_difference_between_ranks"] == 0.0

    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(1)
    single = tmp_path / "single"
    assert cli.main(["deform", *ARGS, f"hydra.run.dir={single}"]) == 0
    v2, f2 = load_obj_geometry(run / "mesh.obj")
    v1, f1 = load_obj_geometry(single / "mesh.obj")
    assert torch.equal(f1, f2)
    assert (v1 - v2).abs().max() < 1e-4
    assert json.loads((single / "metrics.json").read_text())["mean_hard_iou"] == pytest.approx(
        m["mean_hard_iou"], abs=1e-3
    )
