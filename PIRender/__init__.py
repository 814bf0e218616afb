"""PIRender stage: coefficient-driven neural face renderer (LMDB preparation, inference, training).

Scripts (run from the repository root):

* ``python -m PIRender.prepare_vox_lmdb``: videos + 3DMM coefficients -> the original LMDB layout;
* ``python -m PIRender.inference``: LMDB -> rendered H.264 videos (optionally with speech);
* ``python -m PIRender.train``: the original training recipe (warp warm-up, VGG19 losses, EMA).
"""
