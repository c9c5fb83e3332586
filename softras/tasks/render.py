"""Rendering: a turntable GIF of a mesh and a strip from blurry to sharp renders.

Each step of the run renders one turntable frame; the strip (one render per (sigma, gamma)
pair, RGB over alpha, like the paper's figure) is made at the end, from ``camera``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..engine import BaseConfig, CameraConfig, Experiment, RendererConfig, RunContext, TaskSpec, first_line
from ..functional.cameras import get_points_from_angles, look_at, perspective
from ..mesh import Mesh
from ..renderer import SoftRenderer
from ..vis import image_grid, to_uint8

log = logging.getLogger("softras")


@dataclass
class TextureConfig:
    load: bool = True
    res: int = 5


@dataclass
class TurntableConfig:
    frames: int = 36
    elevation: float = 20.0
    distance: float = 2.732
    fps: float = 12.0
    save_frames: bool = False


@dataclass
class StripConfig:
    sigma_val: list[float] = field(default_factory=lambda: [3e-2, 1e-2, 3e-3, 1e-3, 1e-4, 1e-5])
    gamma_val: list[float] = field(default_factory=lambda: [1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4])


@dataclass
class RenderConfig(BaseConfig):
    mesh: str = "${paths.data_dir}/spot_triangulated.obj"
    normalize: bool = True
    texture: TextureConfig = field(default_factory=TextureConfig)
    renderer: RendererConfig = field(default_factory=RendererConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    turntable: TurntableConfig = field(default_factory=TurntableConfig)
    strip: StripConfig = field(default_factory=StripConfig)


def camera_eye(c: Any) -> torch.Tensor:
    """The eye [3] of a camera config: ``eye`` if given, else from distance/elevation/azimuth."""
    if c.eye is not None:
        eye = [float(x) for x in c.eye]
        if len(eye) != 3:
            raise ValueError(f"camera.eye: expected [x, y, z], got {list(c.eye)}")
        return torch.tensor(eye)
    if not c.distance > 0:
        raise ValueError(f"camera.distance: expected a number > 0, got {c.distance}")
    return get_points_from_angles(float(c.distance), float(c.elevation), float(c.azimuth))[0]


def _vec3(key: str, value: Any) -> list[float]:
    out = [float(x) for x in value]
    if len(out) != 3:
        raise ValueError(f"{key}: expected [x, y, z], got {list(value)}")
    return out


def frame_mesh(mesh: Mesh) -> Mesh:
    """The mesh centred on its bounding box and scaled so that its bounding sphere (about
    that centre) has radius 1: any shape fits the default 30-degree view from 2.732."""
    v = mesh.vertices
    centre = (v.amax(1, keepdim=True) + v.amin(1, keepdim=True)) / 2
    radius = (v - centre).norm(dim=-1).amax(1).clamp_min(1e-12)[:, None, None]
    return mesh.with_(vertices=(v - centre) / radius)


class Render(Experiment):
    resumable = False
    scalars_every = 1

    def __init__(self, cfg: Any, ctx: RunContext):
        path = Path(str(cfg.mesh)).expanduser()
        if path.is_dir():
            raise ValueError(f"mesh: expected an OBJ file, got the folder {path}")
        if not path.is_file():
            raise FileNotFoundError(f"mesh: no such file {path}")
        tt = cfg.turntable
        if tt.frames < 1:
            raise ValueError(f"turntable.frames: expected an integer >= 1, got {tt.frames}")
        if not tt.distance > 0 or not tt.fps > 0:
            raise ValueError("turntable.distance, turntable.fps: expected numbers > 0")
        if cfg.texture.res < 1:
            raise ValueError(f"texture.res: expected an integer >= 1, got {cfg.texture.res}")
        sigmas, gammas = list(cfg.strip.sigma_val), list(cfg.strip.gamma_val)
        if len(sigmas) != len(gammas) or not sigmas:
            raise ValueError(
                f"strip.sigma_val, strip.gamma_val: expected non-empty lists of equal length, "
                f"got {len(sigmas)} and {len(gammas)}"
            )
        if min(sigmas + gammas) <= 0:
            raise ValueError("strip.sigma_val, strip.gamma_val: expected values > 0")
        self.strip = list(zip(sigmas, gammas))
        r = dict(cfg.renderer)
        if not isinstance(r["image_size"], str) and hasattr(r["image_size"], "__len__"):  # '64' is refused
            r["image_size"] = tuple(r["image_size"])
        try:
            self.renderer = SoftRenderer(**r)
            self.renderer.rasterizer.settings()  # every raster option checked now
        except (TypeError, ValueError) as err:
            message = first_line(err)
            raise ValueError(message if message.startswith("renderer.") else f"renderer.{message}") from None
        self.eye = camera_eye(cfg.camera)
        self.at, self.up = _vec3("camera.at", cfg.camera.at), _vec3("camera.up", cfg.camera.up)
        try:
            mesh = Mesh.from_obj(path, normalization=False, load_texture=cfg.texture.load, texture_res=cfg.texture.res)
        except ValueError as err:
            raise ValueError(f"mesh: {first_line(err)}") from None
        if mesh.num_faces == 0:
            raise ValueError(f"mesh: no faces in {path}")
        self.mesh = (frame_mesh(mesh) if cfg.normalize else mesh).to(ctx.device)
        self.steps = int(tt.frames)
        self.tt = tt
        self.frames: list[np.ndarray] = []
        self.seconds: list[float] = []

    def render(self, eye: torch.Tensor, at=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)) -> torch.Tensor:
        """RGBA [4, H, W] of the mesh seen from ``eye`` looking at ``at``."""
        lit = self.renderer.lighting(self.mesh)
        v = look_at(lit.vertices, eye.to(lit.vertices), at, up)
        t = self.renderer.transform.transformer
        v = perspective(v, t.viewing_angle, t.image_size)
        return self.renderer.rasterizer(lit.with_(vertices=v))[0]

    @torch.no_grad()
    def step(self, step: int) -> dict[str, float]:
        azimuth = -360.0 * step / self.steps
        eye = get_points_from_angles(float(self.tt.distance), float(self.tt.elevation), azimuth)[0]
        t0 = time.time()
        img = self.render(eye)
        self.seconds.append(time.time() - t0)
        self.frames.append(to_uint8(img[:3]))
        self._last = img
        return {"turntable/alpha_mean": img[3].mean()}

    def after_step(self, ctx: RunContext, step: int) -> None:
        ctx.image("turntable", self._last[:3], step)
        if self.tt.save_frames:
            (ctx.dir / "frames").mkdir(exist_ok=True) if ctx.is_main else None
            ctx.save_png(f"frames/{step:04d}.png", self._last)

    @torch.no_grad()
    def finish(self, ctx: RunContext, completed: int) -> dict[str, Any]:
        ctx.save_gif("turntable.gif", self.frames, fps=float(self.tt.fps))
        ctx.save_png("view.png", self.render(self.eye, self.at, self.up))
        rgb_row, alpha_row = [], []
        for i, (s, g) in enumerate(self.strip):
            self.renderer.set_sigma(float(s))
            self.renderer.set_gamma(float(g))
            img = self.render(self.eye, self.at, self.up)
            rgb_row.append(img[:3])
            alpha_row.append(img[3:4])
            ctx.image("strip/each", img[:3], i)
            ctx.scalars(i, {"strip/sigma_val": s, "strip/gamma_val": g, "strip/alpha_mean": img[3].mean().item()})
        ctx.image("strip", image_grid([rgb_row, alpha_row]), 0, save=True)
        ctx.mesh("mesh", self.mesh.vertices[0], self.mesh.faces[0], 0)
        log.info("render: %d frames and a %d-step strip in %s", completed, len(self.strip), ctx.dir)
        return {
            "faces": self.mesh.num_faces,
            "frames": completed,
            "seconds_per_frame": float(np.median(self.seconds)) if self.seconds else None,
            "strip": [{"sigma_val": float(s), "gamma_val": float(g)} for s, g in self.strip],
        }


def setup(cfg: Any, ctx: RunContext) -> Render:
    return Render(cfg, ctx)


TASK = TaskSpec(
    name="render",
    setup=setup,
    schema=RenderConfig,
    primary_metric=None,
    description="turntable GIF and blurry-to-sharp sigma/gamma strip of a mesh",
    resume_safe=(),
)
