"""Known per-frame motion of the speaker and the listener, driven by the speech plan.

Angles follow the Deep3DFaceRecon convention (radians; R = Rz Ry Rx, camera looking at the
face): positive pitch moves the nose down in the image, positive yaw moves it to the image's
right, positive roll turns the head counter-clockwise on screen. ``tx``/``ty`` are pixels of
image translation of the face centre, ``scale`` the face size relative to rest, ``blink`` 0 (open)
to 1 (closed), ``mouth_open`` 0 (rest) to 1 (widest jaw drop).
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter1d

from common.synthetic.audio import SpeechPlan, openness

FIELDS = ("pitch", "yaw", "roll", "tx", "ty", "scale", "blink", "mouth_open")
BLINK_PROFILE = np.array([0.35, 0.8, 1.0, 0.85, 0.55, 0.25])  # per frame at 30 fps


def smooth_noise(n: int, fps: float, rng: np.random.Generator, f_lo: float = 0.1, f_hi: float = 0.6,
                 n_waves: int = 3) -> np.ndarray:
    """A smooth random track in about [-1, 1]: a sum of a few slow sinusoids."""
    t = np.arange(n) / fps
    x = np.zeros(n)
    for _ in range(n_waves):
        f = rng.uniform(f_lo, f_hi)
        x += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return x / n_waves * 1.4


def blinks(n: int, fps: float, rng: np.random.Generator, mean_interval: float = 2.5) -> np.ndarray:
    """Blink track: a 6-frame close/open profile every ~``mean_interval`` s (first one after 0.3 s)."""
    out = np.zeros(n)
    prof = np.interp(np.arange(0, len(BLINK_PROFILE), 30.0 / fps), np.arange(len(BLINK_PROFILE)), BLINK_PROFILE)
    t = rng.uniform(0.3, mean_interval)
    while True:
        i = int(round(t * fps))
        if i >= n:
            break
        m = min(len(prof), n - i)
        out[i:i + m] = np.maximum(out[i:i + m], prof[:m])
        t += rng.uniform(0.6, 2.0) * mean_interval
    return out


def speaker_motion(plan: SpeechPlan, n: int, fps: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Speaker: mouth follows the speech; head sways and bobs a little with emphasis."""
    sub = (np.arange(4 * n) + 0.5) / (4 * fps)  # average 4 sub-samples per frame
    mouth = openness(plan, sub).reshape(n, 4).mean(axis=1)
    energy = uniform_filter1d(mouth, 9, mode="nearest")
    return {
        "pitch": 0.06 * smooth_noise(n, fps, rng) + 0.05 * energy,
        "yaw": 0.14 * smooth_noise(n, fps, rng),
        "roll": 0.07 * smooth_noise(n, fps, rng),
        "tx": 6.0 * smooth_noise(n, fps, rng),
        "ty": 4.0 * smooth_noise(n, fps, rng),
        "scale": 1.0 + 0.03 * smooth_noise(n, fps, rng),
        "blink": blinks(n, fps, rng),
        "mouth_open": np.clip(mouth, 0.0, 1.0),
    }


def listener_motion(plan: SpeechPlan, n: int, fps: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Listener: nods (pitch down-up at ~2 Hz) during the speaker's pauses, mouth nearly closed."""
    t = (np.arange(n) + 0.5) / fps
    nod = np.zeros(n)
    for a, b in plan.pauses:
        if b - a < 0.3 or a < 0.05:  # no nod in the leading silence
            continue
        amp = rng.uniform(0.10, 0.16)
        period = rng.uniform(0.4, 0.6)
        n_nods = max(1, min(2, int((b - a) / period)))
        inside = (t >= a) & (t < a + n_nods * period)
        nod[inside] = amp * np.sin(np.pi * (t[inside] - a) / period) ** 2
    pitch = 0.03 * smooth_noise(n, fps, rng) + nod
    return {
        "pitch": pitch,
        "yaw": 0.08 * smooth_noise(n, fps, rng),
        "roll": 0.05 * smooth_noise(n, fps, rng),
        "tx": 4.0 * smooth_noise(n, fps, rng),
        "ty": 3.0 * smooth_noise(n, fps, rng) + 25.0 * nod,  # a nod also dips the head
        "scale": 1.0 + 0.02 * smooth_noise(n, fps, rng),
        "blink": blinks(n, fps, rng, mean_interval=3.0),
        "mouth_open": np.clip(0.06 * (smooth_noise(n, fps, rng, 0.05, 0.3) + 1.0), 0.0, 0.15),
    }
