"""softras: an exact, fast Soft Rasterizer (Liu et al., ICCV 2019) for PyTorch."""

from . import functional
from .functional import RasterSettings, soft_rasterize, soft_rasterize_packed

__version__ = "0.1.0"
__all__ = ["functional", "RasterSettings", "soft_rasterize", "soft_rasterize_packed"]
