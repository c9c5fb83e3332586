// Python bindings of the CPU backend (module softras_cpu) and, when compiled with
// SOFTRAS_WITH_CUDA, of the CUDA backend as well (module softras_cuda).
#include <torch/extension.h>

#include "rasterize.h"

namespace softras {
#ifdef SOFTRAS_WITH_CUDA
std::vector<at::Tensor> forward_cuda(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                     const RasterParams&);
std::vector<at::Tensor> backward_cuda(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                      const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                      const at::Tensor&, const RasterParams&, bool);
#else
std::vector<at::Tensor> forward_cpu(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                    const RasterParams&);
std::vector<at::Tensor> backward_cpu(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                     const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                     const at::Tensor&, const RasterParams&, bool);
#endif
}  // namespace softras

// Every type is module-local: the CPU and the CUDA module bind the same C++ types, and
// pybind11 refuses to register a global type twice ("generic_type: type ... is already
// registered"), which would make whichever module loads second fail to import.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using softras::RasterParams;
  namespace py = pybind11;
  py::enum_<softras::DistFunc>(m, "DistFunc", py::module_local())
      .value("hard", softras::DistFunc::Hard)
      .value("barycentric", softras::DistFunc::Barycentric)
      .value("euclidean", softras::DistFunc::Euclidean);
  py::enum_<softras::AggrRGB>(m, "AggrRGB", py::module_local())
      .value("hard", softras::AggrRGB::Hard)
      .value("softmax", softras::AggrRGB::Softmax);
  py::enum_<softras::AggrAlpha>(m, "AggrAlpha", py::module_local())
      .value("hard", softras::AggrAlpha::Hard)
      .value("sum", softras::AggrAlpha::Sum)
      .value("prod", softras::AggrAlpha::Prod);
  py::enum_<softras::TextureType>(m, "TextureType", py::module_local())
      .value("surface", softras::TextureType::Surface)
      .value("vertex", softras::TextureType::Vertex);
  py::class_<RasterParams>(m, "RasterParams", py::module_local())
      .def(py::init<>())
      .def_readwrite("num_meshes", &RasterParams::num_meshes)
      .def_readwrite("num_faces", &RasterParams::num_faces)
      .def_readwrite("height", &RasterParams::height)
      .def_readwrite("width", &RasterParams::width)
      .def_readwrite("texture_size", &RasterParams::texture_size)
      .def_readwrite("texture_res", &RasterParams::texture_res)
      .def_readwrite("tile", &RasterParams::tile)
      .def_readwrite("dist_func", &RasterParams::dist_func)
      .def_readwrite("aggr_rgb", &RasterParams::aggr_rgb)
      .def_readwrite("aggr_alpha", &RasterParams::aggr_alpha)
      .def_readwrite("texture_type", &RasterParams::texture_type)
      .def_readwrite("fill_back", &RasterParams::fill_back)
      .def_readwrite("near", &RasterParams::near)
      .def_readwrite("far", &RasterParams::far)
      .def_readwrite("eps", &RasterParams::eps)
      .def_readwrite("sigma", &RasterParams::sigma)
      .def_readwrite("gamma", &RasterParams::gamma)
      .def_readwrite("threshold", &RasterParams::threshold)
      .def_readwrite("grow", &RasterParams::grow)
      .def("set_background", [](RasterParams& p, double r, double g, double b) {
        p.background[0] = r;
        p.background[1] = g;
        p.background[2] = b;
      });
#ifdef SOFTRAS_WITH_CUDA
  m.def("forward", &softras::forward_cuda, "soft rasterization, forward (CUDA)");
  m.def("backward", &softras::backward_cuda, "soft rasterization, backward (CUDA)");
#else
  m.def("forward", &softras::forward_cpu, "soft rasterization, forward (CPU)");
  m.def("backward", &softras::backward_cpu, "soft rasterization, backward (CPU)");
#endif
}
