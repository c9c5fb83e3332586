"""Neural networks of the experiments (no training loops here)."""

from .recon import Decoder, Encoder, ReconModel, class_prior_voxels, deform_template

__all__ = ["Decoder", "Encoder", "ReconModel", "class_prior_voxels", "deform_template"]
