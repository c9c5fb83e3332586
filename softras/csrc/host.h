// Host-side pieces shared by the CPU and CUDA entry points: input checks and outputs.
#pragma once

#include <ATen/ATen.h>

#include "rasterize.h"

namespace softras {

// Checks the packed inputs against the parameters; errors name the argument.
inline void check_inputs(const at::Tensor& face_vertices, const at::Tensor& textures,
                         const at::Tensor& mesh_first_face, const RasterParams& p,
                         c10::DeviceType device, bool check_first_values = true) {
  TORCH_CHECK_VALUE(face_vertices.dim() == 3 && face_vertices.size(1) == 3 && face_vertices.size(2) == 3,
                    "face_vertices: expected shape [F, 3, 3], got ", face_vertices.sizes());
  TORCH_CHECK_VALUE(textures.dim() == 3 && textures.size(0) == face_vertices.size(0) &&
                        textures.size(1) == p.texture_size && textures.size(2) == 3,
                    "textures: expected shape [", face_vertices.size(0), ", ", p.texture_size,
                    ", 3], got ", textures.sizes());
  TORCH_CHECK_VALUE(mesh_first_face.dim() == 1 && mesh_first_face.size(0) == p.num_meshes &&
                        mesh_first_face.scalar_type() == at::kLong,
                    "mesh_first_face: expected int64 of shape [", p.num_meshes, "], got ",
                    mesh_first_face.scalar_type(), " ", mesh_first_face.sizes());
  TORCH_CHECK_VALUE(face_vertices.scalar_type() == textures.scalar_type(),
                    "textures: expected dtype ", face_vertices.scalar_type(), ", got ",
                    textures.scalar_type());
  for (const auto* t : {&face_vertices, &textures, &mesh_first_face})
    TORCH_CHECK_VALUE(t->device().type() == device, "expected tensors on ", device, ", got ",
                      t->device());
  TORCH_CHECK_VALUE(face_vertices.size(0) < (int64_t(1) << 31), "face_vertices: at most 2^31 faces");
  TORCH_CHECK_VALUE(p.num_faces == face_vertices.size(0), "num_faces: expected ", face_vertices.size(0),
                    " (the faces of face_vertices), got ", p.num_faces);
  TORCH_CHECK_VALUE(p.height > 0 && p.width > 0, "image_size: expected positive sizes");
  // mesh b owns faces [first[b], first[b + 1]): the values must be non-decreasing in [0, F]
  // (on a GPU this copies B integers to the host; the backward, which gets the tensors the
  // forward checked, skips it)
  if (!check_first_values) return;
  const auto first = mesh_first_face.to(at::kCPU).contiguous();
  const int64_t* a = first.data_ptr<int64_t>();
  const int64_t B = first.size(0), F = face_vertices.size(0);
  for (int64_t b = 0; b < B; ++b)
    TORCH_CHECK_VALUE(0 <= a[b] && a[b] <= (b + 1 < B ? a[b + 1] : F), "mesh_first_face: expected ",
                      "non-decreasing values in [0, ", F, "], got ", first);
}

struct ForwardOutputs {
  at::Tensor rgba;   // [B, 4, H, W]
  at::Tensor depth;  // [B, H, W]   depth of the nearest covering face, -1 where none
  at::Tensor index;  // [B, H, W]   packed index of that face, -1 where none
  at::Tensor aux;    // [B, 3, H, W] (prod of 1 - D, softmax max, softmax sum) for backward

  ForwardOutputs(const at::Tensor& like, const RasterParams& p)
      : rgba(at::empty({p.num_meshes, 4, p.height, p.width}, like.options())),
        depth(at::empty({p.num_meshes, p.height, p.width}, like.options())),
        index(at::empty({p.num_meshes, p.height, p.width}, like.options().dtype(at::kLong))),
        aux(at::empty({p.num_meshes, 3, p.height, p.width}, like.options())) {}

  std::vector<at::Tensor> list() const { return {rgba, depth, index, aux}; }
};

}  // namespace softras
