"""The ViCo speaker and listener generators (spec 3.2), parameter names as the original.

Both map per-frame inputs to the vico dynamic coefficients (angle 3 | exp 64 | trans 3 | crop 3,
normalised units). Output row t is the prediction of ground-truth frame t+1 (spec 3.3).

Padding: rows t >= lengths[i] of the output equal the fc bias, as in the original (whose
pad_packed_sequence left zeros there). Our default path runs the LSTM on the padded batch,
which keeps PyTorch's fused kernels whatever the length mix; ``packed=True`` runs the original
pack_padded_sequence path instead (same numbers, used by the benchmark and tests).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .config import ListenerConfig, SpeakerConfig


def _check(name: str, x: torch.Tensor, shape: tuple) -> None:
    """Raise ValueError unless ``x.shape`` matches ``shape`` (None = any)."""
    if x.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
        raise ValueError(f"{name}: expected shape {tuple('*' if s is None else s for s in shape)}, got {tuple(x.shape)}")


def _lengths_or_full(lengths: torch.Tensor | None, b: int, t: int) -> torch.Tensor:
    if lengths is None:
        return torch.full((b,), t, dtype=torch.long)
    lengths = torch.as_tensor(lengths).to("cpu", torch.long)
    _check("lengths", lengths, (b,))
    if int(lengths.min()) < 1 or int(lengths.max()) > t:
        raise ValueError(f"lengths must lie in [1, {t}], got {lengths.tolist()}")
    return lengths


def _valid_mask(lengths: torch.Tensor, t: int, device: torch.device) -> torch.Tensor:
    """(B, T) float mask, 1 where t < lengths[i]."""
    return (torch.arange(t, device=device)[None, :] < lengths.to(device)[:, None]).to(torch.float32)


def _reverse_index(lengths: torch.Tensor, t: int, device: torch.device) -> torch.Tensor:
    """(B, T) gather index that reverses each row within its length (padding stays in place)."""
    ar = torch.arange(t, device=device)[None, :]
    ln = lengths.to(device)[:, None]
    return torch.where(ar < ln, ln - 1 - ar, ar)


def run_lstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor, hx: tuple | None,
             packed: bool = False) -> torch.Tensor:
    """Run a batch_first ``lstm`` over padded ``x`` (B, T, I) -> (B, T, D*H), zeros at t >= length.

    Equal to the original pack_padded_sequence/pad_packed_sequence path for every length mix, but
    without packing: causal (unidirectional) layers need nothing special; a bidirectional LSTM
    with unequal lengths runs layer by layer with each row reversed within its length for the
    backward direction, so every call stays on the fused kernel.
    """
    b, t, _ = x.shape
    mask = _valid_mask(lengths, t, x.device)[..., None]
    if packed:
        pk = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = lstm(pk, hx)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=t)
        return out
    if not lstm.bidirectional or bool((lengths == t).all()):
        out, _ = lstm(x, hx)
        return out * mask
    assert not lstm.bias and lstm.proj_size == 0, "only the bias-free, projection-free LSTM is supported"
    rev = _reverse_index(lengths, t, x.device)[..., None]
    h = x
    n = lstm.num_layers
    for layer in range(n):
        outs = []
        for d, sfx in enumerate(("", "_reverse")):
            w = [getattr(lstm, f"weight_ih_l{layer}{sfx}"), getattr(lstm, f"weight_hh_l{layer}{sfx}")]
            inp = h if d == 0 else torch.gather(h, 1, rev.expand(-1, -1, h.shape[-1]))
            state = None
            if hx is not None:
                k = layer * 2 + d
                state = (hx[0][k : k + 1], hx[1][k : k + 1])
            else:
                z = x.new_zeros(1, b, lstm.hidden_size)
                state = (z, z)
            o = torch.lstm(inp, state, w, False, 1, 0.0, lstm.training, False, True)[0]
            if d == 1:
                o = torch.gather(o, 1, rev.expand(-1, -1, o.shape[-1]))
            outs.append(o)
        h = torch.cat(outs, dim=-1)
        if layer < n - 1 and lstm.dropout > 0:
            h = F.dropout(h, lstm.dropout, lstm.training)
    return h * mask


class _InitState(nn.Module):
    """Frame-0 coefficients -> initial LSTM state (h0, c0), each (layers*dirs, B, H)."""

    def __init__(self, coeff_dim: int, n_states: int, hidden: int):
        super().__init__()
        self.n_states, self.hidden = n_states, hidden
        self.get_initial_state = nn.Sequential(
            nn.Linear(coeff_dim, coeff_dim), nn.Tanh(), nn.Linear(coeff_dim, 2 * n_states * hidden))

    def forward(self, init_normed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.get_initial_state(init_normed).view(-1, 2, self.n_states, self.hidden)  # (B, 2, L*D, H)
        s = s.permute(1, 2, 0, 3)  # (2, L*D, B, H)
        return s[0].contiguous(), s[1].contiguous()


class ListenerFusion(nn.Module):
    """Original ``fusion`` block: init state from listener frame 0, per-frame fusion, LSTM."""

    def __init__(self, cfg: ListenerConfig):
        super().__init__()
        driven_dim = cfg.audio_dim + cfg.coeff_dim
        self.layernorm_init = nn.LayerNorm(cfg.coeff_dim)
        self.layernorm_driven = nn.LayerNorm(driven_dim)
        self.get_initial_state = nn.Sequential(
            nn.Linear(cfg.coeff_dim, cfg.coeff_dim), nn.Tanh(),
            nn.Linear(cfg.coeff_dim, 2 * cfg.num_layers * cfg.hidden_dim))
        self.fusion = nn.Sequential(nn.Linear(driven_dim, cfg.fusion_dim), nn.Tanh())
        self.lstm_layers = nn.LSTM(cfg.fusion_dim, cfg.hidden_dim, cfg.num_layers, bias=False,
                                   batch_first=True, dropout=cfg.dropout, bidirectional=False)
        self.num_layers, self.hidden = cfg.num_layers, cfg.hidden_dim

    def forward(self, audio, driven, init, lengths, packed=False):
        b = audio.shape[0]
        s = self.get_initial_state(self.layernorm_init(init)).view(b, 2, self.num_layers, self.hidden)
        s = s.permute(1, 2, 0, 3)  # (2, L, B, H)
        hx = (s[0].contiguous(), s[1].contiguous())
        x = self.fusion(self.layernorm_driven(torch.cat([audio, driven], dim=-1)))  # (B, T, F)
        return run_lstm(self.lstm_layers, x, lengths, hx, packed)


class ListenerGenerator(nn.Module):
    """audio (B,T,A), driven = speaker motion (B,T,C), init = listener frame 0 (B,C) -> (B,T,C)."""

    def __init__(self, cfg: ListenerConfig = ListenerConfig()):
        super().__init__()
        self.config = cfg
        self.fusion = ListenerFusion(cfg)
        self.dynam_3dmm_fc = nn.Linear(cfg.hidden_dim, cfg.coeff_dim)

    def forward(self, audio: torch.Tensor, driven: torch.Tensor, init: torch.Tensor,
                lengths: torch.Tensor | None = None, packed: bool = False) -> torch.Tensor:
        c = self.config
        b, t = audio.shape[:2]
        _check("audio", audio, (b, t, c.audio_dim))
        _check("driven", driven, (b, t, c.coeff_dim))
        _check("init", init, (b, c.coeff_dim))
        lengths = _lengths_or_full(lengths, b, t)
        out = self.dynam_3dmm_fc(self.fusion(audio, driven, init, lengths, packed))  # (B, T, C)
        if c.residual:
            out = out + init[:, None, :]
        return out


class AudioToFace(nn.Module):
    """Original ``audio_to_face`` block (plus optional frame-0 initial state)."""

    def __init__(self, cfg: SpeakerConfig):
        super().__init__()
        self.layernorm = nn.LayerNorm(cfg.audio_dim)
        self.fusion = nn.Sequential(nn.Linear(cfg.audio_dim, cfg.fusion_dim), nn.Tanh())
        self.lstm_layers = nn.LSTM(cfg.fusion_dim, cfg.hidden_dim, cfg.num_layers, bias=False,
                                   batch_first=True, dropout=cfg.dropout, bidirectional=cfg.bidirectional)
        if cfg.init_conditioning:
            self.layernorm_init = nn.LayerNorm(cfg.coeff_dim)
            self.init_state = _InitState(cfg.coeff_dim, cfg.num_layers * (2 if cfg.bidirectional else 1),
                                         cfg.hidden_dim)

    def forward(self, audio, init, lengths, packed=False):
        hx = self.init_state(self.layernorm_init(init)) if hasattr(self, "init_state") else None
        x = self.fusion(self.layernorm(audio))  # (B, T, F)
        return run_lstm(self.lstm_layers, x, lengths, hx, packed)


class SpeakerGenerator(nn.Module):
    """audio (B,T,A) [-> init = speaker frame 0 (B,C) if conditioned] -> (B,T,C). ``driven`` is
    accepted for a uniform call signature and unused, as in the original."""

    def __init__(self, cfg: SpeakerConfig = SpeakerConfig()):
        super().__init__()
        self.config = cfg
        self.audio_to_face = AudioToFace(cfg)
        d = 2 if cfg.bidirectional else 1
        self.dynam_3dmm_fc = nn.Linear(d * cfg.hidden_dim, cfg.coeff_dim)

    def forward(self, audio: torch.Tensor, driven: torch.Tensor | None = None, init: torch.Tensor | None = None,
                lengths: torch.Tensor | None = None, packed: bool = False) -> torch.Tensor:
        c = self.config
        b, t = audio.shape[:2]
        _check("audio", audio, (b, t, c.audio_dim))
        if (c.residual or c.init_conditioning):
            if init is None:
                raise ValueError("this speaker config needs init (frame-0 coefficients)")
            _check("init", init, (b, c.coeff_dim))
        lengths = _lengths_or_full(lengths, b, t)
        out = self.dynam_3dmm_fc(self.audio_to_face(audio, init, lengths, packed))  # (B, T, C)
        if c.residual:
            out = out + init[:, None, :]
        return out
