"""Lip-sync AV offset and confidence with SyncNet, as joonson's ``SyncNetInstance.evaluate``.

``mfcc`` is our own implementation of ``python_speech_features.mfcc`` defaults (13 cepstra,
25 ms / 10 ms frames, 26 mel filters, NFFT 512, pre-emphasis 0.97, lifter 22, log energy in c0),
applied to int16-valued 16 kHz samples as the original does. ``sync_scores`` pairs 5-frame lip
windows (25 fps) with 20 MFCC columns and scans +-vshift offsets.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F

from evaluation.networks.syncnet import SyncNetS


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _hz2mel(hz):
    return 2595 * np.log10(1 + hz / 700.0)


def _mel2hz(mel):
    return 700 * (10 ** (mel / 2595.0) - 1)


def mel_filterbank(nfilt: int = 26, nfft: int = 512, sr: int = 16000, lowfreq: float = 0,
                   highfreq: float | None = None) -> np.ndarray:
    """(nfilt, nfft//2+1) triangular filters on FFT bins floor((nfft+1)*f/sr)."""
    highfreq = highfreq or sr / 2
    mels = np.linspace(_hz2mel(lowfreq), _hz2mel(highfreq), nfilt + 2)
    bins = np.floor((nfft + 1) * _mel2hz(mels) / sr)
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        a, b, c = int(bins[j]), int(bins[j + 1]), int(bins[j + 2])
        i = np.arange(a, b)
        fb[j, a:b] = (i - bins[j]) / (bins[j + 1] - bins[j])
        i = np.arange(b, c)
        fb[j, b:c] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    return fb


def mfcc(signal: np.ndarray, sr: int = 16000, winlen: float = 0.025, winstep: float = 0.01,
         numcep: int = 13, nfilt: int = 26, nfft: int = 512, preemph: float = 0.97,
         ceplifter: int = 22) -> np.ndarray:
    """(T,) samples -> (n_frames, numcep) float64 MFCC (python_speech_features defaults)."""
    x = np.asarray(signal, dtype=np.float64).reshape(-1)
    x = np.append(x[:1], x[1:] - preemph * x[:-1])
    flen, fstep = _round_half_up(winlen * sr), _round_half_up(winstep * sr)
    n = len(x)
    nframes = 1 if n <= flen else 1 + int(math.ceil((1.0 * n - flen) / fstep))
    padded = np.concatenate([x, np.zeros((nframes - 1) * fstep + flen - n)])
    idx = np.arange(flen)[None, :] + fstep * np.arange(nframes)[:, None]
    frames = padded[idx]  # (n_frames, flen)
    pspec = np.square(np.abs(np.fft.rfft(frames, nfft))) / nfft
    energy = pspec.sum(1)
    energy = np.where(energy == 0, np.finfo(float).eps, energy)
    feat = pspec @ mel_filterbank(nfilt, nfft, sr).T
    feat = np.where(feat == 0, np.finfo(float).eps, feat)
    feat = scipy.fft.dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :numcep]
    if ceplifter > 0:
        feat = feat * (1 + (ceplifter / 2.0) * np.sin(np.pi * np.arange(numcep) / ceplifter))
    feat[:, 0] = np.log(energy)
    return feat


@dataclass
class SyncResult:
    offset: int
    conf: float
    min_dist: float
    mean_dists: np.ndarray  # (2*vshift+1,)
    dists: np.ndarray  # (L, 2*vshift+1)


@torch.no_grad()
def sync_scores(net: SyncNetS, frames_bgr: np.ndarray, pcm16: np.ndarray, batch_size: int = 20,
                vshift: int = 15, device: torch.device | str = "cpu") -> SyncResult:
    """Score a face-crop clip.

    frames_bgr: (T,224,224,3) uint8 BGR at 25 fps; pcm16: (S,) int16-valued 16 kHz audio.
    """
    if frames_bgr.ndim != 4 or frames_bgr.shape[1:] != (224, 224, 3):
        raise ValueError(f"frames must be (T,224,224,3), got {frames_bgr.shape}")
    cc = torch.from_numpy(mfcc(pcm16, 16000).T.copy()).float()  # (13, n_mfcc)
    n_win = min(len(frames_bgr), len(pcm16) // 640) - 5
    if n_win <= 0:
        raise ValueError(f"clip too short for SyncNet ({len(frames_bgr)} frames, {len(pcm16)} samples)")
    video = torch.from_numpy(frames_bgr).permute(3, 0, 1, 2).float()  # (3,T,224,224)
    im_feat, cc_feat = [], []
    for i in range(0, n_win, batch_size):
        idx = range(i, min(n_win, i + batch_size))
        lip = torch.stack([video[:, v:v + 5] for v in idx]).to(device)  # (b,3,5,224,224)
        aud = torch.stack([cc[None, :, 4 * v:4 * v + 20] for v in idx]).to(device)  # (b,1,13,20)
        im_feat.append(net.forward_lip(lip).cpu())
        cc_feat.append(net.forward_aud(aud).cpu())
    im = torch.cat(im_feat)
    au = F.pad(torch.cat(cc_feat), (0, 0, vshift, vshift))
    win = 2 * vshift + 1
    dists = torch.stack([F.pairwise_distance(im[[i]].repeat(win, 1), au[i:i + win]) for i in range(len(im))])
    mean = dists.mean(0)
    minval, minidx = torch.min(mean, 0)
    return SyncResult(offset=int(vshift - minidx), conf=float(torch.median(mean) - minval), min_dist=float(minval),
                      mean_dists=mean.numpy(), dists=dists.numpy())
