"""softras: an exact, fast Soft Rasterizer (Liu et al., ICCV 2019) for PyTorch.

``import softras as sr`` offers the SoftRas-compatible modules (``sr.Mesh``,
``sr.SoftRenderer``, ...); ``softras.functional`` the stateless operations.
"""

from . import functional, io, losses
from .functional import RasterSettings, soft_rasterize, soft_rasterize_packed
from .lighting import AmbientLighting, DirectionalLighting, Lighting
from .losses import EdgeLengthLoss, FlattenLoss, IoULoss, LaplacianLoss, NormalConsistencyLoss
from .mesh import Mesh
from .renderer import Renderer, SoftRasterizer, SoftRenderer
from .transform import Look, LookAt, Projection, Transform

# the SoftRas names of the file functions, reachable as softras.functional.X as in SoftRas;
# attached here because the functional layer does not import softras.io
functional.load_obj = io.load_obj
functional.save_obj = io.save_obj
functional.save_voxel = io.save_voxel

__version__ = "0.1.0"
__all__ = [
    "AmbientLighting",
    "DirectionalLighting",
    "EdgeLengthLoss",
    "FlattenLoss",
    "IoULoss",
    "LaplacianLoss",
    "Lighting",
    "Look",
    "LookAt",
    "Mesh",
    "NormalConsistencyLoss",
    "Projection",
    "RasterSettings",
    "Renderer",
    "SoftRasterizer",
    "SoftRenderer",
    "Transform",
    "functional",
    "losses",
    "soft_rasterize",
    "soft_rasterize_packed",
]
