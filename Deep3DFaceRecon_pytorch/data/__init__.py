"""Data handling of the Deep3DFaceRecon stage: alignment, keypoint files, streaming batches."""
