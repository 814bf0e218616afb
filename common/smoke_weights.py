"""Smoke-test weights: the deterministic fill rule and the writer of stand-in weights files.

The fill rule of ``tests/golden/README.md`` gives every state-dict entry a deterministic value
(``seed = crc32(key)``, numpy PCG64 normal draws, a per-kind formula). Which modules count as
norm / PReLU / ConvTranspose, and any post-scale, is data: the ``fill_rule`` entry of each
``common/manifests/<network>.json``. How the values sit in a released file (the checkpoint dict
around the state dict) is data too: the registry's ``WeightSpec.container`` in
:mod:`common.weights`. Nothing here knows a network by name.

* :func:`fill_state_dict` / :func:`fill_tensor` / :func:`fill_plan`: the parity-data weights.
* :func:`make_smoke_checkpoint`: a stand-in file in a released file's exact layout, marked by a
  sidecar ``<file>.smoke.json`` (:func:`common.weights.is_smoke` reads it), used by the demo,
  the tests and ``python -m common.weights make-smoke``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from common.io import UserError, atomic_path, write_json_atomic
from common.weights import MANIFEST_DIR, get_spec, is_smoke, load_manifest, manifest_shapes, smoke_sidecar

logger = logging.getLogger("common.smoke_weights")

FILL_KINDS = (
    "weight",
    "convT_weight",
    "norm_weight",
    "small",
    "running_mean",
    "running_var",
    "zero_int64",
    "prelu",
)


@dataclass(frozen=True)
class FillRules:
    """Per-network module classes needed by the fill rule (regexes on module prefixes).

    ``norm``: modules that are BatchNorm/LayerNorm/InstanceNorm/GroupNorm (incl. LayerNorm2d);
    ``prelu``: PReLU modules; ``conv_transpose``: ConvTranspose modules (weight is in, out, k...);
    ``post_scale``: (regex on the full key, factor) applied after the base rule.
    All regexes are matched with ``re.fullmatch``. Read from a manifest's ``fill_rule`` entry.
    """

    norm: tuple[str, ...] = ()
    prelu: tuple[str, ...] = ()
    conv_transpose: tuple[str, ...] = ()
    post_scale: tuple[tuple[str, float], ...] = ()

    @classmethod
    def from_manifest(cls, entry: Mapping[str, Any]) -> "FillRules":
        return cls(norm=tuple(entry.get("norm", ())), prelu=tuple(entry.get("prelu", ())),
                   conv_transpose=tuple(entry.get("conv_transpose", ())),
                   post_scale=tuple((str(p), float(f)) for p, f in entry.get("post_scale", ())))


class _ManifestFillRules(Mapping[str, FillRules]):
    """network -> :class:`FillRules`, for every manifest that declares a ``fill_rule``."""

    def __getitem__(self, network: str) -> FillRules:
        try:
            entry = load_manifest(network).get("fill_rule")
        except KeyError:
            entry = None
        if entry is None:
            raise KeyError(network)
        return FillRules.from_manifest(entry)

    def __iter__(self) -> Iterator[str]:
        for path in sorted(MANIFEST_DIR.glob("*.json")):
            if "fill_rule" in load_manifest(path.stem):
                yield path.stem

    def __len__(self) -> int:
        return sum(1 for _ in self)


FILL_RULES: Mapping[str, FillRules] = _ManifestFillRules()


def _matches(patterns: Iterable[str], text: str) -> bool:
    return any(re.fullmatch(p, text) for p in patterns)


def fill_kind(key: str, shape: tuple[int, ...], rules: FillRules) -> tuple[str, int | None, float | None]:
    """Return (kind, fan_in, post_scale) of one state-dict entry under the fill rule."""
    module, _, param = key.rpartition(".")
    shape = tuple(int(s) for s in shape)
    post = next((f for p, f in rules.post_scale if re.fullmatch(p, key)), None)
    if key.endswith("num_batches_tracked"):
        return "zero_int64", None, post
    if key.endswith("running_var"):
        return "running_var", None, post
    if key.endswith("running_mean"):
        return "running_mean", None, post
    if module and _matches(rules.norm, module):
        if param == "weight":
            return "norm_weight", None, post
        if param == "bias":
            return "small", None, post
    if module and param == "weight" and _matches(rules.prelu, module):
        return "prelu", None, post
    if module and param == "weight" and _matches(rules.conv_transpose, module) and len(shape) >= 2:
        return "convT_weight", shape[0] * math.prod(shape[2:]), post
    if len(shape) >= 2:
        return "weight", math.prod(shape[1:]), post
    return "small", None, post


def fill_tensor(key: str, shape: Iterable[int], kind: str, post_scale: float | None = None,
                fan_in: int | None = None) -> np.ndarray:
    """Deterministic fill-rule value of one entry (float32, or int64 for ``zero_int64``).

    ``seed = crc32(key)``; ``v = default_rng(seed).standard_normal(shape)`` (always drawn);
    then the kind's formula in float64, the optional post-scale, and one float32 cast.
    ``fan_in`` defaults to the one derived from ``shape`` for weight kinds.
    """
    shape = tuple(int(s) for s in shape)
    if kind not in FILL_KINDS:
        raise ValueError(f"unknown fill kind {kind!r} for {key}")
    rng = np.random.default_rng(zlib.crc32(key.encode("utf-8")))
    v = np.asarray(rng.standard_normal(shape), dtype=np.float64)
    if kind == "zero_int64":
        return np.zeros(shape, dtype=np.int64)
    if kind == "running_var":
        val = 1.0 + 0.1 * np.abs(v)
    elif kind == "running_mean":
        val = 0.1 * v
    elif kind == "norm_weight":
        val = 1.0 + 0.1 * v
    elif kind == "prelu":
        val = 0.25 + 0.01 * v
    elif kind == "small":
        val = v * 0.02
    else:  # weight / convT_weight
        if fan_in is None:
            fan_in = shape[0] * math.prod(shape[2:]) if kind == "convT_weight" else math.prod(shape[1:])
        g = 1.0 / math.sqrt(fan_in)
        val = v * g
    if post_scale is not None:
        val = post_scale * val
    return val.astype(np.float32)


def fill_plan(network: str) -> dict[str, tuple[str, int | None, float | None]]:
    """key -> (kind, fan_in, post_scale) for every manifest entry, in manifest order."""
    if network not in FILL_RULES:
        raise KeyError(f"no fill_rule in manifest {MANIFEST_DIR / (network + '.json')} "
                       f"(known: {', '.join(FILL_RULES)})")
    rules = FILL_RULES[network]
    return {k: fill_kind(k, s, rules) for k, s in manifest_shapes(network).items()}


def fill_state_dict(network: str) -> dict[str, torch.Tensor]:
    """Fill-rule state dict of ``network`` (keys in manifest order; float32, int64 counters).

    Example: ``model.load_state_dict(fill_state_dict('vico_speaker_generator'))``.
    """
    shapes = manifest_shapes(network)
    out: dict[str, torch.Tensor] = {}
    for key, (kind, fan_in, post) in fill_plan(network).items():
        out[key] = torch.from_numpy(fill_tensor(key, shapes[key], kind, post, fan_in))
    return out


# --------------------------------------------------------------------------------------------
# Smoke-test files in the released layouts
# --------------------------------------------------------------------------------------------

STATE_DICT = "$state_dict"   # container value: the state dict; "$state_dict:PREFIX" prefixes its keys
OPTIMIZER = "$optimizer"     # container value {"$optimizer": {hyper}}: an empty optimizer state_dict


def _expand(value: Any, sd: Mapping[str, torch.Tensor], n_params: int) -> Any:
    """One container value with its placeholders replaced (see ``WeightSpec.container``)."""
    if isinstance(value, str) and (value == STATE_DICT or value.startswith(STATE_DICT + ":")):
        prefix = value[len(STATE_DICT) + 1:]
        return {prefix + k: v for k, v in sd.items()}
    if isinstance(value, Mapping) and set(value) == {OPTIMIZER}:
        hyper = dict(value[OPTIMIZER])
        return {"state": {}, "param_groups": [dict(hyper, params=list(range(n_params)))]}
    if isinstance(value, Mapping):
        return {k: _expand(v, sd, n_params) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_expand(v, sd, n_params) for v in value)
    return value


def smoke_payload(name: str) -> Any:
    """The object a smoke-test file of ``name`` holds: fill-rule weights in the released layout.

    The layout is the registry's ``container`` (a dict template); without one, the state dict
    itself with ``strip_prefix`` put back on every key (e.g. the DDP ``module.`` prefix).
    """
    spec = get_spec(name)
    if spec.manifest is None:
        raise UserError(f"{name}: no manifest, so no smoke-test file can be made ({spec.note})")
    sd = fill_state_dict(spec.manifest)
    n = sum(1 for k in sd if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    if spec.container is None:
        return _expand(f"{STATE_DICT}:{spec.strip_prefix or ''}", sd, n)
    return _expand(dict(spec.container), sd, n)


def make_smoke_checkpoint(name: str, path: str | os.PathLike | None = None) -> Path:
    """Write a smoke-test file of ``name`` (fill-rule weights, released layout) atomically.

    ``path`` defaults to the registry's default place. A sidecar ``<path>.smoke.json`` marks it
    as not real. Refuses (UserError) to overwrite a real weights file.
    """
    spec = get_spec(name)
    p = Path(path) if path is not None else spec.default_file()
    if p is None:
        raise UserError(f"{name}: managed by a third-party package, no smoke-test file ({spec.note})")
    if p.exists() and not is_smoke(p):
        raise UserError(f"{p}: a real weights file is there; not overwriting it with smoke-test weights")
    payload = smoke_payload(name)
    # Sidecar first: a crash between the two writes leaves a harmless sidecar, never an
    # unmarked fake weights file.
    sidecar = {
        "smoke_test": True,
        "warning": "NOT real weights: deterministic synthetic values for tests and demos only",
        "weights": name,
        "manifest": spec.manifest,
        "made_by": "python -m common.weights make-smoke (common.smoke_weights.make_smoke_checkpoint)",
        "rule": "fill rule of tests/golden/README.md (seed = crc32(key), numpy PCG64 normal draws)",
        "layout": spec.note,
        "torch": torch.__version__,
    }
    write_json_atomic(smoke_sidecar(p), sidecar)
    with atomic_path(p) as tmp:
        torch.save(payload, tmp)
    st = p.stat()  # so that a real file copied over it later is recognised as real
    write_json_atomic(smoke_sidecar(p), {**sidecar, "file": {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}})
    logger.info("wrote smoke-test %s -> %s", name, p)
    return p
