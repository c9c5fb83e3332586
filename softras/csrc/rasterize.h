// The per-face and per-pixel math of the soft rasterizer, written once for the CPU (.cpp)
// and the GPU (.cu). The two files only differ in how they launch work and accumulate
// gradients. Notation follows docs: the math page, sections 2 to 4; the pure-PyTorch
// reference (softras/functional/_torch_impl.py) evaluates the very same expressions.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define SR_HD __host__ __device__ __forceinline__
#else
#define SR_HD inline
#endif

namespace softras {

enum class DistFunc : int { Hard = 0, Barycentric = 1, Euclidean = 2 };
enum class AggrRGB : int { Hard = 0, Softmax = 1 };
enum class AggrAlpha : int { Hard = 0, Sum = 1, Prod = 2 };
enum class TextureType : int { Surface = 0, Vertex = 1 };

constexpr double kDetMin = 1e-10;   // smallest |det| of the barycentric system (sign kept)
constexpr double kZMin = 1e-10;     // smallest |z| of a vertex before taking 1/z (sign kept)
constexpr double kWSumMin = 1e-5;   // smallest sum of clipped barycentrics

// Everything the rasterizer needs besides the tensors; filled once on the host.
struct RasterParams {
  int64_t num_meshes = 0;       // B: images in the batch, one mesh each
  int64_t num_faces = 0;        // F_total: faces of all meshes, packed
  int64_t height = 0;           // H: image rows
  int64_t width = 0;            // W: image columns
  int64_t texture_size = 1;     // T: texels per face (R*R) or 3 vertex colours
  int64_t texture_res = 1;      // R: sub-triangles per edge of a surface texture
  int64_t tile = 8;             // side of a square screen tile, in pixels, for binning
  DistFunc dist_func = DistFunc::Euclidean;   // how a pixel's distance to a face is measured
  AggrRGB aggr_rgb = AggrRGB::Softmax;        // how face colours are aggregated
  AggrAlpha aggr_alpha = AggrAlpha::Prod;     // how face probabilities are aggregated
  TextureType texture_type = TextureType::Surface;  // texel atlas or vertex colours
  bool fill_back = true;        // double sided: no facing test
  double near = 1.0;            // nearest depth that takes part in colour
  double far = 100.0;           // farthest depth that takes part in colour
  double eps = 1e-3;            // background logit times gamma
  double sigma = 1e-5;          // sharpness of the probability maps
  double gamma = 1e-4;          // temperature of the depth softmax
  double threshold = 0.0;       // T = sigma * ln(1/dist_eps - 1): outside, D <= dist_eps iff d2 >= T
  double grow = 0.0;            // sqrt(T) (0 for the hard distance): how far bounding boxes grow
  double background[3] = {0.0, 0.0, 0.0};  // background colour
};

// ---------------------------------------------------------------------------------------
// small helpers

template <typename T>
SR_HD T keep_sign_clamp(T v, T vmin) {
  return (v < vmin && v > -vmin) ? (v < T(0) ? -vmin : vmin) : v;
}

// exp and floor without promoting float to double on the host
SR_HD float sr_exp(float x) { return expf(x); }
SR_HD double sr_exp(double x) { return exp(x); }
SR_HD float sr_floor(float x) { return floorf(x); }
SR_HD double sr_floor(double x) { return floor(x); }

template <typename T>
SR_HD T sr_min(T a, T b) { return a < b ? a : b; }
template <typename T>
SR_HD T sr_max(T a, T b) { return a > b ? a : b; }

// sigmoid(a) and 1 - sigmoid(a), both accurate, from one exponential.
template <typename T>
SR_HD void sigmoid_pair(T a, T& s, T& one_minus_s) {
  const T e = sr_exp(-(a < T(0) ? -a : a));
  const T r = T(1) / (T(1) + e);
  if (a >= T(0)) { s = r; one_minus_s = e * r; }
  else { s = e * r; one_minus_s = r; }
}

// NDC centre of pixel (row, col): row 0 is the top (+y).
template <typename T>
SR_HD T pixel_x(int64_t col, int64_t W) { return T(2 * col + 1 - W) / T(W); }
template <typename T>
SR_HD T pixel_y(int64_t row, int64_t H) { return T(2 * (H - 1 - row) + 1 - H) / T(H); }

// ---------------------------------------------------------------------------------------
// per face

template <typename T>
struct FaceGeom {
  T x[3], y[3];          // NDC positions of the vertices
  T z[3];                // depths, |z| >= kZMin
  T zinv[3];             // 1 / z
  bool z_clamped[3];     // whether z was raised to kZMin (no gradient then)
  T det;                 // determinant of the barycentric system, |det| >= kDetMin
  T inv_det;             // 1 / det
  T inv_len2[3];         // 1 / squared length of edge (i, i+1), 0 for a zero-length edge
  T height2[3];          // det^2 / squared length of edge (i, i+1): squared height over it
  bool det_clamped;      // degenerate face: det was raised to kDetMin; w carries no gradient
  T xmin, xmax, ymin, ymax;  // bounding box grown by `grow`
  bool front;            // clockwise on screen
};

// fv: 9 values, vertex-major (x, y, z) * 3.
template <typename T>
SR_HD void face_setup(const T* fv, T grow, FaceGeom<T>& g) {
  for (int i = 0; i < 3; ++i) {
    g.x[i] = fv[3 * i];
    g.y[i] = fv[3 * i + 1];
    const T z = fv[3 * i + 2];
    g.z[i] = keep_sign_clamp(z, T(kZMin));
    g.z_clamped[i] = g.z[i] != z;
    g.zinv[i] = T(1) / g.z[i];
  }
  const T det = (g.y[1] - g.y[2]) * (g.x[0] - g.x[2]) + (g.x[2] - g.x[1]) * (g.y[0] - g.y[2]);
  g.det = keep_sign_clamp(det, T(kDetMin));
  g.det_clamped = g.det != det;
  g.inv_det = T(1) / g.det;
  for (int i = 0; i < 3; ++i) {
    const int j = i == 2 ? 0 : i + 1;
    const T ex = g.x[j] - g.x[i], ey = g.y[j] - g.y[i];
    const T len2 = ex * ex + ey * ey;
    g.inv_len2[i] = len2 > T(0) ? T(1) / len2 : T(0);
    g.height2[i] = g.det * g.det * g.inv_len2[i];
  }
  g.xmin = sr_min(sr_min(g.x[0], g.x[1]), g.x[2]) - grow;
  g.xmax = sr_max(sr_max(g.x[0], g.x[1]), g.x[2]) + grow;
  g.ymin = sr_min(sr_min(g.y[0], g.y[1]), g.y[2]) - grow;
  g.ymax = sr_max(sr_max(g.y[0], g.y[1]), g.y[2]) + grow;
  g.front = ((g.x[1] - g.x[0]) * (g.y[2] - g.y[0]) - (g.y[1] - g.y[0]) * (g.x[2] - g.x[0])) < T(0);
}

template <typename T>
SR_HD bool in_box(const FaceGeom<T>& g, T px, T py) {
  return px >= g.xmin && px <= g.xmax && py >= g.ymin && py <= g.ymax;
}

// Inclusive pixel ranges whose centres lie inside the grown box (padded by 1e-3 pixel
// against rounding; the exact test is in_box). Empty when c0 > c1 or r0 > r1.
template <typename T>
SR_HD void face_pixel_range(const FaceGeom<T>& g, int64_t H, int64_t W, int64_t& r0, int64_t& r1,
                            int64_t& c0, int64_t& c1) {
  // clamp in floating point first so that far-away coordinates never overflow an integer
  const double fw = double(W), fh = double(H);
  const double pad = 1e-3;
  const double cmin = sr_max(-2.0, sr_min(fw + 1.0, ceil((double(g.xmin) * fw + fw - 1.0) * 0.5 - pad)));
  const double cmax = sr_max(-2.0, sr_min(fw + 1.0, floor((double(g.xmax) * fw + fw - 1.0) * 0.5 + pad)));
  const double rmin = sr_max(-2.0, sr_min(fh + 1.0, ceil((fh - 1.0 - double(g.ymax) * fh) * 0.5 - pad)));
  const double rmax = sr_max(-2.0, sr_min(fh + 1.0, floor((fh - 1.0 - double(g.ymin) * fh) * 0.5 + pad)));
  c0 = sr_max<int64_t>(0, int64_t(cmin));
  c1 = sr_min<int64_t>(W - 1, int64_t(cmax));
  r0 = sr_max<int64_t>(0, int64_t(rmin));
  r1 = sr_min<int64_t>(H - 1, int64_t(rmax));
}

// ---------------------------------------------------------------------------------------
// per face, per pixel

template <typename T>
struct Fragment {
  T w[3];             // barycentric coordinates (unclipped)
  T wc[3];            // clipped to [0, 1] and renormalised
  T wsum;             // sum of the clipped coordinates, before the kWSumMin floor
  bool inside;        // strictly inside (all w > 0)
  bool covered;       // inside or on the boundary (all w in [0, 1])
  bool valid;         // takes part in the probability aggregation (not culled)
  T arg;              // D = sigmoid(arg)
  T D, one_minus_D;   // probability and its complement
  int edge;           // euclidean: closest edge (i, i+1); barycentric: index of min w
  T t;                // euclidean: closest-point parameter on that edge (held fixed)
  T zp;               // perspective-correct depth (inf when undefined)
  bool in_range;      // near <= zp <= far and facing (unless double sided)
};

template <typename T>
SR_HD void barycentric(const FaceGeom<T>& g, T px, T py, T w[3]) {
  w[0] = ((g.y[1] - g.y[2]) * (px - g.x[2]) + (g.x[2] - g.x[1]) * (py - g.y[2])) * g.inv_det;
  w[1] = ((g.y[2] - g.y[0]) * (px - g.x[2]) + (g.x[0] - g.x[2]) * (py - g.y[2])) * g.inv_det;
  w[2] = T(1) - w[0] - w[1];
}

// Squared distance from p to edge i of the face and the clamped closest-point parameter.
template <typename T>
SR_HD T edge_dist2(const FaceGeom<T>& g, int i, T px, T py, T& t) {
  const int j = i == 2 ? 0 : i + 1;
  const T ex = g.x[j] - g.x[i], ey = g.y[j] - g.y[i];
  t = ((px - g.x[i]) * ex + (py - g.y[i]) * ey) * g.inv_len2[i];
  t = sr_min(sr_max(t, T(0)), T(1));
  const T dx = px - (g.x[i] + t * ex), dy = py - (g.y[i] + t * ey);
  return dx * dx + dy * dy;
}

// Fills w, inside, covered, valid, arg, D (everything but the depth).
template <typename T, DistFunc DF>
SR_HD void fragment_coverage(const FaceGeom<T>& g, T px, T py, const RasterParams& p, Fragment<T>& f) {
  barycentric(g, px, py, f.w);
  // a degenerate face has no interior: it covers nothing
  f.inside = !g.det_clamped && f.w[0] > T(0) && f.w[1] > T(0) && f.w[2] > T(0);
  f.covered = !g.det_clamped && f.w[0] >= T(0) && f.w[0] <= T(1) && f.w[1] >= T(0) &&
              f.w[1] <= T(1) && f.w[2] >= T(0) && f.w[2] <= T(1);
  f.edge = 0;
  f.t = T(0);
  if (DF == DistFunc::Hard) {  // D = 1 on the closed triangle: shared edges leave no crack
    f.valid = f.covered;
    f.arg = T(0);
    f.D = T(1);
    f.one_minus_D = T(0);
    return;
  }
  T d2;
  if (DF == DistFunc::Euclidean) {
    // Edge e = (e, e+1) lies opposite vertex o(e) = e+2, at distance |w_o| * height(e) from the
    // pixel's line. Inside, the nearest boundary point is the foot of the nearest such
    // perpendicular (it always lies on its segment). Outside a convex triangle it lies on a
    // segment whose line has the pixel on its outer side (w_o <= 0), so only those are measured.
    if (f.inside) {
      d2 = f.w[2] * f.w[2] * g.height2[0];
      const T d1 = f.w[0] * f.w[0] * g.height2[1];
      if (d1 < d2) { d2 = d1; f.edge = 1; }
      const T d2_ = f.w[1] * f.w[1] * g.height2[2];
      if (d2_ < d2) { d2 = d2_; f.edge = 2; }
      edge_dist2(g, f.edge, px, py, f.t);  // the foot's parameter, for the gradient
    } else if (g.det_clamped) {  // degenerate: no usable barycentrics, measure all three
      T t;
      d2 = edge_dist2(g, 0, px, py, f.t);
      const T d12 = edge_dist2(g, 1, px, py, t);
      if (d12 < d2) { d2 = d12; f.edge = 1; f.t = t; }
      const T d20 = edge_dist2(g, 2, px, py, t);
      if (d20 < d2) { d2 = d20; f.edge = 2; f.t = t; }
    } else {
      d2 = T(INFINITY);
      for (int e = 0; e < 3; ++e) {
        if (f.w[e == 0 ? 2 : e - 1] > T(0)) continue;  // pixel on the inner side of edge e
        T t;
        const T de = edge_dist2(g, e, px, py, t);
        if (de < d2) { d2 = de; f.edge = e; f.t = t; }
      }
    }
    f.arg = (f.inside ? d2 : -d2) / T(p.sigma);
  } else {  // Barycentric
    T m = f.w[0];
    if (f.w[1] < m) { m = f.w[1]; f.edge = 1; }
    if (f.w[2] < m) { m = f.w[2]; f.edge = 2; }
    d2 = m * m;
    f.arg = m * (m < T(0) ? -m : m) / T(p.sigma);
  }
  f.valid = in_box(g, px, py) && (f.inside || d2 < T(p.threshold));
  if (!f.valid) f.arg = T(0);
  sigmoid_pair(f.arg, f.D, f.one_minus_D);
}

// Fills wc, wsum, zp and in_range.
template <typename T>
SR_HD void fragment_depth(const FaceGeom<T>& g, const RasterParams& p, Fragment<T>& f) {
  T s = T(0);
  for (int i = 0; i < 3; ++i) {
    f.wc[i] = sr_min(sr_max(f.w[i], T(0)), T(1));
    s += f.wc[i];
  }
  f.wsum = s;
  s = sr_max(s, T(kWSumMin));
  T u = T(0);
  for (int i = 0; i < 3; ++i) {
    f.wc[i] = f.wc[i] / s;
    u += f.wc[i] * g.zinv[i];
  }
  f.zp = u != T(0) ? T(1) / u : T(INFINITY);
  f.in_range = f.zp >= T(p.near) && f.zp <= T(p.far) && (p.fill_back || g.front);
}

// Texel of a surface texture hit at clipped barycentrics wc: sub-triangle (a, b) of the
// R x R grid, lower half when its fractional sum is <= 1. Cells on the face's outer
// diagonal (a + b = R - 1) only have their lower half inside the face, so they always take
// it; this also keeps pixels whose clipped coordinates lie on that edge away from the
// rounding-sensitive test (the original could pick a mirrored texel there).
template <typename T>
SR_HD int64_t texel_index(const T wc[3], int64_t R) {
  T a = sr_floor(wc[0] * T(R)), b = sr_floor(wc[1] * T(R));
  a = sr_min(sr_max(a, T(0)), T(R - 1));
  b = sr_min(sr_max(b, T(0)), T(R - 1 - a));
  const bool lower = a + b == T(R - 1) || (wc[0] + wc[1]) * T(R) - a - b <= T(1);
  const int64_t ia = int64_t(a), ib = int64_t(b);
  return lower ? ib * R + ia : (R - 1 - ib) * R + (R - 1 - ia);
}

// Colour of face `tex` ([T, 3]) at a fragment.
template <typename T, TextureType TT>
SR_HD void fragment_colour(const T* tex, const Fragment<T>& f, int64_t R, T c[3]) {
  if (TT == TextureType::Surface) {
    const T* texel = tex + 3 * texel_index(f.wc, R);
    c[0] = texel[0]; c[1] = texel[1]; c[2] = texel[2];
  } else {
    for (int k = 0; k < 3; ++k)
      c[k] = f.wc[0] * tex[k] + f.wc[1] * tex[3 + k] + f.wc[2] * tex[6 + k];
  }
}

// ---------------------------------------------------------------------------------------
// per pixel: running aggregation over faces, in face order

template <typename T>
struct PixelAccum {
  T keep;          // prod: product of (1 - D_j)
  T dsum;          // sum: sum of D_j
  bool any_half;   // hard: some D_j > 0.5
  T m;             // softmax: running maximum logit (times gamma), at least eps
  T S;             // softmax: sum of weights relative to m, background included
  T N[3];          // softmax: weighted sum of colours relative to m
  T zmin;          // nearest covering depth
  int64_t idx;     // its face index, -1 where none
};

template <typename T>
SR_HD void pixel_init(const RasterParams& p, PixelAccum<T>& a) {
  a.keep = T(1);
  a.dsum = T(0);
  a.any_half = false;
  a.m = T(p.eps);
  a.S = T(1);
  for (int k = 0; k < 3; ++k) a.N[k] = T(p.background[k]);
  a.zmin = T(INFINITY);
  a.idx = -1;
}

// Adds face `face` (geometry g, texture row tex) to the pixel at (px, py).
template <typename T, DistFunc DF, TextureType TT>
SR_HD void pixel_add_face(const FaceGeom<T>& g, const T* tex, int64_t face, T px, T py,
                          const RasterParams& p, PixelAccum<T>& a) {
  Fragment<T> f;
  fragment_coverage<T, DF>(g, px, py, p, f);
  const bool soft_colour = p.aggr_rgb == AggrRGB::Softmax && f.valid;
  if (!soft_colour && !f.covered) {  // no depth needed
    if (f.valid) {
      a.keep *= f.one_minus_D;
      a.dsum += f.D;
      a.any_half = a.any_half || f.D > T(0.5);
    }
    return;
  }
  fragment_depth(g, p, f);
  if (f.valid) {
    a.keep *= f.one_minus_D;
    a.dsum += f.D;
    a.any_half = a.any_half || f.D > T(0.5);
  }
  if (f.covered && f.in_range && f.zp < a.zmin) {
    a.zmin = f.zp;
    a.idx = face;
  }
  if (soft_colour && f.in_range) {
    T c[3];
    fragment_colour<T, TT>(tex, f, p.texture_res, c);
    const T zbar = (T(p.far) - f.zp) / T(p.far - p.near);
    if (zbar > a.m) {
      const T scale = sr_exp((a.m - zbar) / T(p.gamma));
      a.S *= scale;
      for (int k = 0; k < 3; ++k) a.N[k] *= scale;
      a.m = zbar;
    }
    const T wgt = f.D * sr_exp((zbar - a.m) / T(p.gamma));
    a.S += wgt;
    for (int k = 0; k < 3; ++k) a.N[k] += wgt * c[k];
  }
}

// Final RGBA, depth and index; aux keeps (keep, m, S) for the backward pass.
template <typename T, TextureType TT>
SR_HD void pixel_finish(const PixelAccum<T>& a, const RasterParams& p, const T* tex_of_idx,
                        int64_t faces_in_mesh, const FaceGeom<T>* g_of_idx, T px, T py, T rgba[4],
                        T& depth, T aux[3]) {
  if (p.aggr_alpha == AggrAlpha::Prod) rgba[3] = T(1) - a.keep;
  else if (p.aggr_alpha == AggrAlpha::Sum) rgba[3] = faces_in_mesh > 0 ? a.dsum / T(faces_in_mesh) : T(0);
  else rgba[3] = a.any_half ? T(1) : T(0);
  if (p.aggr_rgb == AggrRGB::Softmax) {
    for (int k = 0; k < 3; ++k) rgba[k] = a.N[k] / a.S;
  } else if (a.idx >= 0) {
    Fragment<T> f;
    barycentric(*g_of_idx, px, py, f.w);
    fragment_depth(*g_of_idx, p, f);
    fragment_colour<T, TT>(tex_of_idx, f, p.texture_res, rgba);
  } else {
    for (int k = 0; k < 3; ++k) rgba[k] = T(p.background[k]);
  }
  depth = a.idx >= 0 ? a.zmin : T(-1);
  aux[0] = a.keep;
  aux[1] = a.m;
  aux[2] = a.S;
}

// ---------------------------------------------------------------------------------------
// gradients of one (pixel, face) pair

// What the backward pass knows about one pixel.
template <typename T>
struct PixelGrad {
  T grad[4];     // dL/d(r, g, b, alpha)
  T rgb[3];      // the forward's colour
  T keep, m, S;  // aux of the forward
  int64_t idx;   // nearest covering face
};

// Gradients of one face (vertex-major x, y, z) accumulated by a pair.
template <typename T>
struct FaceGrad {
  T v[9];
};

// Backpropagates dL/d(arg) and, when the fragment's depth was used, dL/dzp and dL/dwc of
// one fragment to the face's vertices.
template <typename T, DistFunc DF>
SR_HD void fragment_backward(const FaceGeom<T>& g, const Fragment<T>& f, bool depth_used, T px, T py,
                             const RasterParams& p, T g_arg, T g_zp, T g_wc[3], T out[9]) {
  T gw[3] = {T(0), T(0), T(0)};
  // depth: zp = 1/u, u = sum wc_i / z_i
  if (depth_used && g_zp != T(0)) {
    const T g_u = -g_zp * f.zp * f.zp;
    for (int i = 0; i < 3; ++i) {
      g_wc[i] += g_u * g.zinv[i];
      if (!g.z_clamped[i]) out[3 * i + 2] += -g_u * f.wc[i] * g.zinv[i] * g.zinv[i];
    }
  }
  // wc = clip(w) / max(sum clip(w), kWSumMin)
  if (depth_used) {
    const T s = sr_max(f.wsum, T(kWSumMin));
    T dot = T(0);
    if (f.wsum >= T(kWSumMin))
      for (int i = 0; i < 3; ++i) dot += g_wc[i] * f.wc[i];
    for (int i = 0; i < 3; ++i)
      if (f.w[i] >= T(0) && f.w[i] <= T(1)) gw[i] += (g_wc[i] - dot) / s;
  }
  // distance
  if (DF == DistFunc::Euclidean && g_arg != T(0)) {
    const T g_d2 = (f.inside ? g_arg : -g_arg) / T(p.sigma);
    const int i = f.edge, j = f.edge == 2 ? 0 : f.edge + 1;
    const T qx = g.x[i] + f.t * (g.x[j] - g.x[i]), qy = g.y[i] + f.t * (g.y[j] - g.y[i]);
    const T rx = px - qx, ry = py - qy;
    out[3 * i + 0] += -T(2) * (T(1) - f.t) * rx * g_d2;
    out[3 * i + 1] += -T(2) * (T(1) - f.t) * ry * g_d2;
    out[3 * j + 0] += -T(2) * f.t * rx * g_d2;
    out[3 * j + 1] += -T(2) * f.t * ry * g_d2;
  } else if (DF == DistFunc::Barycentric && g_arg != T(0)) {
    const T m = f.w[f.edge];
    gw[f.edge] += g_arg * T(2) * (m < T(0) ? -m : m) / T(p.sigma);
  }
  // barycentrics: w0 = n0/det, w1 = n1/det, w2 = 1 - w0 - w1
  // (a degenerate face's barycentrics are arbitrary and carry no gradient)
  const T G0 = gw[0] - gw[2], G1 = gw[1] - gw[2];
  if ((G0 == T(0) && G1 == T(0)) || g.det_clamped) return;
  const T inv = g.inv_det;
  const T *x = g.x, *y = g.y;
  // d n0
  out[3 * 1 + 0] += G0 * (-(py - y[2])) * inv;
  out[3 * 1 + 1] += G0 * (px - x[2]) * inv;
  out[3 * 2 + 0] += G0 * (py - y[1]) * inv;
  out[3 * 2 + 1] += G0 * (x[1] - px) * inv;
  // d n1
  out[3 * 0 + 0] += G1 * (py - y[2]) * inv;
  out[3 * 0 + 1] += G1 * (-(px - x[2])) * inv;
  out[3 * 2 + 0] += G1 * (y[0] - py) * inv;
  out[3 * 2 + 1] += G1 * (px - x[0]) * inv;
  // d det
  const T k = -(G0 * f.w[0] + G1 * f.w[1]) * inv;
  out[0] += k * (y[1] - y[2]);
  out[3] += k * (y[2] - y[0]);
  out[6] += k * (y[0] - y[1]);
  out[1] += k * (x[2] - x[1]);
  out[4] += k * (x[0] - x[2]);
  out[7] += k * (x[1] - x[0]);
}

// Gradient of one (pixel, face) pair. Writes the face's vertex gradient into out[9]
// (added) and calls add_tex(texel_row, channel, value) for texture gradients.
// Returns false when the pair does not contribute.
template <typename T, DistFunc DF, TextureType TT, typename AddTex>
SR_HD bool pair_backward(const FaceGeom<T>& g, const T* tex, int64_t face, int64_t faces_in_mesh,
                         T px, T py, const PixelGrad<T>& pg, const RasterParams& p, T out[9],
                         AddTex&& add_tex) {
  // the forward only visits a face at the pixels inside its (grown) box; the face picked
  // by the hard colour is always inside it, and is kept against rounding all the same
  if (!in_box(g, px, py) && pg.idx != face) return false;
  Fragment<T> f;
  fragment_coverage<T, DF>(g, px, py, p, f);
  const bool picked = p.aggr_rgb == AggrRGB::Hard && pg.idx == face;
  if (!f.valid && !picked) return false;
  const bool soft_colour = p.aggr_rgb == AggrRGB::Softmax && f.valid;
  if (soft_colour || picked) fragment_depth(g, p, f);
  T g_arg = T(0), g_zp = T(0), g_c[3] = {T(0), T(0), T(0)};
  bool colour_used = false;
  const bool soft_dist = DF != DistFunc::Hard;
  if (f.valid && soft_dist) {
    if (p.aggr_alpha == AggrAlpha::Prod) g_arg += pg.grad[3] * pg.keep * f.D;
    else if (p.aggr_alpha == AggrAlpha::Sum) g_arg += pg.grad[3] * f.D * f.one_minus_D / T(faces_in_mesh);
  }
  T c[3];
  if (soft_colour && f.in_range) {
    fragment_colour<T, TT>(tex, f, p.texture_res, c);
    const T zbar = (T(p.far) - f.zp) / T(p.far - p.near);
    const T e = sr_exp((zbar - pg.m) / T(p.gamma));
    const T wgt = f.D * e;
    T gdot = T(0);
    for (int k = 0; k < 3; ++k) gdot += pg.grad[k] * (c[k] - pg.rgb[k]);
    if (soft_dist) g_arg += gdot * e / pg.S * f.D * f.one_minus_D;
    g_zp = -gdot * wgt / (pg.S * T(p.gamma)) / T(p.far - p.near);
    for (int k = 0; k < 3; ++k) g_c[k] = pg.grad[k] * wgt / pg.S;
    colour_used = true;
  } else if (picked) {
    for (int k = 0; k < 3; ++k) g_c[k] = pg.grad[k];
    colour_used = true;
  }
  T g_wc[3] = {T(0), T(0), T(0)};
  if (colour_used) {
    if (TT == TextureType::Surface) {
      const int64_t texel = texel_index(f.wc, p.texture_res);
      for (int k = 0; k < 3; ++k)
        if (g_c[k] != T(0)) add_tex(texel, k, g_c[k]);
    } else {
      for (int i = 0; i < 3; ++i) {
        for (int k = 0; k < 3; ++k) {
          if (g_c[k] != T(0)) add_tex(int64_t(i), k, g_c[k] * f.wc[i]);
          g_wc[i] += g_c[k] * tex[3 * i + k];
        }
      }
    }
  }
  fragment_backward<T, DF>(g, f, colour_used, px, py, p, g_arg, g_zp, g_wc, out);
  return true;
}

}  // namespace softras

// ---------------------------------------------------------------------------------------
// host side: resolve the run-time modes into template arguments once, outside every loop

#include <type_traits>

namespace softras {

template <DistFunc V>
using DistTag = std::integral_constant<DistFunc, V>;
template <TextureType V>
using TexTag = std::integral_constant<TextureType, V>;

// Calls fn(DistTag, TexTag) with the modes of p as compile-time constants.
template <typename Fn>
void with_modes(const RasterParams& p, Fn&& fn) {
  auto by_texture = [&](auto dist) {
    if (p.texture_type == TextureType::Surface) fn(dist, TexTag<TextureType::Surface>{});
    else fn(dist, TexTag<TextureType::Vertex>{});
  };
  switch (p.dist_func) {
    case DistFunc::Hard: by_texture(DistTag<DistFunc::Hard>{}); break;
    case DistFunc::Barycentric: by_texture(DistTag<DistFunc::Barycentric>{}); break;
    default: by_texture(DistTag<DistFunc::Euclidean>{}); break;
  }
}

}  // namespace softras
