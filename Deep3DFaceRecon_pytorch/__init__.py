"""Deep3DFaceRecon stage: 68-point landmarks and 257-d 3DMM coefficients from face videos.

Scripts (run from the repository root):
    python -m Deep3DFaceRecon_pytorch.extract_kp_videos   landmarks -> keypoints/**.txt
    python -m Deep3DFaceRecon_pytorch.face_recon_videos   coefficients -> recons/**.mat
"""
