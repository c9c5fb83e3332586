"""Neural networks of the experiments (no training loops here)."""

from .recon import PAPER_ENCODER_CHANNELS, Decoder, Encoder, ReconModel, class_prior_voxels, deform_template

__all__ = ["PAPER_ENCODER_CHANNELS", "Decoder", "Encoder", "ReconModel", "class_prior_voxels", "deform_template"]
