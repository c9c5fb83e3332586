"""Body fitting: a body model (SMPL, SMPL+H, SMPL-X) fitted to one image in which the right hand
is entirely hidden behind the torso (the paper's non-rigid demo; docs section 6).

The target is the body in a ground-truth pose and shape (``target.pose``, plus per-seed random
offsets), coloured per part and rendered hard; or a user's image, mask and camera. From the
rest pose, global orientation, translation, body pose and betas are fitted with
1 - soft IoU of the silhouette + the mean absolute RGB error (averaged per body part, so that a
hand counts as much as the torso) + L2 priors on pose (stronger on the wrists and hands) and
betas + the error of the standing height where it is known (one view cannot tell a smaller body
from a farther one), while sigma and gamma go from blurry to sharp. The same losses and schedule
with the hard rasterizer, whose gradients stop at the visible surface, run beside it as the
baseline (``compare_hard``).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..body import (
    NUM_JOINTS,
    SMPL_JOINT_NAMES,
    body_height,
    face_part_colors,
    face_parts,
    load_body_model,
    part_of_vertices,
)
from ..body.fitting import (
    BodyCamera,
    body_pose_from_euler,
    hidden_fraction,
    render_body,
    right_hand_joints,
    standing_height,
)
from ..engine import (
    BaseConfig,
    CameraConfig,
    Experiment,
    LoggerConfig,
    OptimConfig,
    RendererConfig,
    RunContext,
    SchedulerConfig,
    TaskSpec,
    build_optimizer,
    build_schedule,
    first_line,
    raster_settings,
)
from ..functional.losses import iou_loss
from ..functional.rotations import euler_to_matrix, matrix_to_rotvec, rotvec_to_matrix
from ..images import read_image, read_mask, resize_image
from ..io import save_obj
from ..schedules import BlurSchedule
from ..vis import image_grid, labelled, to_uint8

log = logging.getLogger("softras")

PARAMS = ("global_orient", "transl", "body_pose", "betas")


# ---- config -------------------------------------------------------------------------------------


@dataclass
class BodyConfig:
    type: str = "smpl"
    gender: str = "neutral"
    model_path: Any = None
    num_betas: int = 10


@dataclass
class TargetConfig:
    image: Any = None
    mask: Any = None
    camera: Any = None
    pose: dict[str, Any] = field(default_factory=dict)
    jitter_deg: float = 3.0
    betas_std: float = 0.3
    height: Any = "truth"  # the subject's standing height if known: a number, "truth" (the synthetic target's), null


@dataclass
class LossConfig:
    silhouette: float = 1.0
    rgb: float = 1.0
    rgb_error: str = "l1"  # l1: mean absolute RGB difference; l2: mean squared
    rgb_average: str = "parts"  # parts: over the body parts, each part's own mean; pixels: over the image
    pose_prior: float = 1e-2
    pose_prior_joints: dict[str, float] = field(  # joint name -> multiplier of pose_prior (others 1)
        default_factory=lambda: {"l_wrist": 100.0, "r_wrist": 100.0, "l_hand": 100.0, "r_hand": 100.0}
    )
    betas_prior: float = 1e-3
    height: float = 1.0  # squared relative error of the standing height, with a known target.height


@dataclass
class BlurConfig:
    kind: str = "log-linear"
    sigma_val: list[float] = field(default_factory=lambda: [1e-3, 1e-6])
    gamma_val: list[float] = field(default_factory=lambda: [1e-1, 1e-4])
    begin: float = 0.0
    until: float = 0.7
    levels: int = 4


@dataclass
class LightConfig:
    ambient: float = 0.6
    directional: float = 0.4
    direction: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0])


@dataclass
class FitSmplConfig(BaseConfig):
    steps: int = 300
    checkpoint_every: int = 0
    compare_hard: bool = True
    pose_after: float = 0.0  # fraction of the steps in which only global_orient and transl move
    restarts: int = 6  # hypotheses fitted side by side; the one with the lowest final loss is the result
    restart_std_deg: float = 20.0  # std of the random joint rotations the hypotheses after the first start from
    views: list[float] = field(default_factory=list)
    show_azimuths: list[float] = field(default_factory=lambda: [90.0, 270.0])
    sensitivity_deg: float = 10.0  # the true pose's joints below turned by +-this much about each axis (0: off)
    sensitivity_joints: list[str] = field(default_factory=lambda: ["r_shoulder", "r_elbow"])
    body: BodyConfig = field(default_factory=BodyConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    renderer: RendererConfig = field(default_factory=RendererConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    blur: BlurConfig = field(default_factory=BlurConfig)
    light: LightConfig = field(default_factory=LightConfig)


# ---- inputs -------------------------------------------------------------------------------------


def _file(key: str, value: Any) -> Path:
    path = Path(str(value)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{key}: no such file {path}")
    return path


def read_camera(path: Path) -> np.ndarray:
    """3 numbers (distance, elevation, azimuth) or a 3x4 pinhole matrix from a .npy or text file."""
    try:
        cam = (
            np.load(path)
            if path.suffix == ".npy"
            else np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None)
        )
    except Exception as err:  # noqa: BLE001 - numpy's many ways to fail on a bad file
        raise ValueError(f"target.camera: cannot read {path} ({first_line(err)})") from None
    cam = np.asarray(cam, dtype=np.float64)
    if cam.size not in (3, 12) or (cam.size == 12 and cam.ndim == 2 and cam.shape != (3, 4)):
        raise ValueError(
            f"target.camera: expected 3 numbers (distance, elevation, azimuth) or a 3x4 matrix K [R | t] "
            f"in {path}, got shape {list(cam.shape)}"
        )
    return cam.reshape(3) if cam.size == 3 else cam.reshape(3, 4)


def load_user_target(t: Any, size: tuple[int, int]) -> tuple[torch.Tensor, np.ndarray, tuple[int, int]]:
    """RGBA target [1, 4, H, W], the camera file's contents and the image's original size."""
    img = read_image(_file("target.image", t.image), "target.image")  # [h, w, C]
    h, w = img.shape[:2]
    if t.mask is not None:
        mask = read_mask(_file("target.mask", t.mask), "target.mask")
        if tuple(mask.shape) != (h, w):
            raise ValueError(
                f"target.mask: expected the size of target.image ({h}x{w}), got {mask.shape[0]}x{mask.shape[1]}"
            )
    elif img.shape[2] == 4:
        mask = img[..., 3]
    else:
        raise ValueError("target.mask: a target.image without alpha needs a mask of the body")
    rgb = img[..., :3] if img.shape[2] >= 3 else img[..., :1].expand(-1, -1, 3)
    rgba = torch.cat([rgb.permute(2, 0, 1) * mask[None], mask[None]])
    camera = read_camera(_file("target.camera", t.camera))
    return resize_image(rgba.contiguous(), size).clamp(0, 1)[None], camera, (h, w)


# ---- one fit ------------------------------------------------------------------------------------


class BodyFit(torch.nn.Module):
    """The fitted parameters of one body, as ``K`` hypotheses fitted side by side (row 0 from the
    rest pose, the others from the rest pose plus random joint rotations), and their optimizer.
    ``best`` is the hypothesis with the lowest loss; at the end, that of its final parameters (no
    ground truth involved)."""

    def __init__(
        self, body: torch.nn.Module, num_pose: int, num_betas: int, cfg: Any, device: torch.device, generator=None
    ):
        super().__init__()
        self.body = [body]  # shared, not a submodule (not in the state dict)
        K = int(cfg.restarts)
        sizes = {"global_orient": 3, "transl": 3, "body_pose": num_pose, "betas": num_betas}
        init = {k: torch.zeros(K, sizes[k]) for k in PARAMS}
        if K > 1:
            noise = torch.randn(K - 1, num_pose, generator=generator) * np.radians(float(cfg.restart_std_deg))
            init["body_pose"][1:] = noise
        self.params = torch.nn.ParameterDict({k: torch.nn.Parameter(v.to(device)) for k, v in init.items()})
        self.optimizer = build_optimizer(cfg.optim, self.params.values())
        self.register_buffer("last_loss", torch.full((K,), float("inf")))

    @property
    def num_hypotheses(self) -> int:
        return int(self.params["body_pose"].shape[0])

    @property
    def best(self) -> int:
        return int(torch.argmin(self.last_loss))

    def forward(self, k: int | None = None) -> Any:
        """The body of hypothesis ``k`` (default the best one), batch 1."""
        k = self.best if k is None else k
        return self.body[0](**{name: p[k : k + 1] for name, p in self.params.items()}, return_verts=True)


def _errors(out: Any, truth: Any, hand_v: torch.Tensor, joints: int, hand_j: list[int], height: float) -> dict:
    """Mean distances to the truth over the body's and the hand's vertices and joints, as they
    are and pelvis-aligned (``_aligned``: both bodies moved so that their pelvis joints meet, the
    root-aligned error of body-fitting benchmarks); each also as a fraction of ``height``."""
    dv = (out.vertices[0] - truth.vertices[0]).detach()
    dj = (out.joints[0, :joints] - truth.joints[0, :joints]).detach()
    root = dj[0]
    err = {}
    for suffix, shift in (("", 0.0), ("_aligned", root)):
        v, j = (dv - shift).norm(dim=-1), (dj - shift).norm(dim=-1)
        err |= {
            f"vertex_err{suffix}": v.mean(),
            f"hand_vertex_err{suffix}": v[hand_v].mean(),
            f"joint_err{suffix}": j.mean(),
            f"hand_joint_err{suffix}": j[hand_j].mean(),
        }
    return {k: float(v) for k, v in err.items()} | {f"{k}_frac": float(v) / height for k, v in err.items()}


# ---- the experiment -----------------------------------------------------------------------------


class FitSmpl(Experiment):
    def __init__(self, cfg: Any, ctx: RunContext):
        self.steps, self.checkpoint_every = int(cfg.steps), int(cfg.checkpoint_every)
        self.scalars_every, self.every = int(cfg.logger.scalars_every), dict(cfg.logger)
        self.device, self.backend = ctx.device, str(cfg.renderer.backend)
        self.settings = raster_settings(cfg.renderer)
        self.viewing_angle = float(cfg.renderer.viewing_angle)
        self.blur = BlurSchedule.create(
            cfg.blur.kind, cfg.blur.sigma_val, cfg.blur.gamma_val, cfg.blur.begin, cfg.blur.until, cfg.blur.levels
        )
        self.lr_schedule = build_schedule(cfg.scheduler)
        self.pose_after = float(cfg.pose_after)
        if not 0 <= self.pose_after < 1:
            raise ValueError(f"pose_after: expected a fraction of the steps in [0, 1), got {cfg.pose_after}")
        if isinstance(cfg.restarts, bool) or not isinstance(cfg.restarts, int) or cfg.restarts < 1:
            raise ValueError(f"restarts: expected an integer >= 1, got {cfg.restarts!r}")
        if not float(cfg.restart_std_deg) >= 0:
            raise ValueError(f"restart_std_deg: expected a number >= 0, got {cfg.restart_std_deg}")
        settings = ("rgb_error", "rgb_average", "pose_prior_joints")  # the rest of loss.* are weights
        self.w = {k: float(v) for k, v in cfg.loss.items() if k not in settings}
        self.rgb_error = str(cfg.loss.rgb_error)
        if self.rgb_error not in ("l1", "l2"):
            raise ValueError(f"loss.rgb_error: expected l1 or l2, got {cfg.loss.rgb_error!r}")
        self.rgb_average = str(cfg.loss.rgb_average)
        if self.rgb_average not in ("pixels", "parts"):
            raise ValueError(f"loss.rgb_average: expected pixels or parts, got {cfg.loss.rgb_average!r}")
        self.light = (float(cfg.light.ambient), float(cfg.light.directional), list(cfg.light.direction))

        b = cfg.body
        try:
            body = load_body_model(b.model_path, b.type, b.gender, int(b.num_betas), use_pca=False)
        except (ValueError, FileNotFoundError) as err:
            raise type(err)(f"body.{first_line(err)}") from None
        self.body = body.to(self.device)
        self.body_type = str(b.type)
        self.faces = self.body.faces_tensor.long()
        W = self.body.lbs_weights
        self.colors = face_part_colors(W, self.faces)
        self.face_part, self.num_parts = face_parts(W, self.faces), int(W.shape[1])
        self.target_part = None  # [N, H, W]: the part seen at each pixel of the target (-1: none)
        hand = right_hand_joints(self.body_type)
        self.hand_vertices = part_of_vertices(W, hand)
        self.hand_faces = self.hand_vertices[self.faces].any(dim=1)
        self.hand_joints, self.num_joints = list(hand), NUM_JOINTS[self.body_type]
        num_pose = self.body.body_pose.shape[1]
        self.sensitivity_deg = float(cfg.sensitivity_deg)
        self.sensitivity_joints = [str(j) for j in cfg.sensitivity_joints]
        if not 0 <= self.sensitivity_deg <= 180:
            raise ValueError(f"sensitivity_deg: expected degrees in [0, 180], got {cfg.sensitivity_deg}")
        body_joints = SMPL_JOINT_NAMES[1 : num_pose // 3 + 1]
        self.pose_weights = torch.ones(num_pose // 3, 1, device=self.device)  # pose_prior's per joint
        for joint, scale in cfg.loss.pose_prior_joints.items():
            if joint not in SMPL_JOINT_NAMES[1:]:
                raise ValueError(
                    f"loss.pose_prior_joints: expected names of body joints ({', '.join(SMPL_JOINT_NAMES[1:])}), "
                    f"got {joint!r}"
                )
            if not float(scale) >= 0:
                raise ValueError(f"loss.pose_prior_joints.{joint}: expected a multiplier >= 0, got {scale}")
            if joint in body_joints:  # SMPL+H and SMPL-X have l_hand and r_hand in their hand poses instead
                self.pose_weights[body_joints.index(joint)] = float(scale)
        for joint in self.sensitivity_joints:
            if joint not in body_joints:
                raise ValueError(
                    f"sensitivity_joints: expected names of body joints ({', '.join(body_joints)}), got {joint!r}"
                )

        known = cfg.target.height
        measured = known is not None and known != "truth"
        if measured and (isinstance(known, (bool, str)) or not 0 < float(known) < float("inf")):
            raise ValueError(f"target.height: expected a height > 0 in the model's units, truth or null, got {known!r}")
        H, W_ = self.settings.image_size
        c = cfg.camera
        azimuths = [float(c.azimuth), *[float(a) for a in cfg.views]]
        self.truth = None
        if cfg.target.image is not None:
            target, cam, orig = load_user_target(cfg.target, (H, W_))
            if cam.shape == (3, 4):
                if cfg.views:
                    raise ValueError("views: extra views need a look_at camera, not a 3x4 target.camera")
                P = torch.from_numpy(cam).float()[None].to(self.device)
                self.camera = BodyCamera(P=P, orig_size=orig)
            else:
                self.camera = BodyCamera.from_angles(cam[0], cam[1], [cam[2]], c.at, c.up)
            self.target = target.to(self.device)
            if self.rgb_average == "parts":
                log.warning("fit-smpl: a user's image has no part labels: the RGB error is averaged over the pixels")
                self.rgb_average = "pixels"
            if known == "truth":
                log.warning("fit-smpl: a user's image has no true height: unknown (give it as target.height=<height>)")
                known = None
        else:
            if cfg.target.mask is not None or cfg.target.camera is not None:
                raise ValueError("target.mask, target.camera: they go with a target.image")
            self.camera = BodyCamera.from_angles(c.distance, c.elevation, azimuths, c.at, c.up)
            self.truth_params = self._ground_truth(cfg.target, num_pose, int(b.num_betas), int(cfg.seed))
            with torch.no_grad():
                self.truth = self.body(**self.truth_params)
                hard = self._hard_settings(*self.blur.final)
                self.target, frags = self.render(self.truth.vertices[0], hard, return_fragments=True)
            self.hidden = hidden_fraction(frags.face_index[:1], self.hand_faces)
            self.target_part = self._pixel_parts(frags.face_index)
            self.height = float(body_height(self.truth.vertices[0]))
            if known == "truth":
                known = float(standing_height(self.body, self.truth_params["betas"][0]))
            log.info("fit-smpl: %.1f%% of the right hand's faces are hidden in the input view", 100 * self.hidden)
            if self.hidden < 1:
                log.warning("fit-smpl: the right hand is not entirely hidden in the input view")
        # One view cannot tell a smaller body from a farther one (the image is unchanged when the
        # scene is scaled about the camera): a known height fixes the scale, else the betas prior does.
        self.known_height = None if known is None else float(known)
        if self.known_height is None:
            log.info("fit-smpl: the standing height is unknown: the betas prior sets the body's scale and depth")
        else:
            log.info("fit-smpl: the standing height is known: %.4f", self.known_height)
        self.show_camera = BodyCamera.from_angles(
            c.distance, c.elevation, [float(c.azimuth), *[float(a) for a in cfg.show_azimuths]], c.at, c.up
        )
        # the soft fit and the hard baseline start from the same hypotheses
        starts = lambda: torch.Generator().manual_seed(int(cfg.seed) + 7919)  # noqa: E731
        self.fits = {"soft": BodyFit(self.body, num_pose, int(b.num_betas), cfg, self.device, starts())}
        if cfg.compare_hard:
            self.fits["hard"] = BodyFit(self.body, num_pose, int(b.num_betas), cfg, self.device, starts())
        self.base_lr = [g["lr"] for g in self.fits["soft"].optimizer.param_groups]
        self.frames: list[np.ndarray] = []

    def _ground_truth(self, t: Any, num_pose: int, num_betas: int, seed: int) -> dict[str, torch.Tensor]:
        """The preset pose (``target.pose``) with per-seed offsets: normal, ``jitter_deg`` on the
        root and every joint but the right arm's, ``betas_std`` on the betas."""
        if t.jitter_deg < 0 or t.betas_std < 0:
            raise ValueError("target.jitter_deg, target.betas_std: expected numbers >= 0")
        try:
            pose = body_pose_from_euler(dict(t.pose), self.body_type)
        except ValueError as err:
            raise ValueError(f"target.pose: {first_line(err)}") from None
        gen = torch.Generator().manual_seed(seed)
        jitter = torch.randn(num_pose // 3 + 1, 3, generator=gen) * np.radians(float(t.jitter_deg))
        jitter[[17, 19, 21]] = 0  # the right shoulder, elbow and wrist keep the preset's angles
        if self.body_type == "smpl":
            jitter[23] = 0
        betas = torch.randn(1, num_betas, generator=gen) * float(t.betas_std)
        p = {
            "global_orient": jitter[:1].reshape(1, 3),
            "transl": torch.zeros(1, 3),
            "body_pose": pose[None] + jitter[1:].reshape(1, -1),
            "betas": betas,
        }
        return {k: v.to(self.device) for k, v in p.items()}

    def _hard_settings(self, sigma: float, gamma: float):
        return dataclasses.replace(
            self.settings,
            sigma_val=sigma,
            gamma_val=gamma,
            dist_func="hard",
            aggr_func_rgb="hard",
            aggr_func_alpha="hard",
        )

    def render(self, vertices: torch.Tensor, settings, camera: BodyCamera | None = None, return_fragments=False):
        camera = self.camera if camera is None else camera
        return render_body(
            vertices, self.faces, self.colors, camera, settings, self.viewing_angle, self.light, self.backend,
            return_fragments,
        )  # fmt: skip

    def _pixel_parts(self, face_index: torch.Tensor) -> torch.Tensor:
        """The part of the nearest face at each pixel, -1 where there is none."""
        return torch.where(face_index >= 0, self.face_part[face_index.clamp(min=0)], -1)

    def _image_terms(self, vertices: torch.Tensor, settings) -> dict[str, torch.Tensor]:
        """The loss terms that compare a rendering with the target (unweighted)."""
        rgba, frags = self.render(vertices, settings, return_fragments=True)
        diff = rgba[:, :3] - self.target[:, :3]
        error = diff.abs() if self.rgb_error == "l1" else diff**2
        if self.rgb_average == "pixels":
            rgb = error.mean()
        else:  # each part's mean error over the pixels where it is seen in the target or in the fit
            parts = torch.stack([self.target_part, self._pixel_parts(frags.face_index)]) + 1  # 0: none
            where = torch.nn.functional.one_hot(parts, self.num_parts + 1)[..., 1:].amax(dim=0)  # [N, H, W, P]
            area = where.sum(dim=(0, 1, 2))
            total = torch.einsum("nhwp,nhw->p", where.to(error), error.mean(dim=1))
            rgb = (total[area > 0] / area[area > 0]).mean()
        return {"silhouette": iou_loss(rgba[:, 3], self.target[:, 3]), "rgb": rgb}

    def _weighted(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(self.w[n] * v for n, v in terms.items())

    def _image_loss(self, vertices: torch.Tensor) -> dict[str, float]:
        """The weighted image terms at the schedule's last sigma and gamma, soft and hard."""
        return {
            name: float(self._weighted(self._image_terms(vertices, self._settings(name, *self.blur.final))))
            for name in ("soft", "hard")
        }

    def sensitivity(self, degrees: float, joints: list[str]) -> dict[str, Any]:
        """What the image tells about the hidden hand: each of ``joints`` of the true body turned
        by +-``degrees`` about each axis of its parent's frame, one at a time; for each, how far
        the hand's vertices move (fraction of the height) and the image loss it gives (at the last
        sigma and gamma, soft and hard), beside the true body's own image loss."""
        rows = []
        for joint in joints:
            index = SMPL_JOINT_NAMES.index(joint) - 1
            for axis in range(3):
                for sign in (-1, 1):
                    params = {k: v.clone() for k, v in self.truth_params.items()}
                    pose = params["body_pose"].reshape(-1, 3)
                    turn = euler_to_matrix([sign * degrees if a == axis else 0.0 for a in range(3)])
                    R = turn.to(pose) @ rotvec_to_matrix(pose[index])
                    pose[index] = matrix_to_rotvec(R)
                    params["body_pose"] = pose.reshape(1, -1)
                    out = self.body(**params)
                    moved = (out.vertices[0] - self.truth.vertices[0])[self.hand_vertices].norm(dim=-1).mean()
                    loss = self._image_loss(out.vertices[0])
                    rows.append(
                        {
                            "joint": joint,
                            "axis": "xyz"[axis],
                            "degrees": sign * degrees,
                            "hand_moved_frac": float(moved) / self.height,
                            "loss_soft": loss["soft"],
                            "loss_hard": loss["hard"],
                        }
                    )
        return {"degrees": degrees, "truth_loss": self._image_loss(self.truth.vertices[0]), "turns": rows}

    def _settings(self, name: str, sigma: float, gamma: float):
        """The raster settings of fit ``name`` (soft or hard) at ``sigma`` and ``gamma``."""
        if name == "hard":
            return self._hard_settings(sigma, gamma)
        return dataclasses.replace(self.settings, sigma_val=sigma, gamma_val=gamma)

    def _terms(self, fit: BodyFit, k: int, settings) -> tuple[Any, dict[str, torch.Tensor]]:
        """Hypothesis ``k``'s body and its loss terms (unweighted)."""
        out = fit(k)
        terms = {
            **self._image_terms(out.vertices[0], settings),
            "pose_prior": (fit.params["body_pose"][k].reshape(-1, 3) ** 2 * self.pose_weights).mean(),
            "betas_prior": (fit.params["betas"][k] ** 2).mean(),
        }
        if self.known_height is not None:
            height = standing_height(self.body, fit.params["betas"][k])
            terms["height"] = ((height - self.known_height) / self.known_height) ** 2
        return out, terms

    def step(self, step: int) -> dict[str, float]:
        sigma, gamma = self.blur(step, self.steps)
        factor = self.lr_schedule(step, self.steps)
        scalars = {"sigma": sigma, "gamma": gamma, "lr": self.base_lr[0] * factor}
        for name, fit in self.fits.items():
            settings = self._settings(name, sigma, gamma)
            losses, hypotheses = [], []
            for k in range(fit.num_hypotheses):  # independent: the sum's gradient is each one's own
                out, terms = self._terms(fit, k, settings)
                losses.append(self._weighted(terms))
                hypotheses.append((out, terms))
            stacked = torch.stack(losses)
            loss = stacked.sum()
            fit.last_loss.copy_(stacked.detach())
            out, terms = hypotheses[fit.best]
            fit.optimizer.zero_grad(set_to_none=True)
            if loss.requires_grad:
                loss.backward()
            if step < self.pose_after * self.steps:  # the first stage: the root alone
                fit.params["body_pose"].grad = fit.params["betas"].grad = None
            for group, lr in zip(fit.optimizer.param_groups, self.base_lr):
                group["lr"] = lr * factor
            fit.optimizer.step()
            scalars |= {f"loss_{name}/{k}": float(v.detach()) for k, v in terms.items()}
            scalars[f"loss_{name}/total"] = float(fit.last_loss[fit.best])
            if fit.num_hypotheses > 1:
                scalars[f"loss_{name}/best_hypothesis"] = fit.best
            if self.truth is not None:
                with torch.no_grad():
                    errors = _errors(
                        out, self.truth, self.hand_vertices, self.num_joints, self.hand_joints, self.height
                    )
                scalars |= {f"error_{name}/{k}": v for k, v in errors.items()}
        return scalars

    @torch.no_grad()
    def _picture(self) -> torch.Tensor:
        """Rows: each fit, then the truth; columns: the input view, then the novel views."""
        sharp = self._hard_settings(*self.blur.final)
        rows = [list(self.render(fit().vertices[0], sharp, self.show_camera)[:, :3]) for fit in self.fits.values()]
        if self.truth is not None:
            rows.append(list(self.render(self.truth.vertices[0], sharp, self.show_camera)[:, :3]))
        rows.append([self.target[0, :3]])
        return image_grid(rows)

    def after_step(self, ctx: RunContext, step: int) -> None:
        if not ctx.is_main:
            return
        if step % self.every["gif_every"] == 0:
            self.frames.append(to_uint8(self._picture()))
        if step % self.every["images_every"] == 0:
            ctx.image("fit", self._picture(), step)
        if step % self.every["mesh_every"] == 0:
            with torch.no_grad():
                ctx.mesh("mesh", self.fits["soft"]().vertices[0], self.faces, step)

    def state_dict(self) -> dict[str, Any]:
        state = {f"{name}/params": fit.params.state_dict() for name, fit in self.fits.items()}
        state |= {f"{name}/optimizer": fit.optimizer.state_dict() for name, fit in self.fits.items()}
        state |= {f"{name}/last_loss": fit.last_loss.clone() for name, fit in self.fits.items()}
        return state | {"frames": self.frames}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, fit in self.fits.items():
            fit.params.load_state_dict(state[f"{name}/params"])
            fit.optimizer.load_state_dict(state[f"{name}/optimizer"])
            fit.last_loss.copy_(state[f"{name}/last_loss"])
        self.frames = list(state["frames"])

    def finish(self, ctx: RunContext, completed: int) -> dict[str, Any]:
        metrics: dict[str, Any] = {
            "body_type": self.body_type,
            "steps": self.steps,
            "device": str(ctx.device),
            "known_height": self.known_height,
        }
        with torch.no_grad():
            if completed > 0:  # the losses of the parameters returned (each step's loss comes before its update)
                for name, fit in self.fits.items():
                    settings = self._settings(name, *self.blur(completed - 1, self.steps))
                    for k in range(fit.num_hypotheses):
                        fit.last_loss[k] = self._weighted(self._terms(fit, k, settings)[1])
            outs = {name: fit() for name, fit in self.fits.items()}
            for name, fit in self.fits.items():
                suffix = "" if name == "soft" else "_hard"
                every = [
                    {k: v[i].detach().cpu().tolist() for k, v in fit.params.items()} for i in range(fit.num_hypotheses)
                ]
                metrics[f"params{suffix}"] = every[fit.best]
                metrics[f"standing_height{suffix}"] = float(standing_height(self.body, fit.params["betas"][fit.best]))
                hypotheses = {"chosen": fit.best, "final_losses": fit.last_loss.cpu().tolist(), "params": every}
                if self.truth is not None:  # every hypothesis' errors: how far apart equally good fits lie
                    hypotheses["errors"] = [
                        _errors(fit(k), self.truth, self.hand_vertices, self.num_joints, self.hand_joints, self.height)
                        for k in range(fit.num_hypotheses)
                    ]
                    metrics |= {f"{k}{suffix}": v for k, v in hypotheses["errors"][fit.best].items()}
                metrics[f"hypothesis{suffix}"] = hypotheses
                metrics[f"image_loss{suffix}"] = self._image_loss(outs[name].vertices[0])
            if self.truth is not None and self.sensitivity_deg > 0:
                metrics["truth_sensitivity"] = self.sensitivity(self.sensitivity_deg, self.sensitivity_joints)
        if self.truth is not None:
            truth = {k: v.detach().cpu().reshape(-1).tolist() for k, v in self.truth_params.items()}
            metrics |= {"hand_hidden_fraction": self.hidden, "body_height": self.height, "truth": truth}
            log.info(
                "fit-smpl: hand vertex error %.4f (%.1f%% of the height), hard baseline %.4f; vertex error %.4f",
                metrics["hand_vertex_err"], 100 * metrics["hand_vertex_err_frac"],
                metrics.get("hand_vertex_err_hard", float("nan")), metrics["vertex_err"],
            )  # fmt: skip
        if ctx.is_main:
            save_obj(ctx.dir / "body.obj", outs["soft"].vertices[0].cpu(), self.faces.cpu())
            if "hard" in outs:
                save_obj(ctx.dir / "body_hard.obj", outs["hard"].vertices[0].cpu(), self.faces.cpu())
            picture = self._picture()
            self.frames.append(to_uint8(picture))
            ctx.save_gif("fit.gif", self.frames)
            labels = [*(f"{n} fit" for n in self.fits), *(["truth"] if self.truth is not None else []), "target"]
            ctx.save_png(
                "final.png", labelled(to_uint8(picture.repeat_interleave(2, 1).repeat_interleave(2, 2)), labels)
            )
            ctx.image("fit", picture, completed)
            ctx.mesh("mesh", outs["soft"].vertices[0], self.faces, completed)
        return metrics


def setup(cfg: Any, ctx: RunContext) -> FitSmpl:
    return FitSmpl(cfg, ctx)


TASK = TaskSpec(
    name="fit-smpl",
    setup=setup,
    schema=FitSmplConfig,
    primary_metric="hand_vertex_err",
    description="fit a body model to one image whose right hand is hidden behind the torso",
    resume_safe=("steps", "logger", "checkpoint_every", "device", "renderer.backend"),
)
