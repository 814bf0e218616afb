"""Full-length prediction and the original .mat output (spec 3.5)."""
from .predict import predict_batch, to_recon, write_recon_mat

__all__ = ["predict_batch", "to_recon", "write_recon_mat"]
