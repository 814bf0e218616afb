"""Animate a real face photograph with known head motion, blinks and mouth opening.

Each identity is a photo bundled with an installed package (skimage's astronaut, matplotlib's
Grace Hopper). Its 68 landmarks are found once with dlib (``common.faces``); a similarity maps the
photo to a face-centred *canonical* frame (eyes-to-mouth axis vertical). A frame is rendered with
one ``cv2.remap`` of the photo through

    output pixel --G^-1--> canonical point --(+ local backward warp)--> canonical --C--> photo

where G is the exact global similarity (roll, scale, translation about the face centre) and the
local warp is a thin-plate spline through the landmarks and a ring of fixed anchors: the lower
lip and jaw drop with ``mouth_open``, the upper eyelids close with ``blink``, and inner-face
points shift with their depth for yaw/pitch (a 2-D approximation of an out-of-plane rotation).
The spline is evaluated on an 8-pixel grid and upsampled, so a frame costs a few milliseconds.
The opened mouth's cavity is painted dark with a band of upper teeth.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import scipy.linalg

# Photos: (name, person id, a point inside the wanted face, for photos with several detections).
PHOTOS = (("astronaut", 0, (220.0, 120.0)), ("grace_hopper", 1, (270.0, 230.0)))

EYE_MID_Y = 0.42    # canonical eye midpoint height, fraction of the frame size
EYE_MOUTH = 0.25    # canonical eye-midpoint to mouth-centre distance, fraction of the frame size
MOUTH_DROP = 0.36   # jaw drop at mouth_open=1, fraction of the mouth width
DEPTH_RADIUS = 0.16  # displacement of the nose tip per radian of yaw/pitch, fraction of the size
LID_DROP = 0.7      # upper-lid travel at blink=1 (the rest of the eye is painted over as skin)
GRID_STEP = 8       # pixels between spline evaluations
CAVITY_RGB = np.array([70.0, 22.0, 28.0])
TEETH_RGB = np.array([228.0, 222.0, 208.0])

# Relative depth of each landmark (1 = nose tip), for the yaw/pitch approximation.
_DEPTH = np.zeros(68)
_DEPTH[0:17] = 0.10 + 0.25 * np.sin(np.linspace(0.0, np.pi, 17))  # jaw line: chin most forward
_DEPTH[17:27] = 0.45   # brows
_DEPTH[27:31] = np.linspace(0.6, 1.0, 4)  # nose bridge to tip
_DEPTH[31:36] = 0.8    # nostrils
_DEPTH[36:48] = 0.40   # eyes
_DEPTH[48:68] = 0.60   # lips

# Share of the jaw drop taken by each moving mouth/jaw landmark (others stay: 0).
_DROP = np.zeros(68)
_DROP[[65, 66, 67]] = [0.8, 1.0, 0.8]                  # lower inner lip
_DROP[[55, 56, 57, 58, 59]] = [0.45, 0.85, 1.0, 0.85, 0.45]  # lower outer lip
_DROP[[4, 5, 6, 7, 8, 9, 10, 11, 12]] = [0.05, 0.2, 0.45, 0.65, 0.75, 0.65, 0.45, 0.2, 0.05]  # jaw line
_DROP[[48, 54, 60, 64]] = 0.12                         # mouth corners follow a little


@dataclass
class Identity:
    """A face photo and its 68 dlib landmarks (photo pixels, x, y)."""
    name: str
    person_id: int
    photo: np.ndarray      # (H, W, 3) uint8 RGB
    landmarks: np.ndarray  # (68, 2) float64


def photo(name: str) -> np.ndarray:
    """One of the bundled photos as (H, W, 3) uint8 RGB."""
    if name == "astronaut":
        import skimage.data

        return np.ascontiguousarray(skimage.data.astronaut())
    if name == "grace_hopper":
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"{path}: matplotlib sample photo not found")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    raise ValueError(f"unknown photo {name!r}")


def load_identities(backend, mirrored: bool = False) -> list[Identity]:
    """The two bundled identities (optionally mirrored left-right), landmarked with ``backend``."""
    out = []
    for name, pid, hint in PHOTOS:
        img = photo(name)
        if mirrored:
            img = np.ascontiguousarray(img[:, ::-1])
            hint = (img.shape[1] - 1 - hint[0], hint[1])
        boxes = backend.detect(img)
        inside = [b for b in boxes if b[0] <= hint[0] <= b[2] and b[1] <= hint[1] <= b[3]]
        if not inside:
            raise RuntimeError(f"no face found in the {name} photo")
        lm = backend.landmarks(img, inside[0]).astype(np.float64)
        out.append(Identity(name + ("_mirrored" if mirrored else ""), pid, img, lm))
    return out


# ---------------------------------------------------------------------------------------------
# thin-plate spline


def _tps_kernel(d2: np.ndarray) -> np.ndarray:
    """U = r^2 log r^2 on squared distances (0 at r = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d2 > 0, d2 * np.log(np.maximum(d2, 1e-300)), 0.0)


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    dx = a[:, 0, None] - b[None, :, 0]
    dy = a[:, 1, None] - b[None, :, 1]
    return dx * dx + dy * dy


def tps_fit(centers: np.ndarray, values: np.ndarray, reg: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Thin-plate spline through ``values`` (n, 2) at ``centers`` (n, 2) (unit-scale coordinates)."""
    n = len(centers)
    k = _tps_kernel(_sqdist(centers, centers)) + reg * np.eye(n)
    p = np.hstack([np.ones((n, 1)), centers])
    lhs = np.zeros((n + 3, n + 3))
    lhs[:n, :n], lhs[:n, n:], lhs[n:, :n] = k, p, p.T
    rhs = np.zeros((n + 3, 2))
    rhs[:n] = values
    sol = _lu_solve(lhs, rhs)
    return sol[:n], sol[n:]


def _lu_solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve a x = b: LAPACK's LU (small enough to stay single-threaded), then the triangular
    solves in Python. (LAPACK's own solve of the same system may run OpenBLAS's threaded path,
    which costs ~20 ms per call on a busy machine instead of ~0.2 ms.)"""
    lu, piv = scipy.linalg.lu_factor(a, check_finite=False)
    x = np.array(b, dtype=np.float64)
    for i, p in enumerate(piv):
        if p != i:
            x[[i, p]] = x[[p, i]]
    n = len(x)
    for i in range(1, n):  # L y = P b (unit diagonal)
        x[i] -= lu[i, :i] @ x[:i]
    for i in range(n - 1, -1, -1):  # U x = y
        x[i] = (x[i] - lu[i, i + 1:] @ x[i + 1:]) / lu[i, i]
    return x


def tps_eval(points: np.ndarray, centers: np.ndarray, w: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Evaluate a fitted spline at ``points`` (m, 2) -> (m, 2)."""
    return _tps_kernel(_sqdist(points, centers)) @ w + a[0] + points @ a[1:]


# ---------------------------------------------------------------------------------------------
# the rig


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 similarity mapping the two points ``src`` exactly onto ``dst``."""
    vs, vd = src[1] - src[0], dst[1] - dst[0]
    zs, zd = complex(*vs), complex(*vd)
    m = zd / zs  # rotation and scale as a complex factor
    a, b = m.real, m.imag
    r = np.array([[a, -b], [b, a]])
    t = dst[0] - r @ src[0]
    return np.hstack([r, t[:, None]])


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


class FaceRig:
    """Renders ``size`` x ``size`` frames of one identity for given motion values."""

    def __init__(self, identity: Identity, size: int = 256):
        self.identity = identity
        self.size = size
        lm = identity.landmarks
        eye_mid = 0.5 * (lm[36:42].mean(0) + lm[42:48].mean(0))
        mouth = lm[48:68].mean(0)
        s = float(size)
        self.eye_mid = np.array([0.5 * s, EYE_MID_Y * s])
        self.center = self.eye_mid + np.array([0.0, 0.5 * EYE_MOUTH * s])  # rotation/scale centre
        to_canon = _similarity(np.stack([eye_mid, mouth]),
                               np.stack([self.eye_mid, self.eye_mid + [0.0, EYE_MOUTH * s]]))
        self.canon_to_photo = cv2.invertAffineTransform(to_canon)
        self.lm = _apply(to_canon, lm)  # (68, 2) canonical landmarks at rest

        mouth_w = np.linalg.norm(self.lm[54] - self.lm[48])
        self.max_drop = MOUTH_DROP * mouth_w
        self.depth_px = DEPTH_RADIUS * s
        self._build_controls()

        n = size // GRID_STEP
        c = (np.arange(n) + 0.5) * (size / n) - 0.5  # coarse cell centres, as cv2.resize expects
        gx, gy = np.meshgrid(c, c)
        self._grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
        self._grid_n = n

    def _build_controls(self) -> None:
        """Points moved by the rig: the 68 landmarks, helper points, fixed anchors; and the subset
        that drives the spline (fewer points where the face is rigid keeps each solve cheap)."""
        lm = self.lm
        pts, depth, drop = [lm], [_DEPTH], [_DROP]
        # Between lower lip and chin: moves with the jaw.
        for a, b in ((57, 8), (56, 7), (58, 9)):
            pts.append(((lm[a] + lm[b]) / 2)[None])
            depth.append([0.5])
            drop.append([0.95 * _DROP[b] + 0.05])
        # Eyelid creases (half-way up to the brow) and cheek points under the lower lids.
        lid_up = {37: 19, 38: 20, 43: 23, 44: 24}
        self._crease = []
        for lid, brow in lid_up.items():
            self._crease.append((len(np.concatenate(pts)), lid))
            pts.append(((lm[lid] + lm[brow]) / 2)[None])
            depth.append([0.42])
            drop.append([0.0])
        eye_h = [np.mean(lm[[41, 40]] - lm[[37, 38]], axis=0)[1], np.mean(lm[[47, 46]] - lm[[43, 44]], axis=0)[1]]
        self.eye_h = np.maximum(eye_h, 2.0)
        for lo, e in ((41, 0), (40, 0), (47, 1), (46, 1)):
            pts.append((lm[lo] + [0.0, 0.8 * self.eye_h[e] + 2.0])[None])
            depth.append([0.35])
            drop.append([0.0])
        # Fixed ring of anchors around the head and the frame border.
        s = float(self.size)
        ang = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        half_w = 0.5 * np.linalg.norm(lm[16] - lm[0])
        half_h = 0.5 * (lm[8, 1] - lm[19, 1])
        ring = self.center + np.stack([1.45 * half_w * np.cos(ang),
                                       half_h * np.sin(ang) * np.where(np.sin(ang) > 0, 1.75, 1.35)], 1)
        b = np.linspace(-0.2 * s, 1.2 * s, 4)
        border = np.array([(x, y) for x in b for y in b if min(x, y) < 0 or max(x, y) > s])
        for extra in (ring, border):
            pts.append(extra)
            depth.append(np.zeros(len(extra)))
            drop.append(np.zeros(len(extra)))
        self.pts = np.concatenate(pts).astype(np.float64)
        self.depth = np.concatenate([np.asarray(d, float) for d in depth])
        self.drop = np.concatenate([np.asarray(d, float) for d in drop])
        rigid_skip = {1, 3, 13, 15, 18, 20, 23, 25, 28, 29, 32, 34}
        self.ctrl_idx = np.array([i for i in range(len(self.pts)) if i not in rigid_skip])
        self.n_pts = len(self.pts)

    def global_matrix(self, roll: float, scale: float, tx: float, ty: float) -> np.ndarray:
        """2x3 canonical -> output similarity (positive roll = counter-clockwise on screen)."""
        c, s = np.cos(roll), np.sin(roll)
        r = scale * np.array([[c, s], [-s, c]])
        t = self.center + np.array([tx, ty]) - r @ self.center
        return np.hstack([r, t[:, None]])

    def displacement(self, m: dict[str, float]) -> np.ndarray:
        """Forward displacement (n_pts, 2) of the rig's points in canonical pixels."""
        d = np.zeros((self.n_pts, 2))
        drop = float(m["mouth_open"]) * self.max_drop
        d[:, 1] += drop * self.drop
        d[48, 0] += 0.08 * drop  # corners pull in slightly as the jaw opens
        d[54, 0] -= 0.08 * drop
        d[60, 0] += 0.08 * drop
        d[64, 0] -= 0.08 * drop
        blink = float(m["blink"])
        for upper, lower in ((37, 41), (38, 40), (43, 47), (44, 46)):
            d[upper, 1] += LID_DROP * blink * (self.lm[lower, 1] - self.lm[upper, 1])
        for idx, lid in self._crease:
            e = 0 if lid < 42 else 1
            d[idx, 1] += 0.3 * blink * self.eye_h[e]
        d[:, 0] += self.depth_px * np.sin(float(m["yaw"])) * self.depth
        d[:, 1] += self.depth_px * np.sin(float(m["pitch"])) * self.depth
        return d

    def render(self, m: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """One frame (size, size, 3) uint8 RGB and its true 68 landmarks (68, 2) in output pixels."""
        s = float(self.size)
        disp = self.displacement(m)
        dest = self.pts + disp
        ci = self.ctrl_idx
        w, a = tps_fit(dest[ci] / s, -disp[ci] / s)
        g = self.global_matrix(m["roll"], m["scale"], m["tx"], m["ty"])
        q = _apply(cv2.invertAffineTransform(g), self._grid)      # output grid -> canonical
        q = q + tps_eval(q / s, dest[ci] / s, w, a) * s              # -> canonical at rest
        src = _apply(self.canon_to_photo, q).astype(np.float32)   # -> photo pixels
        n = self._grid_n
        maps = cv2.resize(src.reshape(n, n, 2), (self.size, self.size), interpolation=cv2.INTER_CUBIC)
        frame = cv2.remap(self.identity.photo, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)
        out_lm = _apply(g, dest[:68])
        self._paint_mouth(frame, out_lm, disp[66, 1] - disp[62, 1])
        self._paint_lids(frame, out_lm, float(m["blink"]))
        return frame, out_lm.astype(np.float32)

    def _patch(self, pts: np.ndarray, pad: int) -> tuple[int, int, int, int] | None:
        x0, y0 = np.floor(pts.min(0)).astype(int) - pad
        x1, y1 = np.ceil(pts.max(0)).astype(int) + pad + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.size), min(y1, self.size)
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None

    def _paint_lids(self, frame: np.ndarray, lm: np.ndarray, blink: float) -> None:
        """Cover what is left of each eye with lid skin (colour of the lid above) and a lash line."""
        alpha = float(np.clip((blink - 0.25) / 0.6, 0.0, 1.0))
        if alpha <= 0.0:
            return
        for eye in (lm[36:42], lm[42:48]):
            eye_h = max(float(eye[4:6, 1].mean() - eye[1:3, 1].mean()), 1.0)
            box = self._patch(np.concatenate([eye - [0.0, 2.5 * eye_h + 4.0], eye + [0.0, 5.0]]), 3)
            if box is None:
                continue
            x0, y0, x1, y1 = box
            # The lid covers a bit more than the landmark outline: widen it, raise the upper lid.
            c = eye.mean(0)
            cover = c + (eye - c) * [1.15, 1.0] + np.array([[0, 0], [0, -2], [0, -2], [0, 0], [0, 1], [0, 1]])
            mask = cv2.GaussianBlur(_poly_mask(_smooth_closed(cover), x0, y0, x1, y1), (3, 3), 0)
            patch = frame[y0:y1, x0:x1].astype(np.float32)
            # Skin colour: the mean of a band above the upper lid and one below the lower lid.
            xs = slice(max(int(round(eye[1, 0])) - x0, 0), max(int(round(eye[2, 0])) - x0 + 1, 1))
            rows = [int(round(eye[1:3, 1].mean() - 1.5 * eye_h - 3.0)) - y0, int(round(eye[4:6, 1].mean() + 3.0)) - y0]
            band = np.concatenate([patch[min(max(r, 0), patch.shape[0] - 1), xs] for r in rows]).reshape(-1, 3)
            skin = band.mean(axis=0)
            a = (alpha * mask)[..., None]
            patch = patch * (1 - a) + skin * a
            lash = np.concatenate([eye[[0]], (eye[[5, 4]] + eye[[1, 2]]) / 2 + [0.0, 0.25 * eye_h], eye[[3]]])
            lmask = _poly_mask(lash, x0, y0, x1, y1, closed=False) * (0.6 * alpha)
            patch = patch * (1 - lmask[..., None]) + np.array([60.0, 40.0, 35.0]) * lmask[..., None]
            frame[y0:y1, x0:x1] = np.clip(patch + 0.5, 0, 255).astype(np.uint8)

    def _paint_mouth(self, frame: np.ndarray, lm: np.ndarray, drop: float) -> None:
        """Dark cavity (with upper teeth) between the inner lips, faded in over the first pixels."""
        alpha = float(np.clip((drop - 1.0) / 4.0, 0.0, 1.0))
        if alpha <= 0.0:
            return
        inner = lm[60:68]
        box = self._patch(inner, 3)
        if box is None:
            return
        x0, y0, x1, y1 = box
        cavity = _poly_mask(_smooth_closed(inner), x0, y0, x1, y1)
        gap = np.linalg.norm(lm[66] - lm[62])
        teeth_h = min(0.35 * gap, 0.09 * np.linalg.norm(lm[54] - lm[48]))
        upper = lm[60:65]
        teeth = _poly_mask(np.concatenate([upper, upper[::-1] + [0.0, teeth_h]]), x0, y0, x1, y1) * cavity
        patch = frame[y0:y1, x0:x1].astype(np.float32)
        a_c = (alpha * cavity)[..., None]
        patch = patch * (1 - a_c) + CAVITY_RGB * a_c
        a_t = (alpha * teeth)[..., None]
        patch = patch * (1 - a_t) + TEETH_RGB * a_t
        frame[y0:y1, x0:x1] = np.clip(patch + 0.5, 0, 255).astype(np.uint8)


def _smooth_closed(poly: np.ndarray, iterations: int = 2) -> np.ndarray:
    """Chaikin corner cutting of a closed polygon (rounds the lip and eye outlines)."""
    p = np.asarray(poly, np.float64)
    for _ in range(iterations):
        q = np.roll(p, -1, axis=0)
        p = np.stack([0.75 * p + 0.25 * q, 0.25 * p + 0.75 * q], axis=1).reshape(-1, 2)
    return p


def _poly_mask(poly: np.ndarray, x0: int, y0: int, x1: int, y1: int, closed: bool = True) -> np.ndarray:
    """Anti-aliased float mask (y1-y0, x1-x0) in [0, 1] of a filled polygon (or a 1-px polyline)."""
    shift = 4
    mk = np.zeros((y1 - y0, x1 - x0), np.uint8)
    p = np.round((np.asarray(poly) - [x0, y0]) * (1 << shift)).astype(np.int32)
    if closed:
        cv2.fillPoly(mk, [p], 255, lineType=cv2.LINE_AA, shift=shift)
    else:
        cv2.polylines(mk, [p], False, 255, thickness=1, lineType=cv2.LINE_AA, shift=shift)
    return mk.astype(np.float32) / 255.0
