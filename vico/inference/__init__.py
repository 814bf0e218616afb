"""Full-length prediction in the original .mat layout (spec 3.5)."""
from .predict import predict_batch, to_recon

__all__ = ["predict_batch", "to_recon"]
