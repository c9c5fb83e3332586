"""Mesh regularizers and the soft IoU loss against values computed by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from softras.functional.losses import (
    edge_length_loss,
    flatten_loss,
    interior_edges,
    iou_loss,
    laplacian_loss,
    mesh_edges,
    normal_consistency_loss,
    uniform_laplacian,
)
from softras.io import load_obj_geometry
from softras.losses import EdgeLengthLoss, FlattenLoss, IoULoss, LaplacianLoss, NormalConsistencyLoss

DATA = Path(__file__).resolve().parents[1] / "data"
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# regular tetrahedron centred at the origin (edge 2*sqrt(2)), faces wound outward
TET_V = torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64)
TET_F = torch.tensor([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])
# unit square in z = 0 split along the diagonal 0-2
SQ_V = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=torch.float64)
SQ_F = torch.tensor([[0, 1, 2], [0, 2, 3]])
# the "corner" tetrahedron (0, e_x, e_y, e_z)
CORNER_V = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)


def hinge(phi_deg: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Two triangles on the edge (0,0,0)-(1,0,0): c1 = (0.5, 1, 0) and c2 at angle phi from
    c1's direction about the edge (phi = 180: coplanar and flat, 90: a right-angle fold, 0:
    folded completely)."""
    p = math.radians(phi_deg)
    v = torch.tensor(
        [[0.0, 0, 0], [1, 0, 0], [0.5, 1, 0], [0.3, 2 * math.cos(p), 2 * math.sin(p)]], dtype=torch.float64
    )
    return v, torch.tensor([[0, 1, 2], [1, 0, 3]])


# ----------------------------------------------------------------------------------------------
# topology
# ----------------------------------------------------------------------------------------------


def test_mesh_edges_and_interior_edges():
    assert mesh_edges(SQ_F).tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [2, 3]]
    ((a, b, c1, c2),) = interior_edges(SQ_F).tolist()
    assert (a, b) == (0, 2) and {c1, c2} == {1, 3}
    ie = interior_edges(TET_F)
    assert ie.shape == (6, 4)
    for a, b, c1, c2 in ie.tolist():  # each edge with the two other vertices
        assert a < b and sorted({a, b, c1, c2}) == [0, 1, 2, 3]
    # a single triangle: boundary edges only
    assert interior_edges(torch.tensor([[0, 1, 2]])).shape == (0, 4)
    # non-manifold edge 0-1 shared by three faces: skipped; the other edges are boundary
    fan = torch.tensor([[0, 1, 2], [1, 0, 3], [0, 1, 4]])
    assert interior_edges(fan).shape == (0, 4)
    # a closed sphere: E = 3F/2 interior edges, V - E + F = 2
    v, f = load_obj_geometry(DATA / "sphere_642.obj")
    assert interior_edges(f).shape == (1920, 4)
    assert mesh_edges(f).shape == (1920, 2)
    assert v.shape[0] - 1920 + f.shape[0] == 2


# ----------------------------------------------------------------------------------------------
# Laplacian
# ----------------------------------------------------------------------------------------------


def dense_laplacian_square() -> torch.Tensor:
    """L = I - D^-1 A of the square by hand: degrees 3, 2, 3, 2."""
    t = 1.0 / 3.0
    return torch.tensor(
        [
            [1.0, -t, -t, -t],
            [-0.5, 1.0, -0.5, 0.0],
            [-t, -t, 1.0, -t],
            [-0.5, 0.0, -0.5, 1.0],
        ],
        dtype=torch.float64,
    )


def test_uniform_laplacian_matches_hand_built_dense():
    L = uniform_laplacian(SQ_F, 4, dtype=torch.float64)
    assert L.is_sparse and L.layout == torch.sparse_coo
    torch.testing.assert_close(L.to_dense(), dense_laplacian_square(), rtol=0, atol=1e-15)
    t = 1.0 / 3.0
    tet = torch.full((4, 4), -t, dtype=torch.float64) + (1 + t) * torch.eye(4, dtype=torch.float64)
    torch.testing.assert_close(uniform_laplacian(TET_F, 4, dtype=torch.float64).to_dense(), tet)
    # a vertex on no face: an all-zero row, no NaN (the original divided by zero)
    L5 = uniform_laplacian(TET_F, 5, dtype=torch.float64).to_dense()
    assert torch.equal(L5[4], torch.zeros(5, dtype=torch.float64))
    torch.testing.assert_close(L5[:4, :4], tet)


def test_laplacian_loss_hand_values():
    # square: (Lx)_v = (-2/3,-2/3), (1/2,-1/2), (2/3,2/3), (-1/2,1/2) -> 8/9 + 1/2 + 8/9 + 1/2
    loss = LaplacianLoss(SQ_V, SQ_F).double()
    torch.testing.assert_close(loss(SQ_V[None]), torch.tensor([25 / 9], dtype=torch.float64))
    # regular tetrahedron centred at 0: (Lx)_v = 4/3 x_v, |x_v|^2 = 3 -> 16/9 * 12
    tl = LaplacianLoss(TET_V, TET_F).double()
    torch.testing.assert_close(tl(TET_V[None]), torch.tensor([64 / 3], dtype=torch.float64))
    # rows sum to zero: translation invariant; all vertices at one point -> 0
    shifted = TET_V[None] + torch.tensor([0.3, -2.0, 5.0], dtype=torch.float64)
    torch.testing.assert_close(tl(shifted), torch.tensor([64 / 3], dtype=torch.float64))
    assert tl(torch.full((1, 4, 3), 7.0, dtype=torch.float64)).item() < 1e-25  # 1 - 3 * (1/3) rounding
    # the functional form, built from faces on the fly
    torch.testing.assert_close(laplacian_loss(SQ_V[None], SQ_F), torch.tensor([25 / 9], dtype=torch.float64))


def test_laplacian_average_flag():
    x = torch.stack([SQ_V, 2 * SQ_V])  # [2, 4, 3]: losses 25/9 and 4 * 25/9
    per = LaplacianLoss(SQ_V, SQ_F).double()(x)
    torch.testing.assert_close(per, torch.tensor([25 / 9, 100 / 9], dtype=torch.float64))
    avg = LaplacianLoss(SQ_V, SQ_F, average=True).double()(x)
    assert avg.dim() == 0
    torch.testing.assert_close(avg, torch.tensor(125 / 18, dtype=torch.float64))


def test_laplacian_module_buffers_are_sparse_and_movable():
    m = LaplacianLoss(SQ_V, SQ_F)
    assert m.laplacian.is_sparse
    assert m.laplacian_values.dtype == torch.float64
    assert m.laplacian_values.numel() == 4 + 2 * 5  # V diagonal + 2E neighbours, not V*V
    torch.testing.assert_close(m.laplacian.to_dense(), dense_laplacian_square(), rtol=0, atol=0)
    m32 = LaplacianLoss(SQ_V, SQ_F).to(torch.float32)
    assert m32.laplacian.dtype == torch.float32
    torch.testing.assert_close(m32(SQ_V[None].float()), torch.tensor([25 / 9]))
    assert "laplacian_values" not in m.state_dict()  # derived from the template, not saved
    assert m.to("meta").laplacian.device.type == "meta"


def test_laplacian_gradient_matches_dense_autograd():
    g = torch.Generator().manual_seed(0)
    v, f = load_obj_geometry(DATA / "sphere_642.obj")
    x = torch.randn(3, v.shape[0], 3, generator=g, dtype=torch.float64)
    m = LaplacianLoss(v, f).double()
    dense = m.laplacian.to_dense()
    xs = x.clone().requires_grad_(True)
    xd = x.clone().requires_grad_(True)
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    ls = m(xs)
    ld = (dense @ xd).pow(2).sum(dim=(1, 2))
    torch.testing.assert_close(ls, ld)
    (ls * w).sum().backward()
    (ld * w).sum().backward()
    torch.testing.assert_close(xs.grad, xd.grad)
    # float32 module on float32 input
    torch.testing.assert_close(LaplacianLoss(v, f)(x.float()), ld.detach().float(), rtol=1e-5, atol=1e-4)


def grid_mesh(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """An n x n vertex grid, 2 (n-1)^2 triangles, with random heights: [n*n, 3], [F, 3]."""
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    v = torch.stack(
        [i.flatten().double(), j.flatten().double(), torch.rand(n * n, generator=gen, dtype=torch.float64)], 1
    )
    q = (i[:-1, :-1] * n + j[:-1, :-1]).flatten()  # lower-left corner of each cell
    f = torch.cat([torch.stack([q, q + n, q + n + 1], 1), torch.stack([q, q + n + 1, q + 1], 1)])
    return v, f


def test_laplacian_scales_to_large_meshes():
    g = torch.Generator().manual_seed(1)
    v, f = grid_mesh(320, g)  # 102,400 vertices, 203,522 faces
    V = v.shape[0]
    m = LaplacianLoss(v, f)
    E = 3 * 319 * 319 + 2 * 319  # interior + boundary edges of the triangulated grid
    assert m.laplacian_values.numel() == V + 2 * E
    x = torch.stack([v, 2 * v]).requires_grad_(True)  # [2, V, 3]
    loss = m(x)
    loss.sum().backward()
    # reference: (L x)_i = x_i - mean of the neighbours, by scatter over the edge list
    e = mesh_edges(f)
    deg = torch.bincount(e.flatten(), minlength=V).double()
    nsum = torch.zeros(V, 3, dtype=torch.float64)
    nsum.index_add_(0, e[:, 0], v[e[:, 1]]).index_add_(0, e[:, 1], v[e[:, 0]])
    ref = (v - nsum / deg[:, None]).pow(2).sum()
    torch.testing.assert_close(loss.detach(), torch.stack([ref, 4 * ref]))
    # gradient: autograd through the same scatter reference (no sparse matrix involved)
    xr = x.detach().clone().requires_grad_(True)
    nsum_r = torch.zeros_like(xr).index_add(1, e[:, 0], xr[:, e[:, 1]]).index_add(1, e[:, 1], xr[:, e[:, 0]])
    (xr - nsum_r / deg[:, None]).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad)


# ----------------------------------------------------------------------------------------------
# flatten
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("phi", [180.0, 135.0, 90.0, 45.0, 0.0])
def test_flatten_hinge(phi):
    v, f = hinge(phi)
    expected = (math.cos(math.radians(phi)) + 1) ** 2  # cos θ = h1.h2/|h1||h2| = cos(phi)
    got = FlattenLoss(f)(v[None])
    torch.testing.assert_close(got, torch.tensor([expected], dtype=torch.float64), atol=1e-12, rtol=1e-9)
    nc = NormalConsistencyLoss(f)(v[None])  # 1 - cos between normals = 1 + cos θ
    torch.testing.assert_close(nc, torch.tensor([1 + math.cos(math.radians(phi))], dtype=torch.float64))


def test_flatten_named_configurations():
    # coplanar square (h1 = -h2): 0; a right-angle fold: 1; folded completely: 4
    assert flatten_loss(SQ_V[None], SQ_F).abs().item() < 1e-12
    for phi, want in [(90.0, 1.0), (0.0, 4.0)]:
        v, f = hinge(phi)
        assert abs(flatten_loss(v[None], f).item() - want) < 1e-12
    # independent of the faces' winding
    v, f = hinge(90.0)
    assert abs(flatten_loss(v[None], f[:, [0, 2, 1]]).item() - 1.0) < 1e-12


def test_flatten_tetrahedra():
    # regular tetrahedron: dihedral cos = 1/3 on all 6 edges -> 6 (4/3)^2 = 32/3
    torch.testing.assert_close(FlattenLoss(TET_F).double()(TET_V[None]), torch.tensor([32 / 3], dtype=torch.float64))
    # corner tetrahedron: the 3 edges at the origin fold at 90 deg (cos 0 -> 1 each); the 3
    # edges of the slanted face have cos = 1/sqrt(3) -> 3 + 3 (1 + 1/sqrt 3)^2 = 7 + 2 sqrt 3
    torch.testing.assert_close(
        FlattenLoss(TET_F)(CORNER_V[None]), torch.tensor([7 + 2 * math.sqrt(3)], dtype=torch.float64)
    )
    # normal consistency: mean over edges of 1 + cos θ
    torch.testing.assert_close(normal_consistency_loss(TET_V[None], TET_F), torch.tensor([4 / 3], dtype=torch.float64))
    torch.testing.assert_close(
        normal_consistency_loss(CORNER_V[None], TET_F),
        torch.tensor([1 + 1 / (2 * math.sqrt(3))], dtype=torch.float64),
    )


def test_flatten_open_meshes_and_batches():
    tri = torch.tensor([[0, 1, 2]])
    v = torch.rand(2, 3, 3, dtype=torch.float64)
    assert torch.equal(FlattenLoss(tri)(v), torch.zeros(2, dtype=torch.float64))
    assert torch.equal(NormalConsistencyLoss(tri)(v), torch.zeros(2, dtype=torch.float64))
    # batch: flat, right-angle fold, complete fold -> 0, 1, 4; average -> 5/3
    x = torch.stack([hinge(180.0)[0], hinge(90.0)[0], hinge(0.0)[0]])
    f = hinge(0.0)[1]
    torch.testing.assert_close(FlattenLoss(f)(x), torch.tensor([0.0, 1.0, 4.0], dtype=torch.float64))
    torch.testing.assert_close(FlattenLoss(f, average=True)(x), torch.tensor(5 / 3, dtype=torch.float64))
    # the sphere is smooth: small but positive; the total matches a per-edge loop
    sv, sf = load_obj_geometry(DATA / "sphere_642.obj")
    got = FlattenLoss(sf).double()(sv.double()[None]).item()
    ref = 0.0
    for a, b, c1, c2 in interior_edges(sf).tolist():
        e = sv[b].double() - sv[a].double()
        h = [sv[c].double() - sv[a].double() for c in (c1, c2)]
        h = [u - e * (u @ e) / (e @ e) for u in h]
        ref += (float(h[0] @ h[1] / (h[0].norm() * h[1].norm())) + 1) ** 2
    assert got == pytest.approx(ref, rel=1e-9) and 0 < got < 1


def test_flatten_degenerate_is_finite():
    f = hinge(0.0)[1]
    x = torch.zeros(1, 4, 3, dtype=torch.float64, requires_grad=True)  # everything at one point
    loss = flatten_loss(x, f) + normal_consistency_loss(x, f)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(x.grad).all()


def test_flatten_gradient_gradcheck():
    v, f = hinge(60.0)
    x = (v + 0.01 * torch.randn(4, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64))[None]
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: flatten_loss(t, f), (x,))
    assert torch.autograd.gradcheck(lambda t: normal_consistency_loss(t, f), (x,))


# ----------------------------------------------------------------------------------------------
# edge length, IoU
# ----------------------------------------------------------------------------------------------


def test_edge_length_loss():
    # square: 4 sides of length 1 and the diagonal sqrt 2 -> mean squared length 6/5
    torch.testing.assert_close(EdgeLengthLoss(SQ_F)(SQ_V[None]), torch.tensor([1.2], dtype=torch.float64))
    # with target 1 only the diagonal counts: (sqrt 2 - 1)^2 / 5
    torch.testing.assert_close(
        edge_length_loss(SQ_V[None], SQ_F, target_length=1.0),
        torch.tensor([(math.sqrt(2) - 1) ** 2 / 5], dtype=torch.float64),
    )
    # regular tetrahedron of edge 2 sqrt 2: 8; batch with a half-size copy: 8, 2 -> average 5
    x = torch.stack([TET_V, 0.5 * TET_V])
    torch.testing.assert_close(EdgeLengthLoss(TET_F)(x), torch.tensor([8.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(EdgeLengthLoss(TET_F, average=True)(x), torch.tensor(5.0, dtype=torch.float64))
    # gradient of the mean squared length: d/dx_v = 2/E sum over edges (x_v - x_u)
    xs = SQ_V[None].clone().requires_grad_(True)
    edge_length_loss(xs, SQ_F).sum().backward()
    want = torch.zeros(4, 3, dtype=torch.float64)
    for a, b in mesh_edges(SQ_F).tolist():
        want[a] += 2 / 5 * (SQ_V[a] - SQ_V[b])
        want[b] += 2 / 5 * (SQ_V[b] - SQ_V[a])
    torch.testing.assert_close(xs.grad[0], want)


def test_iou_loss_hand_values():
    m = torch.tensor([[1.0, 1, 0, 0], [0, 1, 1, 0]])
    # identical: 1 - n / (n + eps) ~ 0
    assert iou_loss(m[:1], m[:1]).item() == pytest.approx(0.0, abs=1e-6)
    # disjoint: 1
    assert iou_loss(m[:1], 1 - m[:1]).item() == pytest.approx(1.0, abs=1e-7)
    # overlap 1 of 3 -> 2/3
    assert iou_loss(m[:1], m[1:]).item() == pytest.approx(2 / 3, abs=1e-6)
    # soft: p = (0.5, 0.5), t = (1, 0): intersect 0.5, union 1 + 0.5 -> 2/3
    assert iou_loss(torch.tensor([[0.5, 0.5]]), torch.tensor([[1.0, 0.0]])).item() == pytest.approx(2 / 3, abs=1e-6)
    # batch [B, H, W]: per image 0 and 2/3, mean 1/3
    p = torch.stack([m[0].view(2, 2), m[0].view(2, 2)])
    t = torch.stack([m[0].view(2, 2), m[1].view(2, 2)])
    assert IoULoss()(p, t).item() == pytest.approx(1 / 3, abs=1e-6)
    torch.testing.assert_close(IoULoss(average=False)(p, t), torch.tensor([0.0, 2 / 3]), atol=1e-6, rtol=0)
    # gradient of 1 - I/U w.r.t. p: -(t U - I (1 - t)) / U^2
    pp = torch.tensor([[0.2, 0.7, 0.4]], requires_grad=True)
    tt = torch.tensor([[1.0, 0.5, 0.0]])
    iou_loss(pp, tt, eps=0.0).backward()
    inter = (pp * tt).sum().detach()
    union = (pp + tt - pp * tt).sum().detach()
    torch.testing.assert_close(pp.grad, -(tt * union - inter * (1 - tt)) / union**2)


@cuda
def test_losses_on_cuda_match_cpu():
    v, f = load_obj_geometry(DATA / "sphere_642.obj")
    x = (v[None] * torch.tensor([[1.0], [0.8]])[..., None]).double()  # [2, V, 3]
    x = x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for mod in (LaplacianLoss(v, f), FlattenLoss(f), NormalConsistencyLoss(f), EdgeLengthLoss(f)):
        mod = mod.double()
        cpu = mod(x)
        xc = x.cuda().requires_grad_(True)
        gpu = mod.cuda()(xc)
        gpu.sum().backward()
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu)
        assert torch.isfinite(xc.grad).all()
    p = torch.rand(2, 8, 8)
    torch.testing.assert_close(iou_loss(p.cuda(), (p > 0.5).float().cuda()).cpu(), iou_loss(p, (p > 0.5).float()))
