"""Rigid pose fitting under heavy occlusion with scheduled blur (the paper's cube experiment).

An object (by default a cube with six distinctly coloured faces) is posed by a rotation R and
a translation t (``v' = R v + t``, in world space) and seen by a fixed ``look_at`` camera; a
static occluder (a camera-facing box or plane between the camera and the object) is rendered
with it but never optimized. The pose is fitted to a target RGB image, either rendered from a
ground-truth pose or read from a file (with an optional mask of the object's visible pixels),
by Adam on the RGB mean squared error over the whole image (the occluder is identical in
target and render, so it adds no error of its own), plus a silhouette term when a mask is
available.

Rotation: the 6D representation of Zhou et al., "On the Continuity of Rotation
Representations in Neural Networks" (CVPR 2019): the first two columns of R, made orthonormal
by Gram-Schmidt. Every rotation has a representation and the map is smooth everywhere, so the
optimizer sees no singularities (Euler angles have gimbal lock, axis-angle a singularity at
pi) and no double cover (a quaternion and its negative are the same rotation, so the loss has
two copies of every minimum and a normalization in the way). The two extra dimensions only
scale and shear the columns, which Gram-Schmidt discards.

Scheduled blur: sigma_val and gamma_val go from blurry (sigma 1e-2, gamma 1e-1) to sharp
(sigma 1e-5, gamma 1e-4) over the run (docs, section 6). A blurry rendering spreads every
face's colour over many pixels (sigma) and blends faces of different depths, so hidden faces
show through the occluder (gamma); the loss landscape is smoothed and gradients reach the
occluded geometry. The schedule is ``constant`` (the end values at every step: no blur),
``linear``, ``log-linear`` (geometric) or ``step`` (``levels`` geometric plateaus), between the
fractions ``begin`` and ``end`` of the steps (held before and after).

Three choices decide whether the blur helps; each was measured on the default scene (seeds 0,
1, 2: 3 x 50 trials from up to 90 degrees; success rate with blur / without):

- ``renderer.composite``: the rendered colour is laid over the background by the soft alpha.
  The raw softmax colour gives the background almost no weight at gamma 1e-1 (e^(eps/gamma)
  against e^(zbar/gamma)), so a blurry object's colour reaches out to the culling distance
  3 sqrt(sigma) and the fit is biased (seed 0 without it: 0.34 / 0.34).
- ``renderer.background_color`` grey rather than black: against black the silhouette is the
  strongest signal, the blurry phase settles on poses whose big faces match the colour mass,
  and the blur barely helps (0.84 / 0.81); against grey the colours of the sides dominate the
  error and it does (0.99 / 0.95).
- the optimizer is the one that was best for the baseline (Adam, lr 0.1, constant, of 7
  settings tried); a decaying learning rate (0.05 to 0.005) favoured the blur (seed 0: 0.98 / 0.70).

Trials (``trials=N``): N initial poses from a fixed seed, each a random axis and an angle
uniform in [0, max_init_deg] away from the true rotation and a random direction and a length
uniform in [0, max_init_trans] away from the true translation. All trials are fitted at once
(one renderer call per step for all of them, one more for the no-blur copies; the poses are
independent: the loss is the sum of per-trial losses, so each trial gets its own gradient, and
Adam is elementwise, so they never interact), and by default the same trials are fitted again
without blur for comparison. A trial succeeds when its final rotation error is below 5 degrees
and its translation error below 0.05.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..functional.cameras import face_vertices, get_points_from_angles, look_at, perspective
from ..functional.rasterize import soft_rasterize
from ..functional.rotations import (
    axis_angle_to_matrix,
    euler_to_matrix,
    matrix_to_rotation_6d,
    rotation_6d_to_matrix,
    rotation_error_deg,
)
from ..functional.settings import AGGR_ALPHA, AGGR_RGB, BACKENDS, RasterSettings
from ..images import read_image, read_mask, resize_image
from ..primitives import CUBE_COLORS, cube, occluder_mesh
from ._run import Run, as_float, as_floats, as_int, first_line, image_grid, resolve_device, seed_everything, to_uint8

log = logging.getLogger("softras")
PRIMARY_METRIC = "success_rate"

SCHEDULES = ("constant", "linear", "log-linear", "step")
OCCLUDERS = ("box", "plane", "none")
SUCCESS_ROT_DEG = 5.0
SUCCESS_TRANS = 0.05


# ---- blur schedules -----------------------------------------------------------------------


def schedule_value(kind: str, start: float, end: float, progress: float, levels: int = 4) -> float:
    """The scheduled value at ``progress`` in [0, 1] (clamped) of the annealing, from ``start``
    to ``end``: ``constant`` is ``end`` throughout (no annealing); ``linear`` interpolates;
    ``log-linear`` interpolates the logarithm (a geometric sequence); ``step`` holds ``levels``
    plateaus of equal length, geometric from ``start`` to ``end``."""
    p = min(max(float(progress), 0.0), 1.0)
    if kind == "constant":
        return float(end)
    if kind == "linear":
        return float(start + (end - start) * p)
    if kind == "log-linear":
        return float(math.exp(math.log(start) + (math.log(end) - math.log(start)) * p))
    if kind == "step":
        if levels < 2:
            return float(end)
        k = min(int(p * levels), levels - 1)
        return float(start * (end / start) ** (k / (levels - 1)))
    raise ValueError(f"schedule.kind: expected one of {', '.join(map(repr, SCHEDULES))}, got {kind!r}")


class BlurSchedule:
    """sigma_val and gamma_val at each step of a run of ``steps`` steps: annealed from their
    start to their end values between the fractions ``begin`` and ``end`` of the run."""

    def __init__(self, kind, sigma, gamma, begin=0.0, end=1.0, levels=4):
        if kind not in SCHEDULES:
            raise ValueError(f"schedule.kind: expected one of {', '.join(map(repr, SCHEDULES))}, got {kind!r}")
        self.kind, self.sigma, self.gamma = kind, tuple(sigma), tuple(gamma)
        self.begin, self.end, self.levels = float(begin), float(end), int(levels)

    @classmethod
    def no_blur(cls, other: BlurSchedule) -> BlurSchedule:
        """sigma_val and gamma_val held at ``other``'s final values."""
        return cls("constant", other.sigma, other.gamma)

    def progress(self, step: int, steps: int) -> float:
        frac = step / max(steps - 1, 1)
        if self.end <= self.begin:
            return 1.0 if frac >= self.end else 0.0
        return min(max((frac - self.begin) / (self.end - self.begin), 0.0), 1.0)

    def __call__(self, step: int, steps: int) -> tuple[float, float]:
        p = self.progress(step, steps)
        return (
            schedule_value(self.kind, *self.sigma, p, self.levels),
            schedule_value(self.kind, *self.gamma, p, self.levels),
        )

    @property
    def final(self) -> tuple[float, float]:
        return self.sigma[1], self.gamma[1]


# ---- the scene ------------------------------------------------------------------------------


class Scene:
    """The object, the occluder and the camera: renders a batch of object poses."""

    def __init__(
        self,
        obj_v,
        obj_f,
        obj_tex,
        occ_v,
        occ_f,
        occ_color,
        eye,
        viewing_angle,
        settings,
        backend,
        composite=True,
        layered=False,
    ):
        self.composite, self.layered = bool(composite), bool(layered)
        self._occ_cache: tuple | None = None
        self.obj_v, self.obj_f, self.obj_tex = obj_v, obj_f, obj_tex
        self.occ_v, self.occ_f = occ_v, occ_f
        rr = obj_tex.shape[1]
        occ_tex = torch.as_tensor(occ_color, dtype=obj_tex.dtype, device=obj_tex.device)
        self.occ_tex = occ_tex.reshape(1, 1, 3).expand(occ_f.shape[0], rr, 3)
        self.faces = torch.cat([obj_f, occ_f + obj_v.shape[0]])
        self.textures = torch.cat([obj_tex, self.occ_tex])
        # white object, black occluder: the visible object's mask in the red channel
        self.mask_textures = torch.cat([torch.ones_like(obj_tex), torch.zeros_like(self.occ_tex)])
        self.eye = eye
        self.viewing_angle = viewing_angle
        self.settings = settings
        self.backend = backend

    @property
    def num_object_faces(self) -> int:
        return self.obj_f.shape[0]

    def _face_vertices(self, R: torch.Tensor, t: torch.Tensor, occluder: bool = True) -> torch.Tensor:
        B = R.shape[0]
        v = self.obj_v[None] @ R.transpose(1, 2) + t[:, None, :]  # [B, V, 3]: v' = R v + t
        faces = self.obj_f
        if occluder and self.occ_f.shape[0]:
            v = torch.cat([v, self.occ_v[None].expand(B, -1, -1)], 1)
            faces = self.faces
        v = perspective(look_at(v, self.eye), self.viewing_angle, self.settings.image_size)
        return face_vertices(v, faces[None].expand(B, -1, -1))

    def _raster(self, fv, tex, sigma, gamma, background=None, **kw):
        s = self.settings
        B = fv.shape[0]
        return soft_rasterize(
            fv,
            tex[None].expand(B, *tex.shape),
            image_size=s.image_size,
            background_color=s.background_color if background is None else background,
            near=s.near,
            far=s.far,
            fill_back=s.fill_back,
            eps=s.eps,
            sigma_val=sigma,
            dist_func=s.dist_func,
            dist_eps=s.dist_eps,
            gamma_val=gamma,
            aggr_func_rgb=s.aggr_func_rgb,
            aggr_func_alpha=s.aggr_func_alpha,
            backend=self.backend,
            **kw,
        )

    def _occluder_layer(self, sigma: float, gamma: float) -> torch.Tensor:
        """RGBA [1, 4, H, W] of the occluder alone (it never moves: one render per sigma, gamma)."""
        if self._occ_cache is None or self._occ_cache[0] != (sigma, gamma):
            v = perspective(look_at(self.occ_v[None], self.eye), self.viewing_angle, self.settings.image_size)
            with torch.no_grad():
                rgba = self._raster(face_vertices(v, self.occ_f[None]), self.occ_tex, sigma, gamma)
            self._occ_cache = ((sigma, gamma), rgba)
        return self._occ_cache[1]

    def _over_background(self, rgba: torch.Tensor) -> torch.Tensor:
        if not self.composite:
            return rgba[:, :3]
        bg = torch.as_tensor(self.settings.background_color, dtype=rgba.dtype, device=rgba.device)[None, :, None, None]
        a = rgba[:, 3:]
        return rgba[:, :3] * a + bg * (1 - a)

    def render(self, R, t, sigma: float, gamma: float) -> torch.Tensor:
        """RGB [B, 3, H, W] of the posed objects with the occluder. With ``composite`` the
        colour is laid over the background by alpha (``rgb a + bg (1 - a)``); with ``layered``
        the object is rendered alone and the occluder's own rendering laid over it by the
        occluder's alpha (it is in front by construction), so that blurry settings do not make
        the occluder see-through; otherwise both are one soft rasterization."""
        occ = self.occ_f.shape[0] > 0
        if occ and self.layered:
            obj = self._over_background(
                self._raster(self._face_vertices(R, t, occluder=False), self.obj_tex, sigma, gamma)
            )
            layer = self._occluder_layer(sigma, gamma)
            a = layer[:, 3:]
            return layer[:, :3] * a + obj * (1 - a)
        return self._over_background(
            self._raster(self._face_vertices(R, t), self.textures if occ else self.obj_tex, sigma, gamma)
        )

    def render_mask(self, R, t, sigma: float, gamma: float) -> torch.Tensor:
        """The soft mask [B, H, W] of the object's visible (not occluded) pixels."""
        occ = self.occ_f.shape[0] > 0
        if occ and self.layered:
            alpha = self._raster(self._face_vertices(R, t, occluder=False), self.obj_tex, sigma, gamma)[:, 3]
            return alpha * (1 - self._occluder_layer(sigma, gamma)[:, 3])
        fv = self._face_vertices(R, t)
        tex = self.mask_textures if occ else torch.ones_like(self.obj_tex)
        rgba = self._raster(fv, tex, sigma, gamma, background=(0.0, 0.0, 0.0))
        return rgba[:, 0] * rgba[:, 3] if self.composite else rgba[:, 0]

    @torch.no_grad()
    def occluded_fraction(self, R, t) -> torch.Tensor:
        """[B]: the fraction of the object's silhouette pixels (nearest face an object face,
        without the occluder) that the occluder hides (nearest face an occluder face, with it)."""
        tex = torch.ones_like(self.obj_tex)
        _, frag_obj = self._raster(self._face_vertices(R, t, occluder=False), tex, 1e-5, 1e-4, return_fragments=True)
        silhouette = frag_obj.face_index >= 0
        if not self.occ_f.shape[0]:
            return torch.zeros(R.shape[0], device=R.device)
        _, frag = self._raster(self._face_vertices(R, t), self.textures, 1e-5, 1e-4, return_fragments=True)
        hidden = silhouette & (frag.face_index >= self.num_object_faces)
        return hidden.flatten(1).sum(1).float() / silhouette.flatten(1).sum(1).clamp_min(1).float()


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


# ---- the batched fit ----------------------------------------------------------------------------


class Group:
    """A batch of independent poses fitted with one blur schedule."""

    def __init__(self, name: str, schedule: BlurSchedule, R0, t0, lr_rot, lr_trans, betas, device, dtype, lr_decay=1.0):
        self.name, self.schedule, self.lr_decay = name, schedule, float(lr_decay)
        self.base_lr = (float(lr_rot), float(lr_trans))
        self.d6 = matrix_to_rotation_6d(R0).to(device=device, dtype=dtype).clone().requires_grad_(True)
        self.t = t0.to(device=device, dtype=dtype).clone().requires_grad_(True)
        self.optimizer = torch.optim.Adam(
            [{"params": [self.d6], "lr": lr_rot}, {"params": [self.t], "lr": lr_trans}], betas=betas
        )
        self.losses: dict[str, torch.Tensor] = {}
        self.render: torch.Tensor | None = None
        self.sigma = self.gamma = float("nan")

    @property
    def R(self) -> torch.Tensor:
        return rotation_6d_to_matrix(self.d6)

    def step(self, scene: Scene, target, mask, w_rgb, w_sil, step: int, steps: int) -> None:
        self.sigma, self.gamma = self.schedule(step, steps)
        # learning rates decay geometrically to lr * lr_decay at the last step
        factor = self.lr_decay ** (step / max(steps - 1, 1))
        for group, lr in zip(self.optimizer.param_groups, self.base_lr):
            group["lr"] = lr * factor
        R, t = self.R, self.t
        rgb = scene.render(R, t, self.sigma, self.gamma)
        mpred = scene.render_mask(R, t, self.sigma, self.gamma) if mask is not None and w_sil > 0 else None
        losses = per_trial_losses(rgb, target, mpred, mask, w_rgb, w_sil)
        self.optimizer.zero_grad(set_to_none=True)
        losses["total"].sum().backward()  # independent trials: each gets its own gradient
        self.optimizer.step()
        self.losses = {k: v.detach() for k, v in losses.items()}
        self.render = rgb.detach()

    @torch.no_grad()
    def errors(self, R_gt, t_gt) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotation errors (degrees) and translation errors [B] (float64, CPU)."""
        R = self.R.double().cpu()
        return rotation_error_deg(R, R_gt.double()), (self.t.double().cpu() - t_gt.double()).norm(dim=-1)


# ---- inputs -----------------------------------------------------------------------------------


def load_target_image(path: Path, mask_path: Path | None, size, background) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A user target: RGB [3, H, W] (an alpha channel composites it over ``background``) and
    the optional mask [H, W] of the object's visible pixels (see ``softras.images.read_mask``)."""
    img = read_image(path, "target.image")
    if img.shape[2] == 4:
        a = img[..., 3:]
        img = img[..., :3] * a + torch.as_tensor(background, dtype=torch.float32) * (1 - a)
    if img.shape[2] == 1:
        img = img.expand(-1, -1, 3)
    rgb = resize_image(img.permute(2, 0, 1).contiguous(), size).clamp(0, 1)
    mask = None
    if mask_path is not None:
        mask = resize_image(read_mask(mask_path, "target.mask")[None], size)[0].clamp(0, 1)
    return rgb, mask


def _vec3(key: str, value) -> list[float]:
    out = as_floats(key, value)
    if len(out) != 3:
        raise ValueError(f"{key}: expected 3 numbers, got {len(out)}")
    return out


def _settings(r) -> RasterSettings:
    for key, options in (("aggr_func_rgb", AGGR_RGB), ("aggr_func_alpha", AGGR_ALPHA)):
        if r[key] not in options:
            raise ValueError(f"renderer.{key}: expected one of {', '.join(map(repr, options))}, got {r[key]!r}")
    try:
        return RasterSettings(
            image_size=r.image_size,
            background_color=tuple(r.background_color),
            near=r.near,
            far=r.far,
            fill_back=bool(r.fill_back),
            dist_eps=r.dist_eps,
            aggr_func_rgb=r.aggr_func_rgb,
            aggr_func_alpha=r.aggr_func_alpha,
        )
    except (TypeError, ValueError) as err:
        message = first_line(err)
        raise ValueError(message if message.startswith("renderer.") else f"renderer.{message}") from None


def _schedule(s) -> BlurSchedule:
    sigma = as_floats("schedule.sigma_val", s.sigma_val, positive=True)
    gamma = as_floats("schedule.gamma_val", s.gamma_val, positive=True)
    for key, vals in (("schedule.sigma_val", sigma), ("schedule.gamma_val", gamma)):
        if len(vals) != 2:
            raise ValueError(f"{key}: expected [start, end], got {len(vals)} numbers")
    begin = as_float("schedule.begin", s.begin)
    end = as_float("schedule.end", s.end)
    if not 0 <= begin <= end <= 1:
        raise ValueError(f"schedule.begin, schedule.end: expected 0 <= begin <= end <= 1, got {begin} and {end}")
    levels = as_int("schedule.levels", s.levels, least=1)
    if s.kind not in SCHEDULES:
        raise ValueError(f"schedule.kind: expected one of {', '.join(map(repr, SCHEDULES))}, got {s.kind!r}")
    return BlurSchedule(str(s.kind), sigma, gamma, begin, end, levels)


def build_scene(cfg, device) -> Scene:
    """The object, occluder and camera of the config (all values checked, keys named)."""
    r = cfg.renderer
    settings = _settings(r)
    viewing_angle = as_float("renderer.viewing_angle", r.viewing_angle, positive=True)
    if r.backend not in BACKENDS:
        raise ValueError(f"renderer.backend: expected one of {', '.join(map(repr, BACKENDS))}, got {r.backend!r}")
    o = cfg.object
    scale = as_float("object.scale", o.scale, positive=True)
    texture_res = as_int("object.texture_res", o.texture_res, least=1)
    if o.mesh:
        path = Path(str(o.mesh))
        if not path.is_file():
            raise FileNotFoundError(f"object.mesh: no such file {path}")
        from ..io import load_obj

        try:
            v, f, tex = load_obj(path, normalization=True, load_texture=True, texture_res=texture_res)
        except ValueError as err:
            raise ValueError(f"object.mesh: {first_line(err)}") from None
        if f.shape[0] == 0:
            raise ValueError(f"object.mesh: no faces in {path}")
        v = v * scale
    else:
        colors = [_vec3(f"object.colors[{i}]", c) for i, c in enumerate(o.colors)] if o.colors else CUBE_COLORS
        if len(colors) != 6:
            raise ValueError(f"object.colors: expected 6 colours (+x, -x, +y, -y, +z, -z), got {len(colors)}")
        v, f, tex = cube(scale, texture_res, colors)
    c = cfg.camera
    eye = get_points_from_angles(
        as_float("camera.distance", c.distance, positive=True),
        as_float("camera.elevation", c.elevation),
        as_float("camera.azimuth", c.azimuth),
    )[0]
    occ = cfg.occluder
    if occ.kind not in OCCLUDERS:
        raise ValueError(f"occluder.kind: expected one of {', '.join(map(repr, OCCLUDERS))}, got {occ.kind!r}")
    if occ.kind == "none":
        occ_v, occ_f = torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.long)
    else:
        size = as_floats("occluder.size", occ.size, positive=True)
        if len(size) != 3 and not (occ.kind == "plane" and len(size) == 2):
            expected = "[width, height, depth] (box) or [width, height] (plane)"
            raise ValueError(f"occluder.size: expected {expected}, got {len(size)} numbers")
        size = size[:2] + [0.0] if occ.kind == "plane" else size
        offset = as_floats("occluder.offset", occ.offset)
        if len(offset) != 2:
            raise ValueError(f"occluder.offset: expected [right, up], got {len(offset)} numbers")
        distance = as_float("occluder.distance", occ.distance, positive=True)
        occ_v, occ_f = occluder_mesh(str(occ.kind), distance, offset, size, eye)
    color = _vec3("occluder.color", occ.color)
    dtype = torch.float32
    return Scene(
        v.to(device, dtype),
        f.to(device),
        tex.to(device, dtype),
        occ_v.to(device, dtype),
        occ_f.to(device),
        color,
        eye.to(device, dtype),
        viewing_angle,
        settings,
        str(r.backend),
        bool(r.composite),
        bool(occ.layered),
    )


# ---- the task -----------------------------------------------------------------------------------


def _loss_image(render: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel loss [H, W] for display: the squared error summed over channels, / its max."""
    e = ((render - target) ** 2).sum(0)
    return e / e.max().clamp_min(1e-6)


def _plot(path: Path, init_deg, errs: dict[str, np.ndarray], terrs: dict[str, np.ndarray], max_deg: float) -> None:
    """Final rotation error against the initial angle, with and without the blur schedule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"blur": ("tab:blue", "o", "scheduled blur"), "no_blur": ("tab:red", "x", "no blur (sharp)")}
    for name, err in errs.items():
        color, marker, label = styles[name]
        ok = (err < SUCCESS_ROT_DEG) & (terrs[name] < SUCCESS_TRANS)
        axes[0].scatter(
            init_deg,
            np.maximum(err, 1e-3),
            c=color,
            marker=marker,
            s=22,
            alpha=0.8,
            label=f"{label}: {ok.mean():.0%} succeed",
        )
        axes[1].plot(
            np.sort(err), np.arange(1, len(err) + 1) / len(err), color=color, label=label, drawstyle="steps-post"
        )
    axes[0].axhline(SUCCESS_ROT_DEG, color="grey", ls="--", lw=1)
    axes[0].set_yscale("log")
    axes[0].set_xlim(0, max_deg * 1.02)
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


def _summary(errs, terrs) -> dict[str, Any]:
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


def run(cfg: Any, out_dir: str | Path) -> dict:
    """Fits the pose (one fit, or ``trials`` fits at once); returns the metrics (metrics.json)."""
    # every input is read and checked before the run folder is filled, so that a bad value or
    # a missing file is one error line (naming the key) and leaves no run folder behind
    seed = as_int("seed", cfg.seed)
    seed_everything(seed)
    device = resolve_device(str(cfg.device))
    steps = as_int("steps", cfg.steps, least=1)
    trials = as_int("trials", cfg.trials, least=1)
    max_deg = as_float("max_init_deg", cfg.max_init_deg)
    if not 0 <= max_deg <= 180:
        raise ValueError(f"max_init_deg: expected a number in [0, 180], got {max_deg}")
    max_trans = as_float("max_init_trans", cfg.max_init_trans)
    if max_trans < 0:
        raise ValueError(f"max_init_trans: expected a number >= 0, got {max_trans}")
    schedule = _schedule(cfg.schedule)
    compare = bool(cfg.compare_no_blur)
    lr_rot = as_float("optim.lr", cfg.optim.lr, positive=True)
    lr_trans = as_float("optim.lr_translation", cfg.optim.lr_translation, positive=True)
    lr_decay = as_float("optim.lr_decay", cfg.optim.lr_decay, positive=True)
    betas = as_floats("optim.betas", cfg.optim.betas)
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ValueError(f"optim.betas: expected two numbers in [0, 1), got {list(cfg.optim.betas)!r}")
    w_rgb = as_float("loss.rgb", cfg.loss.rgb)
    w_sil = as_float("loss.silhouette", cfg.loss.silhouette)
    every = {k: as_int(f"logger.{k}", cfg.logger[k], least=1) for k in ("scalars_every", "images_every", "gif_every")}
    R_pose = euler_to_matrix(_vec3("pose.rotation_deg", cfg.pose.rotation_deg))
    t_pose = torch.tensor(_vec3("pose.translation", cfg.pose.translation), dtype=torch.float64)
    init = cfg.init
    init_angle = None if init.angle_deg is None else as_float("init.angle_deg", init.angle_deg)
    init_axis = None if init.axis is None else _vec3("init.axis", init.axis)
    if init_axis is not None and not any(init_axis):
        raise ValueError("init.axis: expected a non-zero vector")
    init_trans = None if init.translation is None else _vec3("init.translation", init.translation)

    scene = build_scene(cfg, device)
    H, W = scene.settings.image_size
    sharp = schedule.final
    t_cfg = cfg.target
    user_image = t_cfg.image is not None
    if user_image:
        if trials > 1:
            raise ValueError("trials: a target.image has no ground-truth pose to measure trials against; use trials=1")
        mask_path = None if t_cfg.mask is None else Path(str(t_cfg.mask))
        target, mask = load_target_image(Path(str(t_cfg.image)), mask_path, (H, W), scene.settings.background_color)
        target, mask = target.to(device), None if mask is None else mask.to(device)
        R_gt = t_gt = None
    else:
        if t_cfg.mask is not None:
            raise ValueError("target.mask: a mask goes with a target.image (a rendered target has its own)")
        R_gt, t_gt = R_pose, t_pose
        with torch.no_grad():
            Rg, tg = R_gt[None].to(device, torch.float32), t_gt[None].to(device, torch.float32)
            target = scene.render(Rg, tg, *sharp)[0]
            mask = scene.render_mask(Rg, tg, *sharp)[0] if bool(t_cfg.use_mask) else None
            occluded = float(scene.occluded_fraction(Rg, tg)[0])

    # initial poses: `trials` of them at random from the seed; a single fit may set its own
    # offset from `pose` (init.*), and a target.image starts at `pose` unless offset
    given = init_angle is not None or init_axis is not None or init_trans is not None
    if given and trials > 1:
        raise ValueError("init: sets the start of a single fit (trials=1); trials draw theirs from the seed")
    R0, t0, angles = random_initial_poses(trials, R_pose, t_pose, max_deg, max_trans, seed)
    if user_image:
        R0, t0 = R_pose[None].clone(), t_pose[None].clone()
    if given:
        gen = torch.Generator().manual_seed(seed)  # the same axis as trial 0 when none is given
        axis = torch.tensor(init_axis) if init_axis else torch.randn(1, 3, generator=gen, dtype=torch.float64)[0]
        angle = init_angle if init_angle is not None else 0.0 if user_image else float(angles[0])
        R0 = axis_angle_to_matrix(axis.double(), torch.tensor(math.radians(angle), dtype=torch.float64))[None] @ R_pose
        if init_trans is not None:
            t0 = (t_pose + torch.tensor(init_trans, dtype=torch.float64))[None]
    init_deg = rotation_error_deg(R0, R_pose.expand_as(R0))
    single = trials == 1

    # the same initial poses and optimizer settings for both; only sigma_val and gamma_val differ
    opt = (lr_rot, lr_trans, tuple(betas), device, torch.float32, lr_decay)
    groups = [Group("blur", schedule, R0, t0, *opt)]
    if compare:
        groups.append(Group("no_blur", BlurSchedule.no_blur(schedule), R0, t0, *opt))

    start = time.time()
    with Run(cfg, out_dir, "fit-pose") as run_:
        metrics = run_.metrics
        metrics.update(trials=trials, steps=steps, device=str(device), image_size=[H, W])
        if not user_image:
            metrics["occluded_fraction"] = occluded
            log.info("fit-pose: the occluder hides %.1f%% of the object in the target view", 100 * occluded)
        run_.save_png("target.png", target)
        frames: list[np.ndarray] = []
        step = 0

        def grid(g: Group) -> torch.Tensor:
            """target | sharp render | blurry render (this step's sigma, gamma) | per-pixel loss."""
            blur = g.schedule(0, steps) if math.isnan(g.sigma) else (g.sigma, g.gamma)
            with torch.no_grad():
                sharp_img = scene.render(g.R[:1], g.t[:1], *sharp)[0]
                blurry = scene.render(g.R[:1], g.t[:1], *blur)[0]
            return image_grid([[target, sharp_img, blurry, _loss_image(blurry, target)]])

        def errors() -> tuple[dict, dict]:
            errs, terrs = {}, {}
            for g in groups:
                e, te = g.errors(R_gt, t_gt)
                errs[g.name], terrs[g.name] = e.numpy(), te.numpy()
            return errs, terrs

        try:
            bar = tqdm(range(steps), desc="fit-pose", dynamic_ncols=True)
            for step in bar:
                for g in groups:
                    g.step(scene, target, mask, w_rgb, w_sil, step, steps)
                last = step == steps - 1
                if step % every["scalars_every"] == 0 or last:
                    b = groups[0]
                    vals = {"schedule/sigma_val": b.sigma, "schedule/gamma_val": b.gamma}
                    for g in groups:
                        sfx = "" if g.name == "blur" else "_no_blur"
                        for k, v in g.losses.items():
                            vals[f"loss/{k}{sfx}"] = float(v.mean())
                    post = {"loss": f"{vals['loss/total']:.4f}", "sigma": f"{b.sigma:.1e}"}
                    if R_gt is not None:
                        errs, terrs = errors()
                        for name, sfx in (("blur", ""), ("no_blur", "_no_blur")):
                            if name not in errs:
                                continue
                            e, te = errs[name], terrs[name]
                            if single:
                                vals[f"error/rotation_deg{sfx}"] = float(e[0])
                                vals[f"error/translation{sfx}"] = float(te[0])
                            else:
                                vals[f"error/median_rotation_deg{sfx}"] = float(np.median(e))
                                vals[f"error/median_translation{sfx}"] = float(np.median(te))
                                ok = (e < SUCCESS_ROT_DEG) & (te < SUCCESS_TRANS)
                                vals[f"trials/success_rate{sfx}"] = float(ok.mean())
                        post["rot"] = f"{np.median(errs['blur']):.1f}deg"
                    run_.scalars(step, vals)
                    bar.set_postfix(post)
                if single:
                    if step % every["gif_every"] == 0:
                        frames.append(to_uint8(grid(groups[0])))
                    if step % every["images_every"] == 0 or last:
                        run_.image("target_sharp_blurry_loss", grid(groups[0]), step)
            step = steps
        finally:
            # whatever happened, keep the poses and the errors reached so far
            final = {}
            for g in groups:
                final[g.name] = {"R": g.R.detach().double().cpu(), "t": g.t.detach().double().cpu()}
            metrics.update(steps_done=step, seconds=time.time() - start)
            for g in groups:
                sfx = "" if g.name == "blur" else "_no_blur"
                metrics[f"final_loss{sfx}"] = float(g.losses["total"].mean()) if g.losses else None
            if single:
                frames.append(to_uint8(grid(groups[0])))
                run_.save_gif("progress.gif", frames, fps=10)
                run_.save_png("final.png", grid(groups[0]))
                for name, f in final.items():
                    sfx = "" if name == "blur" else "_no_blur"
                    metrics[f"rotation{sfx}"] = f["R"][0].tolist()
                    metrics[f"translation{sfx}"] = f["t"][0].tolist()
            if R_gt is not None:
                errs, terrs = errors()
                metrics.update(_summary(errs, terrs))
                metrics["init_rot_deg"] = init_deg.tolist()
                metrics["init_trans_err"] = (t0 - t_gt).norm(dim=-1).tolist()
                for name, sfx in (("blur", ""), ("no_blur", "_no_blur")):
                    if name in errs:
                        metrics[f"rot_err_deg{sfx}"] = errs[name].tolist()
                        metrics[f"trans_err{sfx}"] = terrs[name].tolist()
                if not single and step > 0:
                    _plot(run_.dir / "errors.png", init_deg.numpy(), errs, terrs, max_deg)
                    import imageio.v2 as imageio

                    plot = torch.from_numpy(np.asarray(imageio.imread(run_.dir / "errors.png"))[..., :3].copy())
                    run_.image("final_errors", plot.permute(2, 0, 1).float() / 255, step)
                    # the first trials' final renders (sharp), with and without blur, over the target
                    k = min(trials, 8)
                    with torch.no_grad():
                        rows = [[target] * k]
                        for g in groups:
                            rows.append(list(scene.render(g.R[:k].detach(), g.t[:k].detach(), *sharp)))
                    run_.image("final_renders", image_grid(rows), step, save=True)
        if R_gt is not None:
            msg = f"fit-pose: success rate {metrics['success_rate']:.2f}"
            msg += f" (median rotation error {metrics['median_rot_err_deg']:.2f} deg)"
            if compare:
                msg += f"; without blur {metrics['success_rate_no_blur']:.2f}"
                msg += f" ({metrics['median_rot_err_deg_no_blur']:.2f} deg)"
            log.info("%s over %d trials in %.1f s", msg, trials, time.time() - start)
        else:
            log.info("fit-pose: final loss %.5f in %.1f s", metrics["final_loss"] or float("nan"), time.time() - start)
    return run_.metrics
