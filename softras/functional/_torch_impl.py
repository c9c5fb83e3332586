"""The reference of ``soft_rasterize_packed``: pure PyTorch; slow; the oracle for the tests.

Every (pixel, face) pair is evaluated by brute force, exactly as the definition reads
(docs: the math of sections 2 to 4), in chunks of pixels so that memory stays bounded; each
chunk is checkpointed, so the backward pass keeps only the chunk's inputs and recomputes the
rest. Autograd gives the gradients. The native backends must agree with this file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .settings import RasterSettings
from .texture import texel_index

DET_MIN = 1e-10  # smallest |determinant| of the barycentric system; the sign is kept
Z_MIN = 1e-10  # smallest |depth| of a vertex before 1/z; the sign is kept
WSUM_MIN = 1e-5  # smallest sum of the clipped barycentrics before renormalising


def pixel_centres(H: int, W: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """NDC centres of all pixels, row-major, row 0 at the top: x [H*W], y [H*W]."""
    cols = torch.arange(W, device=device, dtype=dtype)
    rows = torch.arange(H, device=device, dtype=dtype)
    x = (2 * cols + 1 - W) / W
    y = (2 * (H - 1 - rows) + 1 - H) / H
    return x.repeat(H), y.repeat_interleave(W)


def _keep_sign_clamp(v: torch.Tensor, vmin: float) -> torch.Tensor:
    """v with |v| raised to at least vmin, keeping its sign (0 counts as positive)."""
    return torch.where(v.abs() < vmin, torch.where(v < 0, -vmin, vmin).to(v.dtype), v)


def _segment_dist2(px, py, ax, ay, bx, by) -> torch.Tensor:
    """Squared distance from p to the segment a-b. The closest-point parameter is held
    fixed (detached): it minimises the distance, so its own derivative contributes nothing."""
    ex, ey = bx - ax, by - ay
    len2 = ex * ex + ey * ey
    with torch.no_grad():
        inv_len2 = torch.where(len2 > 0, 1 / torch.where(len2 > 0, len2, torch.ones_like(len2)), 0.0)
        t = (((px - ax) * ex + (py - ay) * ey) * inv_len2).clamp(0, 1)
    dx = px - (ax + t * ex)
    dy = py - (ay + t * ey)
    return dx * dx + dy * dy


def _first_min(v: torch.Tensor) -> torch.Tensor:
    """Minimum over the last axis; at ties the gradient goes to the first minimum only."""
    return v.gather(-1, v.detach().argmin(-1, keepdim=True)).squeeze(-1)


def _texel_colour(tex: torch.Tensor, wc: torch.Tensor) -> torch.Tensor:
    """Colour of a surface texture [F, R*R, 3] at clipped barycentrics wc [P, F, 3]: the
    texel of :func:`softras.functional.texture.texel_index`."""
    R = int(round(tex.shape[1] ** 0.5))
    with torch.no_grad():
        idx = texel_index(wc[..., 0], wc[..., 1], R)  # [P, F]
    f_idx = torch.arange(tex.shape[0], device=tex.device).expand_as(idx)
    return tex[f_idx, idx]  # [P, F, 3]


def _shade_chunk(
    px: torch.Tensor,  # [P]
    py: torch.Tensor,  # [P]
    fv: torch.Tensor,  # [F, 3, 3]
    tex: torch.Tensor,  # [F, T, 3]
    s: RasterSettings,
    num_faces: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """RGBA [P, 4], nearest depth [P] and nearest face index [P] of one mesh's pixels."""
    P, dtype = px.shape[0], fv.dtype
    if fv.shape[0] == 0:
        rgba = torch.zeros(P, 4, dtype=dtype, device=px.device)
        rgba[:, :3] = torch.tensor(s.background_color, dtype=dtype, device=px.device)
        minus = torch.full((P,), -1, device=px.device)
        return rgba, minus.to(dtype), minus
    px, py = px[:, None], py[:, None]  # [P, 1]
    x0, x1, x2 = fv[:, 0, 0], fv[:, 1, 0], fv[:, 2, 0]  # [F]
    y0, y1, y2 = fv[:, 0, 1], fv[:, 1, 1], fv[:, 2, 1]
    z = fv[:, :, 2]  # [F, 3]

    # barycentric coordinates
    det_raw = (y1 - y2) * (x0 - x2) + (x2 - x1) * (y0 - y2)
    det = _keep_sign_clamp(det_raw, DET_MIN)
    inv_det = 1 / det
    w0 = ((y1 - y2) * (px - x2) + (x2 - x1) * (py - y2)) * inv_det
    w1 = ((y2 - y0) * (px - x2) + (x0 - x2) * (py - y2)) * inv_det
    # a degenerate face (|det| < DET_MIN) has arbitrary barycentrics: they carry no gradient
    degenerate = det_raw.abs() < DET_MIN
    w0 = torch.where(degenerate, w0.detach(), w0)
    w1 = torch.where(degenerate, w1.detach(), w1)
    w2 = 1 - w0 - w1
    w = torch.stack([w0, w1, w2], dim=-1)  # [P, F, 3]
    # a degenerate face has no interior: it covers nothing
    inside = (w0 > 0) & (w1 > 0) & (w2 > 0) & ~degenerate
    inside_closed = ((w >= 0) & (w <= 1)).all(-1) & ~degenerate

    # bounding box grown by sqrt(T)
    g = s.grow
    in_box = (
        (px >= fv[:, :, 0].amin(1) - g)
        & (px <= fv[:, :, 0].amax(1) + g)
        & (py >= fv[:, :, 1].amin(1) - g)
        & (py <= fv[:, :, 1].amax(1) + g)
    )

    # signed distance -> probability D = sigmoid(arg)
    if s.dist_func == "euclidean":
        d2_edges = torch.stack(
            [
                _segment_dist2(px, py, x0, y0, x1, y1),
                _segment_dist2(px, py, x1, y1, x2, y2),
                _segment_dist2(px, py, x2, y2, x0, y0),
            ],
            dim=-1,
        )  # [P, F, 3]
        d2 = _first_min(d2_edges)
        arg = torch.where(inside, d2, -d2) / s.sigma_val
        valid = in_box & (inside | (d2 < s.threshold))
    elif s.dist_func == "barycentric":
        m = _first_min(w)
        arg = m * m.abs() / s.sigma_val
        valid = in_box & (inside | (m * m < s.threshold))
    else:  # hard: D = 1 on the closed triangle, so shared edges leave no crack
        arg = torch.full_like(w0, 30.0)  # unused: D = 1
        valid = inside_closed
    arg = torch.where(valid, arg, torch.zeros_like(arg))
    if s.dist_func == "hard":
        D = valid.to(dtype)
        one_minus_D = 1 - D
    else:
        D = torch.sigmoid(arg)
        one_minus_D = torch.sigmoid(-arg)

    # alpha
    if s.aggr_func_alpha == "prod":
        if s.dist_func == "hard":
            alpha = valid.any(-1).to(dtype)
        else:
            log_keep = torch.where(valid, F.logsigmoid(-arg), torch.zeros_like(arg))
            alpha = 1 - torch.exp(log_keep.sum(-1))
    elif s.aggr_func_alpha == "sum":
        alpha = torch.where(valid, D, torch.zeros_like(D)).sum(-1) / num_faces
    else:
        alpha = (valid & (D > 0.5)).any(-1).to(dtype)
    del one_minus_D

    # perspective-correct depth from clipped, renormalised barycentrics
    wc = w.clamp(0, 1)
    wc = wc / wc.sum(-1, keepdim=True).clamp_min(WSUM_MIN)
    zinv = 1 / _keep_sign_clamp(z, Z_MIN)  # [F, 3]
    u = (wc * zinv).sum(-1)  # [P, F]
    u_ok = u != 0
    zp = torch.where(u_ok, 1 / torch.where(u_ok, u, torch.ones_like(u)), torch.full_like(u, float("inf")))
    front = ((x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)) < 0  # [F]
    facing = torch.ones_like(front) if s.fill_back else front
    in_range = (zp >= s.near) & (zp <= s.far) & facing

    # nearest covering face (z-buffer), ties to the lower index
    covered = inside_closed & in_range
    zbuf = torch.where(covered, zp, torch.full_like(zp, float("inf")))
    zmin, idx = zbuf.detach().min(-1)  # [P]
    hit = torch.isfinite(zmin)
    face_index = torch.where(hit, idx, torch.full_like(idx, -1))
    depth = torch.where(hit, zmin, torch.full_like(zmin, -1.0))

    # colour of every face at every pixel
    tex_w = wc if s.texture_type == "vertex" else wc.detach()
    if s.texture_type == "surface":
        colour = _texel_colour(tex, tex_w)  # [P, F, 3]
    else:
        colour = (tex_w[..., None] * tex[None]).sum(-2)  # [P, F, 3, 3] -> [P, F, 3]
    bg = torch.tensor(s.background_color, dtype=dtype, device=px.device)

    if s.aggr_func_rgb == "softmax":
        use = valid & in_range
        zbar = (s.far - zp) / (s.far - s.near)
        with torch.no_grad():
            zmax = torch.where(use, zbar, torch.full_like(zbar, -float("inf"))).amax(-1)
            mx = torch.clamp_min(zmax, s.eps)[:, None]  # [P, 1]; the result does not depend on it
        zbar_s = torch.where(use, zbar, mx.expand_as(zbar))
        weight = torch.where(use, D * torch.exp((zbar_s - mx) / s.gamma_val), torch.zeros_like(D))
        w_bg = torch.exp((s.eps - mx) / s.gamma_val)  # [P, 1]
        num = (weight[..., None] * colour).sum(1) + w_bg * bg
        rgb = num / (weight.sum(-1, keepdim=True) + w_bg)
    else:
        sel = F.one_hot(idx, fv.shape[0]).to(torch.bool) & hit[:, None]  # [P, F]
        picked = (torch.where(sel[..., None], colour, torch.zeros_like(colour))).sum(1)
        rgb = torch.where(hit[:, None], picked, bg.expand_as(picked))
    return torch.cat([rgb, alpha[:, None]], dim=1), depth, face_index


def soft_rasterize_packed(
    face_vertices: torch.Tensor,  # [F_total, 3, 3]
    textures: torch.Tensor,  # [F_total, T, 3]
    mesh_first_face: torch.Tensor,  # [B]
    settings: RasterSettings,
    chunk_pairs: int = 1 << 20,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference of ``soft_rasterize_packed``; slow; the oracle for the tests.

    Returns RGBA [B, 4, H, W], depth [B, H, W] and packed face index [B, H, W] (-1: none).
    """
    H, W = settings.image_size
    B, F_total = mesh_first_face.shape[0], face_vertices.shape[0]
    px, py = pixel_centres(H, W, face_vertices.device, face_vertices.dtype)
    ends = torch.cat([mesh_first_face[1:], mesh_first_face.new_tensor([F_total])]).tolist()
    images, depths, indices = [], [], []
    for start, end in zip(mesh_first_face.tolist(), ends):
        fv, tex = face_vertices[start:end], textures[start:end]
        step = max(1, chunk_pairs // max(1, end - start))
        parts = []
        for p0 in range(0, H * W, step):
            args = (px[p0 : p0 + step], py[p0 : p0 + step], fv, tex, settings, end - start)
            if torch.is_grad_enabled() and (fv.requires_grad or tex.requires_grad):
                parts.append(checkpoint(_shade_chunk, *args, use_reentrant=False))
            else:
                parts.append(_shade_chunk(*args))
        rgba = torch.cat([p[0] for p in parts])
        images.append(rgba.t().reshape(4, H, W))
        depths.append(torch.cat([p[1] for p in parts]).reshape(H, W))
        idx = torch.cat([p[2] for p in parts])
        indices.append(torch.where(idx >= 0, idx + start, idx).reshape(H, W))
    if B == 0:
        empty = face_vertices.new_zeros((0, H, W))
        rgba, depth, index = face_vertices.new_zeros((0, 4, H, W)), empty, empty.long()
    else:
        rgba, depth, index = torch.stack(images), torch.stack(depths), torch.stack(indices)
    if torch.is_grad_enabled() and (face_vertices.requires_grad or textures.requires_grad) and not rgba.requires_grad:
        # no face reaches any pixel (F = 0): tie the images to the inputs so that backward
        # gives zero gradients of the inputs' shapes, as the native backends do
        rgba = rgba + 0 * (face_vertices.sum() + textures.sum())
    return rgba, depth, index
