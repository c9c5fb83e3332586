"""Rigid pose fitting helpers: random initial poses, per-trial losses, success statistics and
the plot of final against initial errors (used by ``softras fit-pose``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .functional.rotations import axis_angle_to_matrix

SUCCESS_ROT_DEG = 5.0  # a trial succeeds below this final rotation error (degrees) ...
SUCCESS_TRANS = 0.05  # ... and below this translation error (world units)


def per_trial_losses(rgb, target, mask_pred, mask_target, w_rgb: float, w_sil: float) -> dict[str, torch.Tensor]:
    """Per-trial losses [B]: ``rgb`` (mean squared error over pixels and channels),
    ``silhouette`` (1 - soft IoU of the visible object masks; 0 without a mask) and ``total``."""
    l_rgb = ((rgb - target) ** 2).flatten(1).mean(1)
    if mask_pred is not None and mask_target is not None:
        inter = (mask_pred * mask_target).flatten(1).sum(1)
        union = (mask_pred + mask_target - mask_pred * mask_target).flatten(1).sum(1)
        l_sil = 1 - inter / (union + 1e-6)
    else:
        l_sil = torch.zeros_like(l_rgb)
    return {"total": w_rgb * l_rgb + w_sil * l_sil, "rgb": l_rgb, "silhouette": l_sil}


def random_initial_poses(n: int, R_gt, t_gt, max_deg: float, max_trans: float, seed: int):
    """n initial poses from ``seed``: R0 = rot(axis, angle) R_gt with a uniformly random axis
    and angle ~ U(0, max_deg); t0 = t_gt + u d with a uniform direction d and u ~ U(0, max_trans).
    Returns R0 [n, 3, 3], t0 [n, 3] (float64) and the angles [n] (degrees)."""
    gen = torch.Generator().manual_seed(int(seed))
    axis = F.normalize(torch.randn(n, 3, generator=gen, dtype=torch.float64), dim=-1)
    angle = torch.rand(n, generator=gen, dtype=torch.float64) * max_deg
    direction = F.normalize(torch.randn(n, 3, generator=gen, dtype=torch.float64), dim=-1)
    length = torch.rand(n, generator=gen, dtype=torch.float64) * max_trans
    R0 = axis_angle_to_matrix(axis, torch.deg2rad(angle)) @ R_gt.double()
    return R0, t_gt.double() + direction * length[:, None], angle


def success_summary(errs: dict[str, np.ndarray], terrs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Success rate (rotation < 5 deg and translation < 0.05) and error statistics per group."""
    out: dict[str, Any] = {}
    for name, suffix in (("blur", ""), ("no_blur", "_no_blur")):
        if name not in errs:
            continue
        e, te = errs[name], terrs[name]
        ok = (e < SUCCESS_ROT_DEG) & (te < SUCCESS_TRANS)
        out[f"success_rate{suffix}"] = float(ok.mean())
        out[f"median_rot_err_deg{suffix}"] = float(np.median(e))
        out[f"median_trans_err{suffix}"] = float(np.median(te))
        out[f"mean_rot_err_deg{suffix}"] = float(np.mean(e))
    return out


def plot_errors(
    path: Path, init_deg, errs: dict[str, np.ndarray], terrs: dict[str, np.ndarray], max_deg: float
) -> None:
    """Final rotation error against the initial angle, with and without the blur schedule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"blur": ("tab:blue", "o", "scheduled blur"), "no_blur": ("tab:red", "x", "no blur (sharp)")}
    for name, err in errs.items():
        color, marker, label = styles[name]
        ok = (err < SUCCESS_ROT_DEG) & (terrs[name] < SUCCESS_TRANS)
        axes[0].scatter(init_deg, np.maximum(err, 1e-3), c=color, marker=marker, s=22, alpha=0.8,
                        label=f"{label}: {ok.mean():.0%} succeed")  # fmt: skip
        axes[1].plot(np.sort(err), np.arange(1, len(err) + 1) / len(err), color=color, label=label,
                     drawstyle="steps-post")  # fmt: skip
    axes[0].axhline(SUCCESS_ROT_DEG, color="grey", ls="--", lw=1)
    axes[0].set_yscale("log")
    axes[0].set_xlim(0, max(max_deg, 1.0) * 1.02)
    axes[0].set_xlabel("initial rotation error (deg)")
    axes[0].set_ylabel("final rotation error (deg)")
    axes[0].legend(fontsize=8)
    axes[1].axvline(SUCCESS_ROT_DEG, color="grey", ls="--", lw=1)
    axes[1].set_xscale("log")
    axes[1].set_xlabel("final rotation error (deg)")
    axes[1].set_ylabel("fraction of trials")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"fit-pose: {len(init_deg)} trials")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
