"""Everything a GPU machine should check, in one call: build, CUDA tests, benchmarks, report.

Run by ``.ci/gpu-check`` (``make gpu-check``) with a Python that has a CUDA build of torch;
it installs nothing. Steps, each under a time limit taken from one overall budget
(``GPU_CHECK_BUDGET_S``, default 540 s):

1. build the CPU and CUDA backends (``python -m softras.build``);
2. the CUDA tests and the native-loading tests (``pytest -m "not slow"`` on the files below),
   with a JUnit report;
3. ``bench.bench`` on the cpu and cuda backends (W1, W2, W3; no reference: too slow).

Writes ``outputs/gpu-check/gpu-check.json`` (machine, steps, test counts and timings, failures,
bench numbers against the targets) and ``outputs/gpu-check/gpu-check.md`` (the same as a table),
and prints the table. Exit status 0 when the build, every test and every bench case passed.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "outputs" / "gpu-check"
TEST_FILES = [
    "tests/test_native_loading.py",
    "tests/test_cuda_matrix.py",
    "tests/test_cuda_modules.py",
    "tests/test_rasterize_cuda.py",
    "tests/test_voxelization.py",
]
CAPS = {"build": 300, "tests": 300, "bench": 240}  # seconds per step, at most
START = time.monotonic()
BUDGET = float(os.environ.get("GPU_CHECK_BUDGET_S", "540"))


def _left(step: str) -> float:
    return max(10.0, min(CAPS[step], BUDGET - (time.monotonic() - START)))


def run_step(name: str, cmd: list[str], env: dict | None = None) -> dict:
    limit = _left(name)
    print(f"[gpu-check] {name}: {' '.join(cmd)} (limit {limit:.0f} s)", flush=True)
    t0 = time.monotonic()
    log = OUT / f"{name}.log"
    with log.open("w") as f:
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, timeout=limit)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    wall = time.monotonic() - t0
    tail = log.read_text(errors="replace").splitlines()[-15:]
    print(f"[gpu-check] {name}: rc={rc} in {wall:.0f} s", flush=True)
    return {"cmd": " ".join(cmd), "rc": rc, "wall_s": round(wall, 1), "log": str(log.relative_to(ROOT)), "tail": tail}


def machine() -> dict:
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cpu_count": os.cpu_count(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    try:
        nvcc = subprocess.run(["nvcc", "--version"], capture_output=True, text=True, timeout=30).stdout
        info["nvcc"] = nvcc.strip().splitlines()[-1] if nvcc else None
    except (OSError, subprocess.TimeoutExpired):
        info["nvcc"] = None
    return info


def junit_summary(path: Path) -> dict:
    if not path.exists():
        return {"error": "no JUnit report"}
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    cases = [c for s in suites for c in s.iter("testcase")]
    rows, failures, skip_reasons = [], [], {}
    for c in cases:
        name = f"{c.get('classname', '')}::{c.get('name')}"
        t = float(c.get("time", 0))
        status = "passed"
        for child in c:
            if child.tag in ("failure", "error"):
                status = child.tag
                failures.append({"test": name, "message": (child.get("message") or "")[:500]})
            elif child.tag == "skipped":
                status = "skipped"
                reason = child.get("message") or ""
                skip_reasons[reason] = skip_reasons.get(reason, 0) + 1
        rows.append((name, status, t))
    count = {s: sum(r[1] == s for r in rows) for s in ("passed", "failure", "error", "skipped")}
    per_file: dict[str, dict] = {}
    for name, status, t in rows:
        f = per_file.setdefault(name.split("::")[0], {"passed": 0, "failed": 0, "skipped": 0, "time_s": 0.0})
        f["passed" if status == "passed" else "skipped" if status == "skipped" else "failed"] += 1
        f["time_s"] = round(f["time_s"] + t, 2)
    return {
        "tests": len(rows),
        "passed": count["passed"],
        "failed": count["failure"] + count["error"],
        "skipped": count["skipped"],
        "time_s": round(sum(r[2] for r in rows), 1),
        "per_file": per_file,
        "slowest": [{"test": n, "time_s": round(t, 2)} for n, _, t in sorted(rows, key=lambda r: -r[2])[:10]],
        "failures": failures[:50],
        "skip_reasons": skip_reasons,
    }


def bench_summary(path: Path) -> dict:
    if not path.exists():
        return {"error": "no bench report"}
    report = json.loads(path.read_text())
    keep = ("workload", "backend", "fwd_s", "fwd_bwd_s", "peak_mb", "error", "targets")
    cases = [{k: c.get(k) for k in keep if k in c} for c in report.get("cases", [])]
    cpu = {c["workload"]: c for c in cases if c["backend"] == "cpu" and not c.get("error")}
    for c in cases:
        base = cpu.get(c["workload"])
        if c["backend"] == "cuda" and base and not c.get("error"):
            c["speedup_vs_cpu_fwd"] = round(base["fwd_s"] / c["fwd_s"], 1)
            c["speedup_vs_cpu_fwd_bwd"] = round(base["fwd_bwd_s"] / c["fwd_bwd_s"], 1)
    return {
        "cases": cases,
        "targets_met": report.get("targets_met"),
        "targets_missed": report.get("targets_missed"),
        "errors": report.get("errors"),
    }


def table(report: dict) -> str:
    m, t, b = report["machine"], report.get("tests", {}), report.get("bench", {})
    lines = [
        "# gpu-check",
        "",
        f"{m.get('gpu', 'no GPU')} (sm {m.get('capability', '-')}), torch {m['torch']} (CUDA {m['torch_cuda']}), "
        f"Python {m['python']}, {m.get('nvcc') or 'no nvcc'}",
        "",
        "| step | rc | wall s |",
        "|---|---|---|",
    ]
    for name, s in report["steps"].items():
        lines.append(f"| {name} | {s['rc']} | {s['wall_s']} |")
    lines += ["", f"Total {report['total_wall_s']} s.", ""]
    if "tests" in t or "per_file" in t:
        lines += [
            f"Tests: {t.get('passed', 0)} passed, {t.get('failed', 0)} failed, {t.get('skipped', 0)} skipped "
            f"({t.get('time_s', 0)} s).",
            "",
            "| file | passed | failed | skipped | s |",
            "|---|---|---|---|---|",
        ]
        for f, r in t.get("per_file", {}).items():
            lines.append(f"| {f} | {r['passed']} | {r['failed']} | {r['skipped']} | {r['time_s']} |")
        for fail in t.get("failures", [])[:20]:
            lines.append(f"- FAILED {fail['test']}: {fail['message'][:200]}")
        for reason, n in t.get("skip_reasons", {}).items():
            lines.append(f"- skipped {n}: {reason[:150]}")
        lines.append("")
    if b.get("cases"):
        lines += [
            "| workload | backend | fwd ms | fwd+bwd ms | peak MiB | x CPU fwd | x CPU fwd+bwd | targets |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in b["cases"]:
            if c.get("error"):
                lines.append(f"| {c['workload']} | {c['backend']} | error: {str(c['error'])[:80]} | | | | | |")
                continue
            targets = "; ".join(
                f"{x.get('target')}: {'met' if x.get('met') else 'MISSED' if x.get('met') is False else '-'}"
                for x in c.get("targets", [])
            )
            lines.append(
                f"| {c['workload']} | {c['backend']} | {1e3 * c['fwd_s']:.2f} | {1e3 * c['fwd_bwd_s']:.2f} | "
                f"{c.get('peak_mb') if c.get('peak_mb') is None else round(c['peak_mb'], 1)} | "
                f"{c.get('speedup_vs_cpu_fwd', '')} | {c.get('speedup_vs_cpu_fwd_bwd', '')} | {targets} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    py = sys.executable
    report: dict = {"machine": machine(), "steps": {}}
    report["steps"]["build"] = run_step("build", [py, "-m", "softras.build"], env)
    junit = OUT / "junit.xml"
    junit.unlink(missing_ok=True)
    pytest_cmd = [py, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-m", "not slow"]
    pytest_cmd += [f"--junitxml={junit}", *TEST_FILES]
    report["steps"]["tests"] = run_step("tests", pytest_cmd, env)
    report["tests"] = junit_summary(junit)
    bench_json = OUT / "bench.json"
    bench_json.unlink(missing_ok=True)
    bench_cmd = [py, "-m", "bench.bench", "--backends", "cpu,cuda", "--repeats", "5", f"--out={bench_json}"]
    report["steps"]["bench"] = run_step("bench", bench_cmd, env)
    report["bench"] = bench_summary(bench_json)
    report["total_wall_s"] = round(time.monotonic() - START, 1)
    ok = (
        report["steps"]["build"]["rc"] == 0
        and report["steps"]["tests"]["rc"] == 0
        and report["tests"].get("failed", 1) == 0
        and report["steps"]["bench"]["rc"] == 0
    )
    report["ok"] = ok
    (OUT / "gpu-check.json").write_text(json.dumps(report, indent=2) + "\n")
    text = table(report)
    (OUT / "gpu-check.md").write_text(text)
    print(text)
    print(f"[gpu-check] wrote {OUT / 'gpu-check.json'} and gpu-check.md: {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
