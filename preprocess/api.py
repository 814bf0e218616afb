"""Public Python API of the preprocess stage: the functions its command lines call."""
from __future__ import annotations

from .extract_audio_features import ExtractAudioConfig
from .extract_audio_features import run as extract_audio_features
from .rearrange_recon_coeffs import RearrangeConfig
from .rearrange_recon_coeffs import run as rearrange_recon_coeffs

__all__ = ["ExtractAudioConfig", "RearrangeConfig", "extract_audio_features", "rearrange_recon_coeffs"]
