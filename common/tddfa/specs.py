"""Weights registry entries of the five released 3DDFA_V2 files (``common.weights.REGISTRY``).

Plain data (keyword arguments of ``common.weights.WeightSpec``) so that ``common.weights`` can
read it without an import cycle. All five files are in the cleardusk/3DDFA_V2 repository.
``fetch`` holds the keyword arguments of ``common.weights.FetchSource``. ``manifest`` is left unset: the smoke-test files come from ``python -m common.tddfa.smoke``,
and the key/shape manifests are named in ``MANIFESTS`` (checked by tests/common/test_tddfa.py).
"""
from __future__ import annotations

RAW = "https://raw.githubusercontent.com/cleardusk/3DDFA_V2/master/"
FLAG = "--weights_dir DIR (files under DIR/tddfa_v2/)"
TERMS = ("cleardusk/3DDFA_V2 is MIT-licensed (Jianzhu Guo); its README asks you to cite Guo et al., ECCV 2020. "
         "The BFM bases derive from the Basel Face Model, whose licence limits use to non-commercial research.")
USED_BY = "common.faces backend '3ddfa_v2' (extract_kp_videos --backend 3ddfa_v2, evaluate --landmarks 3ddfa_v2 / --tddfa_motion)"


def _fetch(path: str) -> dict:
    return dict(kind="https", ref=RAW + path, page=f"{RAW}{path} (cleardusk/3DDFA_V2)", terms=TERMS)


TDDFA_SPECS: list[dict] = [
    dict(name="tddfa_v2_mb1", filename="mb1_120x120.pth", default_path="tddfa_v2/mb1_120x120.pth",
         description="3DDFA_V2 MobileNet V1 (widen 1.0) 62-parameter regressor, the default",
         fetch=_fetch("weights/mb1_120x120.pth"),
         flag=FLAG, state_key="state_dict", strip_prefix="module.", used_by=USED_BY,
         note="dict {'epoch', 'state_dict'}; keys prefixed 'module.'; fc_param (62) and unused fc_lm (136)"),
    dict(name="tddfa_v2_mb05", filename="mb05_120x120.pth", default_path="tddfa_v2/mb05_120x120.pth",
         description="3DDFA_V2 MobileNet V1 (widen 0.5) 62-parameter regressor (--tddfa_arch mb05)",
         fetch=_fetch("weights/mb05_120x120.pth"),
         flag=FLAG, state_key="state_dict", strip_prefix="module.", used_by=USED_BY,
         note="dict {'epoch', 'state_dict'}; keys prefixed 'module.'; fc_param (62) and unused fc_lm (136)"),
    dict(name="tddfa_v2_faceboxes", filename="FaceBoxesProd.pth", default_path="tddfa_v2/FaceBoxesProd.pth",
         description="FaceBoxes face detector of 3DDFA_V2",
         fetch=_fetch("FaceBoxes/weights/FaceBoxesProd.pth"),
         flag=FLAG, used_by=USED_BY, note="plain state_dict, no prefix"),
    dict(name="tddfa_v2_bfm", filename="bfm_noneck_v3.pkl", default_path="tddfa_v2/bfm_noneck_v3.pkl",
         description="3DDFA_V2 BFM bases (u, w_shp 40, w_exp 10, tri, keypoints)",
         fetch=_fetch("configs/bfm_noneck_v3.pkl"),
         flag=FLAG, used_by=USED_BY, note="pickled dict of numpy arrays (read with a numpy-only unpickler)"),
    dict(name="tddfa_v2_param_mean_std", filename="param_mean_std_62d_120x120.pkl",
         default_path="tddfa_v2/param_mean_std_62d_120x120.pkl",
         description="3DDFA_V2 mean/std of the 62 parameters (de-normalisation)",
         fetch=_fetch("configs/param_mean_std_62d_120x120.pkl"),
         flag=FLAG, used_by=USED_BY, note="pickled dict {'mean': (62,), 'std': (62,)} of numpy arrays"),
]

ARCH_WEIGHTS = {"mb1": "tddfa_v2_mb1", "mb05": "tddfa_v2_mb05"}

# registry name -> manifest in common/manifests (mb1: built from the public code, not from the file)
MANIFESTS = {"tddfa_v2_mb05": "tddfa_v2_mobilenet_mb05", "tddfa_v2_faceboxes": "tddfa_v2_faceboxes",
             "tddfa_v2_mb1": "tddfa_v2_mobilenet_mb1"}
