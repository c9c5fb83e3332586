"""Stateless operations of softras."""

from .rasterize import Fragments, RasterSettings, soft_rasterize, soft_rasterize_packed

__all__ = ["Fragments", "RasterSettings", "soft_rasterize", "soft_rasterize_packed"]
