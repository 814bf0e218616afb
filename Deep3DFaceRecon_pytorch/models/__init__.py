"""Networks of the Deep3DFaceRecon stage."""
from .recon_net import HEAD_DIMS, ReconNet, build_recon_net

__all__ = ["HEAD_DIMS", "ReconNet", "build_recon_net"]
