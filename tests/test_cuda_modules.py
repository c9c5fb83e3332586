"""The renderer and the losses on CUDA against the same calls on the CPU (skipped without a
CUDA device); the voxelizer's CUDA test lives in test_voxelization.py."""

from __future__ import annotations

import torch
from conftest import assert_forward_close, assert_grad_close, cuda_only

import softras as sr
from softras.losses import EdgeLengthLoss, FlattenLoss, IoULoss, LaplacianLoss, NormalConsistencyLoss

SPOT = "data/spot_triangulated.obj"


def _render_and_grads(device: str):
    mesh = sr.Mesh.from_obj(SPOT, load_texture=True, texture_res=2)
    v = (mesh.vertices * 0.8).to(device).requires_grad_(True)
    tex = mesh.textures.to(device).requires_grad_(True)
    r = sr.SoftRenderer(image_size=96, sigma_val=1e-4, gamma_val=1e-3, eye=[0.5, 0.8, -2.2]).to(device)
    img = r(v, mesh.faces.to(device), tex)
    upstream = torch.randn(img.shape, generator=torch.Generator().manual_seed(0)).to(device)
    g_v, g_t = torch.autograd.grad(img, [v, tex], upstream)
    return img.detach().cpu(), g_v.cpu(), g_t.cpu()


@cuda_only
def test_renderer_on_cuda_matches_cpu():
    cpu, cuda = _render_and_grads("cpu"), _render_and_grads("cuda")
    assert_forward_close(cuda[0], cpu[0], atol=1e-5, what="image")
    assert float(cpu[0][:, 3].gt(0.5).float().mean()) > 0.05  # the cow is in view
    assert_grad_close(cuda[1], cpu[1], rtol=1e-3, what="grad vertices")
    assert_grad_close(cuda[2], cpu[2], rtol=1e-3, what="grad textures")


@cuda_only
def test_losses_on_cuda_match_cpu():
    mesh = sr.Mesh.from_obj(SPOT)
    gen = torch.Generator().manual_seed(1)
    v = (mesh.vertices + 0.01 * torch.randn(mesh.vertices.shape, generator=gen)).double()
    f = mesh.faces[0] if mesh.faces.dim() == 3 else mesh.faces
    v = v[0] if v.dim() == 3 else v
    p, t = torch.rand(2, 32, 32, generator=gen).double(), torch.rand(2, 32, 32, generator=gen).double()
    losses = {
        "laplacian": (LaplacianLoss(v, f), lambda m, x: m(x[None])),
        "flatten": (FlattenLoss(f), lambda m, x: m(x[None])),
        "normal": (NormalConsistencyLoss(f), lambda m, x: m(x[None])),
        "edge": (EdgeLengthLoss(f), lambda m, x: m(x[None])),
    }
    for name, (module, call) in losses.items():
        x_cpu = v.clone().requires_grad_(True)
        x_gpu = v.cuda().requires_grad_(True)
        a, b = call(module, x_cpu).sum(), call(module.cuda(), x_gpu).sum()
        torch.testing.assert_close(b.cpu(), a, rtol=1e-10, atol=1e-12, msg=name)
        (ga,), (gb,) = torch.autograd.grad(a, [x_cpu]), torch.autograd.grad(b, [x_gpu])
        torch.testing.assert_close(gb.cpu(), ga, rtol=1e-9, atol=1e-12, msg=name)
    iou = IoULoss()
    torch.testing.assert_close(iou(p.cuda(), t.cuda()).cpu(), iou(p, t), rtol=1e-12, atol=0)
