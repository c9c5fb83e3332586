// CUDA backend of the soft rasterizer.
//
// Faces are binned into screen tiles on the device: every face writes one (mesh, tile) key
// per tile its grown bounding box touches, in face order, and a stable sort groups the keys
// so each bin keeps face order (no bin has a fixed capacity, nothing is ever dropped). One
// block shades one tile, one thread one pixel, visiting the bin's faces in order with the
// same per-pixel code as the CPU (rasterize.h). Backward walks the same bins, sums each
// face's gradient over a warp's pixels and adds it to the face with atomics.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <ATen/ATen.h>

#include "host.h"
#include "rasterize.h"

namespace softras {
namespace {

constexpr int kTile = 16;  // pixels per tile side on the GPU: one 16 x 16 block per tile

inline int64_t blocks_for(int64_t n, int64_t threads) { return (n + threads - 1) / threads; }

// Geometry and covered tile range of every face; counts[f] = tiles covered (0 for none).
template <typename T>
__global__ void setup_faces_kernel(const T* __restrict__ fv, const int64_t* __restrict__ mesh_of_face,
                                   RasterParams p, FaceGeom<T>* __restrict__ geom,
                                   int4* __restrict__ tiles, int64_t* __restrict__ counts) {
  const int64_t f = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (f >= p.num_faces) return;
  FaceGeom<T> g;
  face_setup(fv + 9 * f, T(p.grow), g);
  geom[f] = g;
  int64_t r0, r1, c0, c1;
  face_pixel_range(g, p.height, p.width, r0, r1, c0, c1);
  const bool empty = r0 > r1 || c0 > c1 || mesh_of_face[f] < 0;
  const int4 t = make_int4(int(r0 / p.tile), int(r1 / p.tile), int(c0 / p.tile), int(c1 / p.tile));
  tiles[f] = t;
  counts[f] = empty ? 0 : int64_t(t.y - t.x + 1) * (t.w - t.z + 1);
}

// Writes one (mesh, tile) key and the face index per covered tile, at the face's offset.
__global__ void fill_bins_kernel(const int4* __restrict__ tiles, const int64_t* __restrict__ counts,
                                 const int64_t* __restrict__ offsets,
                                 const int64_t* __restrict__ mesh_of_face, int64_t num_faces,
                                 int64_t ntx, int64_t ntiles, int64_t* __restrict__ keys,
                                 int32_t* __restrict__ faces) {
  const int64_t f = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (f >= num_faces || counts[f] == 0) return;
  const int4 t = tiles[f];
  int64_t o = offsets[f] - counts[f];  // offsets is the inclusive scan
  for (int ty = t.x; ty <= t.y; ++ty)
    for (int tx = t.z; tx <= t.w; ++tx, ++o) {
      keys[o] = mesh_of_face[f] * ntiles + ty * ntx + tx;
      faces[o] = int32_t(f);
    }
}

// Everything the shading kernels need: geometry and bins.
struct Bins {
  at::Tensor geom;           // [F * sizeof(FaceGeom<T>)] bytes
  at::Tensor faces;          // [E] int32: faces of all bins, bin after bin, face order inside
  at::Tensor start;          // [B * ntiles + 1] int64: bin k is faces[start[k] : start[k + 1]]
  at::Tensor faces_in_mesh;  // [B] int64
  int64_t ntx = 0, nty = 0;
};

template <typename T>
Bins build_bins(const at::Tensor& face_vertices, const at::Tensor& mesh_first_face, const RasterParams& p) {
  Bins bins;
  const auto opts = face_vertices.options();
  const auto lopts = opts.dtype(at::kLong);
  const int64_t F = p.num_faces, B = p.num_meshes;
  bins.ntx = (p.width + p.tile - 1) / p.tile;
  bins.nty = (p.height + p.tile - 1) / p.tile;
  const int64_t ntiles = bins.ntx * bins.nty;
  const auto ends = at::cat({mesh_first_face.slice(0, 1), at::full({1}, F, lopts)});
  bins.faces_in_mesh = ends - mesh_first_face;
  // mesh of each face: the last mesh whose first face is <= f (-1 before the first mesh)
  const auto mesh_of_face = at::searchsorted(mesh_first_face, at::arange(F, lopts), /*out_int32=*/false,
                                             /*right=*/true) - 1;
  bins.geom = at::empty({F * int64_t(sizeof(FaceGeom<T>))}, opts.dtype(at::kByte));
  auto tiles = at::empty({F * 4}, opts.dtype(at::kInt));
  auto counts = at::empty({F}, lopts);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  if (F > 0) {
    setup_faces_kernel<T><<<blocks_for(F, 256), 256, 0, stream>>>(
        face_vertices.data_ptr<T>(), mesh_of_face.data_ptr<int64_t>(), p,
        reinterpret_cast<FaceGeom<T>*>(bins.geom.data_ptr()), reinterpret_cast<int4*>(tiles.data_ptr()),
        counts.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  const auto offsets = at::cumsum(counts, 0);
  const int64_t E = F > 0 ? offsets[-1].item<int64_t>() : 0;
  auto keys = at::empty({E}, lopts);
  auto faces = at::empty({E}, opts.dtype(at::kInt));
  if (E > 0) {
    fill_bins_kernel<<<blocks_for(F, 256), 256, 0, stream>>>(
        reinterpret_cast<const int4*>(tiles.data_ptr()), counts.data_ptr<int64_t>(),
        offsets.data_ptr<int64_t>(), mesh_of_face.data_ptr<int64_t>(), F, bins.ntx, ntiles,
        keys.data_ptr<int64_t>(), faces.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  const auto sorted = at::sort(keys, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  bins.faces = faces.index_select(0, std::get<1>(sorted));
  bins.start = at::searchsorted(std::get<0>(sorted), at::arange(B * ntiles + 1, lopts));
  return bins;
}

template <typename T, DistFunc DF, TextureType TT>
__global__ void forward_kernel(const FaceGeom<T>* __restrict__ geom, const T* __restrict__ tex,
                               const int32_t* __restrict__ bin_faces, const int64_t* __restrict__ bin_start,
                               const int64_t* __restrict__ faces_in_mesh, int64_t ntx, RasterParams p,
                               T* __restrict__ rgba, T* __restrict__ depth, int64_t* __restrict__ index,
                               T* __restrict__ aux) {
  const int64_t ntiles = ntx * ((p.height + p.tile - 1) / p.tile);
  const int64_t bin = blockIdx.x, b = bin / ntiles, t = bin % ntiles;
  const int64_t r = (t / ntx) * p.tile + threadIdx.y, c = (t % ntx) * p.tile + threadIdx.x;
  if (r >= p.height || c >= p.width) return;
  const T px = pixel_x<T>(c, p.width), py = pixel_y<T>(r, p.height);
  const int64_t tstride = p.texture_size * 3;
  PixelAccum<T> acc;
  pixel_init(p, acc);
  for (int64_t k = bin_start[bin]; k < bin_start[bin + 1]; ++k) {
    const int64_t f = bin_faces[k];
    const FaceGeom<T>& g = geom[f];
    if (!in_box(g, px, py)) continue;  // as on the CPU, for every distance
    pixel_add_face<T, DF, TT>(g, tex + f * tstride, f, px, py, p, acc);
  }
  T out[4], px_aux[3], px_depth;
  const int64_t i = acc.idx;
  pixel_finish<T, TT>(acc, p, i >= 0 ? tex + i * tstride : tex, faces_in_mesh[b], i >= 0 ? &geom[i] : nullptr,
                      px, py, out, px_depth, px_aux);
  const int64_t HW = p.height * p.width, o = r * p.width + c;
  for (int k = 0; k < 4; ++k) rgba[(b * 4 + k) * HW + o] = out[k];
  for (int k = 0; k < 3; ++k) aux[(b * 3 + k) * HW + o] = px_aux[k];
  depth[b * HW + o] = px_depth;
  index[b * HW + o] = i;
}

// Sum of v over the 32 lanes of a warp, in every lane.
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// One block per bin, one thread per pixel, as the forward. Every thread of a block walks the
// same faces (no thread leaves early), so that the warps can first sum a face's gradient over
// their 32 pixels and add it with 9 atomics per warp instead of 9 per pixel. Texture
// gradients go to the texel each pixel hit, with one atomic per pixel.
template <typename T, DistFunc DF, TextureType TT>
__global__ void backward_kernel(const FaceGeom<T>* __restrict__ geom, const T* __restrict__ tex,
                                const int32_t* __restrict__ bin_faces, const int64_t* __restrict__ bin_start,
                                const int64_t* __restrict__ faces_in_mesh, int64_t ntx, RasterParams p,
                                const T* __restrict__ grad_rgba, const T* __restrict__ rgba,
                                const T* __restrict__ aux, const int64_t* __restrict__ index,
                                T* __restrict__ grad_fv, T* __restrict__ grad_tex) {
  const int64_t ntiles = ntx * ((p.height + p.tile - 1) / p.tile);
  const int64_t bin = blockIdx.x, b = bin / ntiles, t = bin % ntiles;
  const int64_t r = (t / ntx) * p.tile + threadIdx.y, c = (t % ntx) * p.tile + threadIdx.x;
  const bool lane0 = ((threadIdx.y * blockDim.x + threadIdx.x) & 31) == 0;
  const bool in_image = r < p.height && c < p.width;
  const T px = pixel_x<T>(c, p.width), py = pixel_y<T>(r, p.height);
  const int64_t HW = p.height * p.width, o = r * p.width + c, tstride = p.texture_size * 3;
  PixelGrad<T> pg;
  bool active = false;
  if (in_image) {
    for (int k = 0; k < 4; ++k) pg.grad[k] = grad_rgba[(b * 4 + k) * HW + o];
    active = pg.grad[0] != T(0) || pg.grad[1] != T(0) || pg.grad[2] != T(0) || pg.grad[3] != T(0);
  }
  if (active) {
    for (int k = 0; k < 3; ++k) pg.rgb[k] = rgba[(b * 4 + k) * HW + o];
    pg.keep = aux[(b * 3 + 0) * HW + o];
    pg.m = aux[(b * 3 + 1) * HW + o];
    pg.S = aux[(b * 3 + 2) * HW + o];
    pg.idx = index[b * HW + o];
  }
  const int64_t nf = faces_in_mesh[b];
  for (int64_t k = bin_start[bin]; k < bin_start[bin + 1]; ++k) {  // the same range for the block
    const int64_t f = bin_faces[k];
    T out[9] = {};
    bool hit = false;
    if (active) {
      T* gt = grad_tex ? grad_tex + f * tstride : nullptr;
      hit = pair_backward<T, DF, TT>(geom[f], tex + f * tstride, f, nf, px, py, pg, p, out,
                                     [gt](int64_t row, int k, T v) {
                                       if (gt) atomicAdd(gt + 3 * row + k, v);
                                     });
    }
    if (__ballot_sync(0xffffffffu, hit) == 0u) continue;  // no pixel of this warp touches f
    for (int j = 0; j < 9; ++j) {
      const T v = warp_sum(out[j]);
      if (lane0 && v != T(0)) atomicAdd(grad_fv + 9 * f + j, v);
    }
  }
}

}  // namespace

std::vector<at::Tensor> forward_cuda(const at::Tensor& face_vertices_, const at::Tensor& textures_,
                                     const at::Tensor& mesh_first_face_, const RasterParams& params) {
  check_inputs(face_vertices_, textures_, mesh_first_face_, params, at::kCUDA);
  const c10::cuda::OptionalCUDAGuard guard(face_vertices_.device());
  const auto face_vertices = face_vertices_.contiguous();
  const auto textures = textures_.contiguous();
  const auto first = mesh_first_face_.contiguous();
  RasterParams p = params;
  p.tile = kTile;
  ForwardOutputs out(face_vertices, p);
  if (p.num_meshes == 0) return out.list();
  AT_DISPATCH_FLOATING_TYPES(face_vertices.scalar_type(), "soft_rasterize_forward_cuda", [&] {
    const Bins bins = build_bins<scalar_t>(face_vertices, first, p);
    const int64_t nbins = p.num_meshes * bins.ntx * bins.nty;
    if (nbins == 0) return;
    const dim3 threads(kTile, kTile);
    const auto stream = c10::cuda::getCurrentCUDAStream();
    with_modes(p, [&](auto dist, auto texture) {
      forward_kernel<scalar_t, decltype(dist)::value, decltype(texture)::value>
          <<<nbins, threads, 0, stream>>>(
              reinterpret_cast<const FaceGeom<scalar_t>*>(bins.geom.data_ptr()), textures.data_ptr<scalar_t>(),
              bins.faces.data_ptr<int32_t>(), bins.start.data_ptr<int64_t>(),
              bins.faces_in_mesh.data_ptr<int64_t>(), bins.ntx, p, out.rgba.data_ptr<scalar_t>(),
              out.depth.data_ptr<scalar_t>(), out.index.data_ptr<int64_t>(), out.aux.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out.list();
}

std::vector<at::Tensor> backward_cuda(const at::Tensor& grad_rgba, const at::Tensor& face_vertices_,
                                      const at::Tensor& textures_, const at::Tensor& mesh_first_face_,
                                      const at::Tensor& rgba, const at::Tensor& aux, const at::Tensor& index,
                                      const RasterParams& params, bool texture_grad) {
  check_inputs(face_vertices_, textures_, mesh_first_face_, params, at::kCUDA, /*check_first_values=*/false);
  // gradients are summed with atomics: their rounding depends on the order of the additions
  at::globalContext().alertNotDeterministic("soft_rasterize backward (CUDA)");
  const c10::cuda::OptionalCUDAGuard guard(face_vertices_.device());
  const auto face_vertices = face_vertices_.contiguous();
  const auto textures = textures_.contiguous();
  const auto first = mesh_first_face_.contiguous();
  const auto grad = grad_rgba.contiguous().to(face_vertices.scalar_type());
  const auto rgba_c = rgba.contiguous(), aux_c = aux.contiguous(), index_c = index.contiguous();
  RasterParams p = params;
  p.tile = kTile;
  auto grad_fv = at::zeros_like(face_vertices);
  // texture gradients only when asked for (an undefined tensor otherwise)
  auto grad_tex = texture_grad ? at::zeros_like(textures) : at::Tensor();
  if (p.num_meshes == 0) return {grad_fv, grad_tex};
  AT_DISPATCH_FLOATING_TYPES(face_vertices.scalar_type(), "soft_rasterize_backward_cuda", [&] {
    const Bins bins = build_bins<scalar_t>(face_vertices, first, p);
    const int64_t nbins = p.num_meshes * bins.ntx * bins.nty;
    if (nbins == 0) return;
    const dim3 threads(kTile, kTile);
    const auto stream = c10::cuda::getCurrentCUDAStream();
    with_modes(p, [&](auto dist, auto texture) {
      backward_kernel<scalar_t, decltype(dist)::value, decltype(texture)::value>
          <<<nbins, threads, 0, stream>>>(
              reinterpret_cast<const FaceGeom<scalar_t>*>(bins.geom.data_ptr()), textures.data_ptr<scalar_t>(),
              bins.faces.data_ptr<int32_t>(), bins.start.data_ptr<int64_t>(),
              bins.faces_in_mesh.data_ptr<int64_t>(), bins.ntx, p, grad.data_ptr<scalar_t>(),
              rgba_c.data_ptr<scalar_t>(), aux_c.data_ptr<scalar_t>(), index_c.data_ptr<int64_t>(),
              grad_fv.data_ptr<scalar_t>(), grad_tex.defined() ? grad_tex.data_ptr<scalar_t>() : nullptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {grad_fv, grad_tex};
}

}  // namespace softras
