"""Face alignment before the reconstruction network, identical to upstream (spec 1.2).

Per frame: 68 landmarks (image pixels, y down, as in the keypoint .txt) -> y flip ->
5 points -> least-squares POS fit against the 3D reference points -> scale ``102/s`` ->
PIL bicubic resize of the whole frame to ``(int(W*s), int(H*s))`` -> 224x224 crop
(zero fill outside) -> RGB float in [0,1].

``align_frame`` gives the same pixels as the upstream full-frame resize but computes only what
the crop needs, which is several times faster; ``align_frame_reference``
is the literal upstream recipe, kept for the tests. ``align_batch_torch`` is an optional,
approximate, batched version for GPUs (``grid_sample``), not the default.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

# The five 3D reference points (eye 1, eye 2, nose tip, mouth corner 1, mouth corner 2), (5,3)
# float64. They are the 68->5 reduction of ``lm`` in ``BFM/similarity_Lm3D_all.mat`` of
# sicxu/Deep3DFaceRecon_pytorch (``util/load_mats.py load_lm3d``); values copied from the
# golden file recon_align.npz (``lm3d_std_5x3``), which was made from that .mat file.
LM3D_STD_5 = np.array(
    [
        [-0.3114865720272064, 0.29036077857017517, 0.13377952575683594],
        [0.30979886651039124, 0.289720356464386, 0.1317952573299408],
        [0.003253498813137412, -0.04617932438850403, 0.5524424314498901],
        [-0.25216928124427795, -0.3813391625881195, 0.22405731678009033],
        [0.24846619367599487, -0.38128235936164856, 0.22235769033432007],
    ],
    dtype=np.float64,
)
LM3D_STD_5.setflags(write=False)

TARGET_SIZE = 224
RESCALE_FACTOR = 102.0
# Larger resized frames than this (pixels per side) only come from degenerate landmarks.
MAX_RESIZED = 1_000_000

# 0-based indices into the 68 points (FAN/dlib order): nose tip, eye corners, mouth corners.
_NOSE, _EYE1, _EYE2, _MOUTH1, _MOUTH2 = 30, (36, 39), (42, 45), 48, 54


def extract_5p(lm68: np.ndarray) -> np.ndarray:
    """(68,2) -> (5,2): eye 1 centre, eye 2 centre, nose tip, mouth corners (upstream order)."""
    if lm68.shape != (68, 2):
        raise ValueError(f"expected (68,2) landmarks, got {lm68.shape}")
    return np.stack(
        [
            lm68[list(_EYE1)].mean(0),
            lm68[list(_EYE2)].mean(0),
            lm68[_NOSE],
            lm68[_MOUTH1],
            lm68[_MOUTH2],
        ]
    )


def pos_fit(lm5: np.ndarray, lm3d: np.ndarray = LM3D_STD_5) -> tuple[np.ndarray, float]:
    """Least-squares 2x4 affine from 3D points (K,3) to image points (K,2).

    Returns the translation ``t`` (2,) and the scale ``s`` = mean norm of the two rotation rows.
    """
    k = lm5.shape[0]
    a = np.zeros((2 * k, 8))
    a[0::2, 0:3] = lm3d
    a[0::2, 3] = 1.0
    a[1::2, 4:7] = lm3d
    a[1::2, 7] = 1.0
    b = np.asarray(lm5, dtype=np.float64).reshape(2 * k)  # x0, y0, x1, y1, ...
    sol = np.linalg.lstsq(a, b, rcond=None)[0]
    s = (np.linalg.norm(sol[0:3]) + np.linalg.norm(sol[4:7])) / 2.0
    return np.array([sol[3], sol[7]]), float(s)


def lm_to_5p_yup(lm68_ydown: np.ndarray, width: int, height: int) -> np.ndarray:
    """Keypoint-file landmarks (68,2, y down; all -1 = no face) -> 5 points, y up.

    A frame without a face gets the upstream fallback: the reference points mapped to the
    image, ``x = (X+1)/2*W``, ``y = (Y+1)/2*H``.
    """
    if np.all(lm68_ydown == -1):
        ref = (LM3D_STD_5[:, :2] + 1.0) / 2.0
        return np.stack([ref[:, 0] * width, ref[:, 1] * height], axis=1)
    lm = np.array(lm68_ydown, copy=True)
    lm[:, 1] = height - 1 - lm[:, 1]
    return extract_5p(lm)


def crop_geometry(width: int, height: int, t: np.ndarray, s: float) -> tuple[int, int, int, int]:
    """Resized size and crop corner as upstream computes them: (w, h, left, up); ``s`` = 102/s."""
    w = int(width * s)
    h = int(height * s)
    left = int(w / 2 - TARGET_SIZE / 2 + float((t[0] - width / 2) * s))
    up = int(h / 2 - TARGET_SIZE / 2 + float((height / 2 - t[1]) * s))
    return w, h, left, up


def solve_transform(lm68_ydown: np.ndarray, width: int, height: int) -> np.ndarray:
    """(68,2) keypoint-file landmarks -> trans_params [W, H, s, t0, t1] float64 (s = 102/s_pos)."""
    t, s = pos_fit(lm_to_5p_yup(lm68_ydown, width, height))
    return np.array([width, height, RESCALE_FACTOR / s, t[0], t[1]], dtype=np.float64)


def align_frame_reference(frame: np.ndarray, tp: np.ndarray) -> np.ndarray:
    """The literal upstream recipe: resize the whole frame, then crop. (H,W,3) -> (224,224,3)."""
    w, h, left, up = crop_geometry(int(tp[0]), int(tp[1]), tp[3:5], tp[2])
    img = Image.fromarray(frame).resize((w, h), resample=Image.BICUBIC)
    return np.asarray(img.crop((left, up, left + TARGET_SIZE, up + TARGET_SIZE)))


def align_frame(frame: np.ndarray, tp: np.ndarray) -> np.ndarray:
    """Same pixels as :func:`align_frame_reference`, computing only what the crop needs.

    frame (H,W,3) uint8 RGB; tp = [W, H, s, t0, t1]; returns (224,224,3) uint8.
    PIL resizes in two separable passes (horizontal, then vertical, 8-bit in between). We run
    the same two passes as separate PIL calls with the same input/output sizes, so the filter
    coefficients are bit-identical, but the horizontal pass only sees the source rows the crop
    needs and the vertical pass only the crop's columns (PIL's ``box`` argument would change
    the coefficients' rounding and give +-1 differences). When the frame is shrunk (s < 1)
    Pillow may run the vertical pass first, so that case takes the literal recipe.
    """
    height, width = frame.shape[:2]
    w, h, left, up = crop_geometry(width, height, tp[3:5], tp[2])
    if w < width or h < height:
        return align_frame_reference(frame, tp)
    out = np.zeros((TARGET_SIZE, TARGET_SIZE, 3), dtype=np.uint8)
    x0, y0 = max(left, 0), max(up, 0)
    x1, y1 = min(left + TARGET_SIZE, w), min(up + TARGET_SIZE, h)
    if x1 <= x0 or y1 <= y0:
        return out
    # Source rows read by the vertical pass for output rows y0..y1 (bicubic support 2 when
    # enlarging), with a safety margin.
    sy = height / h
    r0 = max(int(np.floor(y0 * sy)) - 4, 0)
    r1 = min(int(np.ceil(y1 * sy)) + 4, height)
    rows = Image.fromarray(np.ascontiguousarray(frame[r0:r1]))
    horiz = np.asarray(rows.resize((w, r1 - r0), resample=Image.BICUBIC))[:, x0:x1]
    strip = np.zeros((height, x1 - x0, 3), dtype=np.uint8)
    strip[r0:r1] = horiz
    vert = np.asarray(Image.fromarray(strip).resize((x1 - x0, h), resample=Image.BICUBIC))
    out[y0 - up : y1 - up, x0 - left : x1 - left] = vert[y0:y1]
    return out


def align_landmarks(lm_yup: np.ndarray, tp: np.ndarray) -> np.ndarray:
    """Landmarks (K,2, y up) in crop coordinates, as upstream align_img returns them."""
    width, height, s, t0, t1 = (float(v) for v in tp)
    w, h = int(width * s), int(height * s)
    lm = np.stack([lm_yup[:, 0] - t0 + width / 2, lm_yup[:, 1] - t1 + height / 2], axis=1) * s
    return lm - np.array([[w / 2 - TARGET_SIZE / 2, h / 2 - TARGET_SIZE / 2]])


def to_network_input(crops: np.ndarray) -> torch.Tensor:
    """(B,224,224,3) or (224,224,3) uint8 -> (B,3,224,224) or (3,224,224) float32 in [0,1]."""
    x = torch.from_numpy((np.asarray(crops, dtype=np.float64) / 255.0).astype(np.float32))
    return x.permute(2, 0, 1) if x.ndim == 3 else x.permute(0, 3, 1, 2)


def _cubic_weights(frac: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys cubic weights for taps -1, 0, 1, 2 given fractional offsets (...,) -> (...,4)."""
    d = torch.stack([frac + 1, frac, 1 - frac, 2 - frac], dim=-1).abs()
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return torch.where(d <= 1, near, torch.where(d < 2, far, torch.zeros_like(d)))


def align_batch_torch(frames: torch.Tensor, tps: torch.Tensor) -> torch.Tensor:
    """Approximate batched alignment on any device (meant for CUDA).

    frames (B,H,W,3) uint8, tps (B,5) -> (B,3,224,224) float32 in [0,1]. Separable bicubic
    (a=-0.5, PIL's kernel) with clamped edges and 8-bit rounding between and after the passes,
    like PIL; the crop geometry is the upstream one. Differs from the PIL path by at most a
    few grey levels on rare pixels (measured in the tests / README).
    """
    b, height, width, _ = frames.shape
    dev = frames.device
    img = frames.permute(0, 3, 1, 2).to(torch.float32)  # (B,3,H,W)
    geo = [crop_geometry(width, height, tp[3:5].tolist(), float(tp[2])) for tp in tps.cpu()]
    geo_t = torch.tensor(geo, dtype=torch.float64, device=dev)  # (B,4): w, h, left, up
    idx = torch.arange(TARGET_SIZE, dtype=torch.float64, device=dev)

    def taps(size_in: int, size_out: torch.Tensor, start: torch.Tensor):
        # Source centre of output pixel (start+i) of a resize size_in -> size_out: (B,224).
        scale = size_in / size_out
        centre = (start[:, None] + idx[None] + 0.5) * scale[:, None] - 0.5
        base = torch.floor(centre)
        wts = _cubic_weights((centre - base).to(torch.float32))  # (B,224,4)
        pos = base.long()[..., None] + torch.arange(-1, 3, device=dev)  # (B,224,4)
        inside = (start[:, None] + idx[None] >= 0) & (start[:, None] + idx[None] < size_out[:, None])
        return pos.clamp(0, size_in - 1), wts, inside

    px, wx, in_x = taps(width, geo_t[:, 0], geo_t[:, 2])
    py, wy, in_y = taps(height, geo_t[:, 1], geo_t[:, 3])
    # Horizontal pass: (B,3,H,224).
    gx = img[:, :, :, None, :].expand(b, 3, height, TARGET_SIZE, width)
    cols = torch.gather(gx, 4, px[:, None, None].expand(b, 3, height, TARGET_SIZE, 4))
    horiz = (cols * wx[:, None, None]).sum(-1).round().clamp(0, 255)
    # Vertical pass: (B,3,224,224).
    gy = horiz[:, :, None, :, :].expand(b, 3, TARGET_SIZE, height, TARGET_SIZE)
    rows = torch.gather(gy, 3, py[:, None, :, :, None].expand(b, 3, TARGET_SIZE, 4, TARGET_SIZE))
    out = (rows * wy[:, None, :, :, None]).sum(3).round().clamp(0, 255)
    mask = (in_y[:, :, None] & in_x[:, None, :]).to(out.dtype)  # (B,224,224)
    return out * mask[:, None] / 255.0
