// CPU backend of the soft rasterizer.
//
// Forward: faces are binned into screen tiles (counting sort, so each bin keeps face order);
// every pixel then visits only the faces of its tile, in face order. Backward: every face
// visits the pixels of its grown bounding box and accumulates its own gradient, so there are
// no races and the result does not depend on the thread count. Work is handed out
// dynamically over torch's intra-op thread pool.
#include <ATen/Parallel.h>
#include <ATen/ATen.h>

#include <atomic>
#include <vector>

#include "host.h"
#include "rasterize.h"

namespace softras {
namespace {

// Runs body(i) for i in [0, n) on torch's threads, `chunk` indices at a time, handed out
// dynamically; serially when the whole job is small (`work` below ~1e5 inner steps), where
// waking threads would cost more than it saves. body must only write to memory that
// belongs to i.
template <typename Body>
void parallel_dynamic(int64_t n, int64_t chunk, int64_t work, const Body& body) {
  std::atomic<int64_t> next{0};
  const int64_t workers = work < 100000 ? 1 : std::min<int64_t>(at::get_num_threads(), (n + chunk - 1) / chunk);
  if (workers <= 1) {
    for (int64_t i = 0; i < n; ++i) body(i);
    return;
  }
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (int64_t s = next.fetch_add(chunk); s < n; s = next.fetch_add(chunk))
      for (int64_t i = s; i < std::min(n, s + chunk); ++i) body(i);
  });
}

// Mesh of every packed face, and the face range of every mesh.
struct MeshRanges {
  std::vector<int64_t> begin, end;  // [B]
  std::vector<int32_t> mesh_of_face;  // [F]

  MeshRanges(const at::Tensor& first, int64_t F) {
    const auto a = first.accessor<int64_t, 1>();
    const int64_t B = first.size(0);
    begin.resize(B);
    end.resize(B);
    mesh_of_face.assign(F, -1);
    for (int64_t b = 0; b < B; ++b) {
      begin[b] = a[b];
      end[b] = b + 1 < B ? a[b + 1] : F;
      TORCH_CHECK_VALUE(0 <= begin[b] && begin[b] <= end[b] && end[b] <= F,
                        "mesh_first_face: expected non-decreasing values in [0, ", F, "], got ",
                        first);
      for (int64_t f = begin[b]; f < end[b]; ++f) mesh_of_face[f] = int32_t(b);
    }
  }
};

template <typename T>
std::vector<FaceGeom<T>> setup_faces(const at::Tensor& face_vertices, const RasterParams& p) {
  const int64_t F = face_vertices.size(0);
  std::vector<FaceGeom<T>> geom(F);
  const T* fv = face_vertices.data_ptr<T>();
  at::parallel_for(0, F, 2048, [&](int64_t s, int64_t e) {
    for (int64_t f = s; f < e; ++f) face_setup(fv + 9 * f, T(p.grow), geom[f]);
  });
  return geom;
}

// Faces of every (mesh, tile) bin, in face order.
struct TileBins {
  int64_t ntx, nty;              // tiles along x and y
  std::vector<int64_t> start;    // [B * ntx * nty + 1]: bin k holds faces[start[k] : start[k+1]]
  std::vector<int32_t> faces;
  std::vector<int32_t> pixel_range;  // [F * 4]: r0, r1, c0, c1 of each face (empty: r0 > r1)
};

template <typename T>
TileBins bin_faces(const std::vector<FaceGeom<T>>& geom, const MeshRanges& meshes,
                   const RasterParams& p) {
  TileBins bins;
  const int64_t ts = p.tile, F = int64_t(geom.size()), B = p.num_meshes;
  bins.ntx = (p.width + ts - 1) / ts;
  bins.nty = (p.height + ts - 1) / ts;
  const int64_t ntiles = bins.ntx * bins.nty;
  std::vector<int32_t> range(4 * F);  // tile range per face: ty0, ty1, tx0, tx1 (empty: ty0 > ty1)
  bins.pixel_range.resize(4 * F);
  at::parallel_for(0, F, 2048, [&](int64_t s, int64_t e) {
    for (int64_t f = s; f < e; ++f) {
      int64_t r0, r1, c0, c1;
      face_pixel_range(geom[f], p.height, p.width, r0, r1, c0, c1);
      const bool empty = r0 > r1 || c0 > c1;
      int32_t* pr = bins.pixel_range.data() + 4 * f;
      pr[0] = empty ? 1 : int32_t(r0);
      pr[1] = empty ? 0 : int32_t(r1);
      pr[2] = int32_t(c0);
      pr[3] = int32_t(c1);
      range[4 * f + 0] = empty ? 1 : int32_t(r0 / ts);
      range[4 * f + 1] = empty ? 0 : int32_t(r1 / ts);
      range[4 * f + 2] = int32_t(c0 / ts);
      range[4 * f + 3] = int32_t(c1 / ts);
    }
  });
  std::vector<int64_t> count(B * ntiles + 1, 0);
  auto for_each_tile = [&](int64_t f, auto&& fn) {
    for (int32_t ty = range[4 * f]; ty <= range[4 * f + 1]; ++ty)
      for (int32_t tx = range[4 * f + 2]; tx <= range[4 * f + 3]; ++tx) fn(ty * bins.ntx + tx);
  };
  parallel_dynamic(B, 1, F, [&](int64_t b) {
    int64_t* c = count.data() + b * ntiles;
    for (int64_t f = meshes.begin[b]; f < meshes.end[b]; ++f) for_each_tile(f, [&](int64_t t) { ++c[t]; });
  });
  bins.start.assign(B * ntiles + 1, 0);
  for (int64_t k = 0; k < B * ntiles; ++k) bins.start[k + 1] = bins.start[k] + count[k];
  bins.faces.resize(bins.start.back());
  parallel_dynamic(B, 1, F, [&](int64_t b) {
    int64_t* cursor = count.data() + b * ntiles;
    std::copy(bins.start.begin() + b * ntiles, bins.start.begin() + (b + 1) * ntiles, cursor);
    for (int64_t f = meshes.begin[b]; f < meshes.end[b]; ++f)
      for_each_tile(f, [&](int64_t t) { bins.faces[cursor[t]++] = int32_t(f); });
  });
  return bins;
}

template <typename T, DistFunc DF, TextureType TT>
void forward_impl(const at::Tensor& face_vertices, const at::Tensor& textures,
                  const MeshRanges& meshes, const RasterParams& p, ForwardOutputs& out) {
  const auto geom = setup_faces<T>(face_vertices, p);
  const TileBins bins = bin_faces(geom, meshes, p);
  const T* tex = textures.data_ptr<T>();
  const int64_t H = p.height, W = p.width, HW = H * W, ts = p.tile;
  const int64_t ntiles = bins.ntx * bins.nty, tstride = p.texture_size * 3;
  T* rgba = out.rgba.data_ptr<T>();
  T* depth = out.depth.data_ptr<T>();
  int64_t* index = out.index.data_ptr<int64_t>();
  T* aux = out.aux.data_ptr<T>();
  // One tile at a time: the faces of its bin, in order, each visiting only the tile's
  // pixels inside its box; the tile's accumulators stay in cache.
  const int64_t work = p.num_meshes * HW + int64_t(bins.faces.size()) * ts * ts / 4;
  parallel_dynamic(p.num_meshes * ntiles, 1, work, [&](int64_t bin) {
    const int64_t b = bin / ntiles, t = bin % ntiles;
    const int64_t R0 = (t / bins.ntx) * ts, C0 = (t % bins.ntx) * ts;
    const int64_t R1 = std::min(H, R0 + ts) - 1, C1 = std::min(W, C0 + ts) - 1;
    std::vector<PixelAccum<T>> acc((R1 - R0 + 1) * ts);
    for (auto& a : acc) pixel_init(p, a);
    for (int64_t k = bins.start[bin]; k < bins.start[bin + 1]; ++k) {
      const int64_t f = bins.faces[k];
      const FaceGeom<T>& g = geom[f];
      const int32_t* rng = bins.pixel_range.data() + 4 * f;
      const int64_t r1 = std::min<int64_t>(R1, rng[1]), c0 = std::max<int64_t>(C0, rng[2]),
                    c1 = std::min<int64_t>(C1, rng[3]);
      for (int64_t r = std::max<int64_t>(R0, rng[0]); r <= r1; ++r) {
        const T py = pixel_y<T>(r, H);
        PixelAccum<T>* row = acc.data() + (r - R0) * ts - C0;
        for (int64_t c = c0; c <= c1; ++c) {
          const T px = pixel_x<T>(c, W);
          if (!in_box(g, px, py)) continue;
          pixel_add_face<T, DF, TT>(g, tex + f * tstride, f, px, py, p, row[c]);
        }
      }
    }
    const int64_t faces_in_mesh = meshes.end[b] - meshes.begin[b];
    for (int64_t r = R0; r <= R1; ++r) {
      const T py = pixel_y<T>(r, H);
      for (int64_t c = C0; c <= C1; ++c) {
        const T px = pixel_x<T>(c, W);
        const PixelAccum<T>& a = acc[(r - R0) * ts + (c - C0)];
        T px_rgba[4], px_aux[3], px_depth;
        const int64_t i = a.idx;
        pixel_finish<T, TT>(a, p, i >= 0 ? tex + i * tstride : tex, faces_in_mesh,
                            i >= 0 ? &geom[i] : nullptr, px, py, px_rgba, px_depth, px_aux);
        const int64_t o = r * W + c;
        for (int k = 0; k < 4; ++k) rgba[(b * 4 + k) * HW + o] = px_rgba[k];
        for (int k = 0; k < 3; ++k) aux[(b * 3 + k) * HW + o] = px_aux[k];
        depth[b * HW + o] = px_depth;
        index[b * HW + o] = i;
      }
    }
  });
}

template <typename T, DistFunc DF, TextureType TT>
void backward_impl(const at::Tensor& grad_rgba, const at::Tensor& face_vertices,
                   const at::Tensor& textures, const MeshRanges& meshes, const at::Tensor& rgba_,
                   const at::Tensor& aux_, const at::Tensor& index_, const RasterParams& p,
                   at::Tensor& grad_fv, at::Tensor& grad_tex) {
  const auto geom = setup_faces<T>(face_vertices, p);
  const int64_t H = p.height, W = p.width, HW = H * W, F = face_vertices.size(0);
  // gather what each pixel knows into one record, so a pair reads one cache line
  std::vector<PixelGrad<T>> pix(p.num_meshes * HW);
  {
    const T* go = grad_rgba.data_ptr<T>();
    const T* rgba = rgba_.data_ptr<T>();
    const T* aux = aux_.data_ptr<T>();
    const int64_t* index = index_.data_ptr<int64_t>();
    at::parallel_for(0, p.num_meshes * HW, 4096, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) {
        const int64_t b = i / HW, o = i % HW;
        PixelGrad<T>& pg = pix[i];
        for (int k = 0; k < 4; ++k) pg.grad[k] = go[(b * 4 + k) * HW + o];
        for (int k = 0; k < 3; ++k) pg.rgb[k] = rgba[(b * 4 + k) * HW + o];
        pg.keep = aux[(b * 3 + 0) * HW + o];
        pg.m = aux[(b * 3 + 1) * HW + o];
        pg.S = aux[(b * 3 + 2) * HW + o];
        pg.idx = index[i];
      }
    });
  }
  const T* tex = textures.data_ptr<T>();
  T* gfv = grad_fv.data_ptr<T>();
  T* gtex = grad_tex.defined() ? grad_tex.data_ptr<T>() : nullptr;
  const int64_t tstride = p.texture_size * 3;
  parallel_dynamic(F, 64, p.num_meshes * HW + 16 * F, [&](int64_t f) {
    const int64_t b = meshes.mesh_of_face[f];
    if (b < 0) return;
    const FaceGeom<T>& g = geom[f];
    int64_t r0, r1, c0, c1;
    face_pixel_range(g, H, W, r0, r1, c0, c1);
    const int64_t faces_in_mesh = meshes.end[b] - meshes.begin[b];
    T acc[9] = {};
    T* gt = gtex ? gtex + f * tstride : nullptr;
    auto add_tex = [gt](int64_t row, int k, T v) {
      if (gt) gt[3 * row + k] += v;
    };
    for (int64_t r = r0; r <= r1; ++r) {
      const T py = pixel_y<T>(r, H);
      const PixelGrad<T>* row = pix.data() + b * HW + r * W;
      for (int64_t c = c0; c <= c1; ++c) {
        const T px = pixel_x<T>(c, W);
        // the same skip pair_backward makes, taken here so the hot loop calls it only for
        // pixels inside the face's grown box
        if (!in_box(g, px, py) && row[c].idx != f) continue;
        pair_backward<T, DF, TT>(g, tex + f * tstride, f, faces_in_mesh, px, py, row[c], p, acc,
                                 add_tex);
      }
    }
    for (int k = 0; k < 9; ++k) gfv[9 * f + k] = acc[k];
  });
}

}  // namespace

std::vector<at::Tensor> forward_cpu(const at::Tensor& face_vertices_, const at::Tensor& textures_,
                                    const at::Tensor& mesh_first_face_, const RasterParams& p) {
  check_inputs(face_vertices_, textures_, mesh_first_face_, p, at::kCPU);
  const auto face_vertices = face_vertices_.contiguous();
  const auto textures = textures_.contiguous();
  const MeshRanges meshes(mesh_first_face_.contiguous(), face_vertices.size(0));
  ForwardOutputs out(face_vertices, p);
  AT_DISPATCH_FLOATING_TYPES(face_vertices.scalar_type(), "soft_rasterize_forward_cpu", [&] {
    with_modes(p, [&](auto dist, auto texture) {
      forward_impl<scalar_t, decltype(dist)::value, decltype(texture)::value>(
          face_vertices, textures, meshes, p, out);
    });
  });
  return out.list();
}

std::vector<at::Tensor> backward_cpu(const at::Tensor& grad_rgba, const at::Tensor& face_vertices_,
                                     const at::Tensor& textures_, const at::Tensor& mesh_first_face_,
                                     const at::Tensor& rgba, const at::Tensor& aux,
                                     const at::Tensor& index, const RasterParams& p, bool texture_grad) {
  check_inputs(face_vertices_, textures_, mesh_first_face_, p, at::kCPU);
  const auto face_vertices = face_vertices_.contiguous();
  const auto textures = textures_.contiguous();
  const MeshRanges meshes(mesh_first_face_.contiguous(), face_vertices.size(0));
  const auto rgba_c = rgba.contiguous(), aux_c = aux.contiguous(), index_c = index.contiguous();
  const auto grad = grad_rgba.contiguous().to(face_vertices.scalar_type());
  auto grad_fv = at::zeros_like(face_vertices);
  // texture gradients only when asked for (an undefined tensor otherwise)
  auto grad_tex = texture_grad ? at::zeros_like(textures) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(face_vertices.scalar_type(), "soft_rasterize_backward_cpu", [&] {
    with_modes(p, [&](auto dist, auto texture) {
      backward_impl<scalar_t, decltype(dist)::value, decltype(texture)::value>(
          grad, face_vertices, textures, meshes, rgba_c, aux_c, index_c, p, grad_fv, grad_tex);
    });
  });
  return {grad_fv, grad_tex};
}

}  // namespace softras
