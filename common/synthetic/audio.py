"""Deterministic speech-like audio: syllables of formant-shaped harmonics separated by pauses.

The signal is built from a *plan* (syllable and pause timeline). Voiced nuclei are sums of the
harmonics of a gliding f0; each harmonic is weighted by a glottal tilt and by the gains of three
second-order formant resonators whose centres move from vowel to vowel, i.e. the formant filter
is applied exactly in the frequency domain. Consonant onsets are short band-passed noise bursts.
Pauses hold only a faint noise floor. Everything is seeded.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import butter, sosfilt

# Vowel formants (F1, F2, F3) in Hz, and how far the jaw opens for it (0..1).
VOWELS: dict[str, tuple[tuple[float, float, float], float]] = {
    "a": ((730.0, 1090.0, 2440.0), 1.00),
    "o": ((570.0, 840.0, 2410.0), 0.80),
    "e": ((530.0, 1840.0, 2480.0), 0.70),
    "u": ((300.0, 870.0, 2240.0), 0.55),
    "i": ((270.0, 2290.0, 3010.0), 0.50),
}
FORMANT_BANDWIDTHS = (90.0, 110.0, 170.0)
CONTROL_RATE = 200  # Hz, rate of the formant/amplitude control tracks
NOISE_FLOOR = 0.002  # std of the background noise (pauses are this quiet)


@dataclass
class Syllable:
    start: float  # seconds
    end: float
    vowel: str
    stress: float  # peak amplitude factor, 0.55..1


@dataclass
class SpeechPlan:
    """The timeline of one clip's speech. ``pauses`` are [start, end) seconds of silence."""
    duration: float
    f0: float
    syllables: list[Syllable] = field(default_factory=list)
    pauses: list[tuple[float, float]] = field(default_factory=list)
    phrases: list[tuple[float, float]] = field(default_factory=list)


def plan_speech(duration: float, rng: np.random.Generator) -> SpeechPlan:
    """Phrases of 3-8 syllables (~4.5 syllables/s) separated by 0.3-1.0 s pauses.

    A clip of 2 s or more always contains at least one full pause between two phrases.
    """
    plan = SpeechPlan(duration=duration, f0=float(rng.uniform(105.0, 205.0)))
    t = float(rng.uniform(0.10, 0.30))  # leading silence
    plan.pauses.append((0.0, t))
    vowels = list(VOWELS)
    first = True
    while t < duration:
        n_syl = int(rng.integers(3, 9))
        # Keep the first phrase short enough that a pause (and more speech) fits in the clip.
        max_len = 0.45 * duration if first else duration
        start = t
        for _ in range(n_syl):
            d = float(rng.uniform(0.15, 0.30))
            if t + d - start > max_len and t > start:
                break
            plan.syllables.append(Syllable(t, t + d, vowels[int(rng.integers(len(vowels)))],
                                           float(rng.uniform(0.55, 1.0))))
            t += d
        plan.phrases.append((start, min(t, duration)))
        gap = float(rng.uniform(0.30, 1.00))
        plan.pauses.append((t, t + gap))
        t += gap
        first = False
    plan.pauses = [(a, min(b, duration)) for a, b in plan.pauses if a < duration]
    plan.syllables = [s for s in plan.syllables if s.start < duration]
    return plan


def _syllable_envelope(t: np.ndarray, s: Syllable) -> np.ndarray:
    """Voiced amplitude of one syllable on times ``t``: 35 ms attack, 60 ms release, 0 outside."""
    att, rel = 0.035, 0.06
    x = np.zeros_like(t)
    inside = (t >= s.start) & (t < s.end)
    ti = t[inside]
    up = np.clip((ti - s.start - 0.02) / att, 0.0, 1.0)  # voicing starts after a 20 ms onset
    down = np.clip((s.end - ti) / rel, 0.0, 1.0)
    x[inside] = s.stress * np.sin(0.5 * np.pi * np.minimum(up, down)) ** 2
    return x


def voiced_envelope(plan: SpeechPlan, t: np.ndarray) -> np.ndarray:
    """Planned voiced amplitude (0..1) at times ``t`` (seconds)."""
    env = np.zeros_like(t, dtype=np.float64)
    for s in plan.syllables:
        env += _syllable_envelope(t, s)
    return env


def openness(plan: SpeechPlan, t: np.ndarray) -> np.ndarray:
    """Planned jaw opening (0..1) at times ``t``: voiced envelope x vowel openness."""
    out = np.zeros_like(t, dtype=np.float64)
    for s in plan.syllables:
        out += _syllable_envelope(t, s) * VOWELS[s.vowel][1]
    return np.clip(out, 0.0, 1.0)


def _formant_tracks(plan: SpeechPlan, tc: np.ndarray) -> np.ndarray:
    """(3, T) formant centres on control times ``tc``, gliding between syllable targets."""
    if not plan.syllables:
        return np.tile(np.array(VOWELS["e"][0])[:, None], (1, len(tc)))
    centers = np.array([0.5 * (s.start + s.end) for s in plan.syllables])
    targets = np.array([VOWELS[s.vowel][0] for s in plan.syllables])  # (S, 3)
    return np.stack([np.interp(tc, centers, targets[:, j]) for j in range(3)])


def _resonator_gain(f: np.ndarray, fc: np.ndarray, bw: float) -> np.ndarray:
    """Magnitude response of a second-order resonator with unit gain at DC."""
    r = f / fc
    return 1.0 / np.sqrt((1.0 - r * r) ** 2 + (f * bw / (fc * fc)) ** 2)


def synthesize(plan: SpeechPlan, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Mono float64 samples in [-1, 1] realising ``plan``; ``round(duration * sr)`` samples."""
    sr = int(sample_rate)
    n = int(round(plan.duration * sr))
    t = np.arange(n) / sr
    tc = np.arange(int(np.ceil(plan.duration * CONTROL_RATE)) + 2) / CONTROL_RATE

    # f0: per-phrase declination, per-syllable accent, 5 Hz vibrato.
    f0c = np.full_like(tc, plan.f0)
    for a, b in plan.phrases:
        inside = (tc >= a) & (tc < b)
        f0c[inside] *= 1.15 - 0.25 * (tc[inside] - a) / max(b - a, 1e-3)
    for s in plan.syllables:
        mid = 0.5 * (s.start + s.end)
        f0c *= 1.0 + 0.08 * (s.stress - 0.5) * np.exp(-0.5 * ((tc - mid) / 0.06) ** 2)
    f0c *= 1.0 + 0.01 * np.sin(2 * np.pi * 5.0 * tc + rng.uniform(0, 2 * np.pi))
    f0 = np.interp(t, tc, f0c)
    phase = 2 * np.pi * np.cumsum(f0) / sr

    # Harmonic amplitudes on the control grid: tilt x formant gains; zero above 5 kHz.
    formants = _formant_tracks(plan, tc)  # (3, Tc)
    env_c = voiced_envelope(plan, tc)
    n_harm = int(min(5000.0, 0.45 * sr) // (0.85 * plan.f0))
    voiced = np.zeros(n)
    for k in range(1, n_harm + 1):
        fk = k * f0c
        gain = sum(_resonator_gain(fk, formants[j], FORMANT_BANDWIDTHS[j]) * w
                   for j, w in enumerate((1.0, 0.6, 0.3)))
        amp_c = env_c * gain * k ** -1.2 * (fk < min(5000.0, 0.45 * sr))
        if not amp_c.any():
            continue
        voiced += np.interp(t, tc, amp_c) * np.sin(k * phase)
    peak = np.max(np.abs(voiced)) if n else 0.0
    if peak > 0:
        voiced *= 0.6 / peak

    # Consonant onsets: 20-40 ms bursts of band-passed noise at most syllable starts.
    sos = butter(4, [2000.0, min(6500.0, 0.45 * sr)], btype="bandpass", fs=sr, output="sos")
    hiss = sosfilt(sos, rng.standard_normal(n))
    hiss /= max(np.max(np.abs(hiss)), 1e-9)
    bursts = np.zeros(n)
    for s in plan.syllables:
        if rng.random() < 0.25:
            continue  # a vowel-initial syllable
        d = rng.uniform(0.02, 0.04)
        inside = (t >= s.start) & (t < s.start + d)
        bursts[inside] = 0.15 * s.stress * np.sin(np.pi * (t[inside] - s.start) / d)
    x = voiced + bursts * hiss + NOISE_FLOOR * rng.standard_normal(n)
    return np.clip(x, -1.0, 1.0)


def frame_rms(samples: np.ndarray, sample_rate: int, fps: float, n_frames: int) -> np.ndarray:
    """RMS of each video frame's audio slice [i*spf, (i+1)*spf), spf = int(sr/fps) (as upstream)."""
    spf = int(sample_rate / fps)
    x = np.zeros(n_frames * spf)
    m = min(len(x), len(samples))
    x[:m] = samples[:m]
    return np.sqrt(np.mean(x.reshape(n_frames, spf) ** 2, axis=1))
