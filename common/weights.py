"""Pretrained weight files: registry, loading, and the deterministic fill rule.

Three things live here:

* ``REGISTRY``: one :class:`WeightSpec` per released file the pipeline uses (what it is,
  where users obtain it, its default place under the weights directory, the CLI flag that
  points to it, and the checkpoint layout: which dict key holds the weights, which key
  prefix to strip, which manifest lists its keys).
* Loading: :func:`resolve_weights`, :func:`load_checkpoint`, :func:`load_state_dict_strict`
  and :func:`check_manifest` report a missing file, a wrong file, or a key/shape mismatch in
  one line (``common.io.UserError``).
* The fill rule of ``tests/golden/README.md``: :func:`fill_tensor` / :func:`fill_state_dict`
  give the deterministic synthetic weights used by the parity data, and
  :func:`make_smoke_checkpoint` writes them in a released file's exact layout for smoke tests.

Command line::

    python -m common.weights list
    python -m common.weights make-smoke --all --dir weights/
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from common import cli
from common.io import UserError, atomic_path, run_cli, setup_logging, write_json_atomic

logger = logging.getLogger("common.weights")

REPO_ROOT = Path(__file__).resolve().parent.parent
MANIFEST_DIR = Path(__file__).resolve().parent / "manifests"
WEIGHTS_DIR_ENV = "VICO_WEIGHTS_DIR"

# --------------------------------------------------------------------------------------------
# Fill rule
# --------------------------------------------------------------------------------------------

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
    All regexes are matched with ``re.fullmatch``.
    """

    norm: tuple[str, ...] = ()
    prelu: tuple[str, ...] = ()
    conv_transpose: tuple[str, ...] = ()
    post_scale: tuple[tuple[str, float], ...] = ()


_LAYER = r"layer\d+\.\d+"
FILL_RULES: dict[str, FillRules] = {
    "deep3dfacerecon_reconnet_resnet50": FillRules(
        norm=(r"backbone\.bn1", rf"backbone\.{_LAYER}\.bn[123]", r"backbone\.layer\d+\.0\.downsample\.1"),
    ),
    "pirender_face_generator": FillRules(
        norm=(
            r"warpping_net\.flow_out\.0",
            r"editing_net\.encoder\.(first|down\d+)\.model\.1",
            r"editing_net\.decoder\.(up|jump)\d+\.model\.1",
        ),
        conv_transpose=(r"warpping_net\.hourglass\.decoder\.decoder\d+\.conv_(1|s)",),
    ),
    "arcface_iresnet100": FillRules(
        norm=(r"bn1", r"bn2", r"features", rf"{_LAYER}\.bn[123]", r"layer\d+\.0\.downsample\.1"),
        prelu=(r"prelu", rf"{_LAYER}\.prelu"),
        post_scale=((rf"{_LAYER}\.bn3\.weight", 0.1),),
    ),
    "syncnet_s": FillRules(
        norm=(r"netcnn(aud|lip)\.(1|5|9|12|15|19)", r"netfc(aud|lip)\.1"),
    ),
    "fid_inception_v3": FillRules(norm=(r".*\.bn",)),
    "vico_listener_generator": FillRules(norm=(r"fusion\.layernorm_(init|driven)",)),
    "vico_speaker_generator": FillRules(norm=(r"audio_to_face\.layernorm",)),
    "vgg19": FillRules(),
}


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


@lru_cache(maxsize=None)
def load_manifest(network: str) -> dict[str, Any]:
    """The manifest ``common/manifests/<network>.json`` (parsed; cached)."""
    path = MANIFEST_DIR / f"{network}.json"
    if not path.is_file():
        known = sorted(p.stem for p in MANIFEST_DIR.glob("*.json"))
        raise KeyError(f"no manifest {path} (known: {', '.join(known)})")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def manifest_shapes(network: str) -> dict[str, tuple[int, ...]]:
    """Ordered mapping key -> shape of the network's state dict, from its manifest."""
    return {k: tuple(v) for k, v in load_manifest(network)["state_dict_shapes"].items()}


def fill_plan(network: str) -> dict[str, tuple[str, int | None, float | None]]:
    """key -> (kind, fan_in, post_scale) for every manifest entry, in manifest order."""
    if network not in FILL_RULES:
        raise KeyError(f"no fill rules for network {network!r} (known: {', '.join(FILL_RULES)})")
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
# Registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightSpec:
    """One pretrained file: what it is, where users get it, where it goes, how it is laid out.

    ``default_path`` is relative to the weights directory (:func:`weights_dir`); ``None`` means
    the file is managed by a third-party package (nothing to put in place).
    ``state_key``: the checkpoint dict key that holds the weights (``None``: a plain state dict).
    ``strip_prefix``: removed from the start of every key that has it (e.g. ``'module.'``).
    ``keep_prefix``: only keys starting with it are kept (e.g. VGG19 ``'features.'``).
    ``manifest``: ``common/manifests/<manifest>.json`` lists the loaded keys and shapes.
    """

    name: str
    filename: str
    default_path: str | None
    description: str
    source: str
    flag: str
    state_key: str | None = None
    strip_prefix: str | None = None
    manifest: str | None = None
    keep_prefix: str | None = None
    used_by: str = ""
    note: str = ""

    @property
    def external(self) -> bool:
        return self.default_path is None

    def default_file(self, root: str | os.PathLike | None = None) -> Path | None:
        """Default location of the file under ``root`` (default: :func:`weights_dir`)."""
        if self.default_path is None:
            return None
        return Path(root if root is not None else weights_dir()) / self.default_path


REGISTRY: dict[str, WeightSpec] = {
    spec.name: spec
    for spec in (
        WeightSpec(
            name="deep3dfacerecon_reconnet_resnet50",
            filename="epoch_20.pth",
            default_path="face_recon_feat0.2_augment/epoch_20.pth",
            description="Deep3DFaceRecon ResNet-50 3DMM coefficient regressor",
            source=("the Deep3DFaceRecon_pytorch README (sicxu/Deep3DFaceRecon_pytorch, 'Prepare "
                    "prerequisite models': Google Drive folder, face_recon_feat0.2_augment/epoch_20.pth)"),
            flag="--checkpoint",
            state_key="net_recon",
            manifest="deep3dfacerecon_reconnet_resnet50",
            used_by="Deep3DFaceRecon_pytorch.face_recon_videos",
            note="dict with net_recon (used), opt_00, sched_00; keys have no prefix",
        ),
        WeightSpec(
            name="pirender_face_generator",
            filename="epoch_00190_iteration_000400000_checkpoint.pt",
            default_path="pirender/face/epoch_00190_iteration_000400000_checkpoint.pt",
            description="PIRender face generator (renders 3DMM coefficients to video)",
            source=("the PIRender README (RenYurui/PIRender, 'Inference': scripts/download_weights.sh "
                    "or the Google Drive / Baidu link there; face.zip unzips to face/)"),
            flag="--checkpoint",
            state_key="net_G_ema",
            strip_prefix="module.",
            manifest="pirender_face_generator",
            used_by="PIRender.inference",
            note=("dict with net_G, net_G_ema (used), opt_G, sch_G, current_epoch, current_iteration"),
        ),
        WeightSpec(
            name="arcface_iresnet100",
            filename="backbone.pth",
            default_path="ms1mv3_arcface_r100_fp16/backbone.pth",
            description="ArcFace iresnet100 identity embedder for CSIM",
            source=("the insightface arcface_torch model zoo (deepinsight/insightface, "
                    "recognition/arcface_torch, ms1mv3_arcface_r100_fp16; OneDrive link in the ViCo "
                    "baseline README 'Identity Preserving')"),
            flag="--arcface_weights",
            manifest="arcface_iresnet100",
            used_by="evaluation.evaluate (csim)",
            note="plain state_dict, no prefix",
        ),
        WeightSpec(
            name="syncnet_s",
            filename="syncnet_v2.model",
            default_path="syncnet_v2.model",
            description="SyncNet audio-visual sync network for LSE-D/LSE-C",
            source=("joonson/syncnet_python (download_model.sh: "
                    "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model)"),
            flag="--syncnet_weights",
            manifest="syncnet_s",
            used_by="evaluation.evaluate (lipsync)",
            note="plain state_dict, no prefix; num_batches_tracked may be absent",
        ),
        WeightSpec(
            name="fid_inception_v3",
            filename="pt_inception-2015-12-05-6726825d.pth",
            default_path="pt_inception-2015-12-05-6726825d.pth",
            description="FID Inception-v3 (pytorch-fid port of the TF 2015-12-05 graph)",
            source=("the pytorch-fid release (https://github.com/mseitzer/pytorch-fid/releases/download/"
                    "fid_weights/pt_inception-2015-12-05-6726825d.pth)"),
            flag="--inception_weights",
            manifest="fid_inception_v3",
            used_by="evaluation.evaluate (fid)",
            note="plain Inception3 state_dict (before the InceptionV3 wrapper), no prefix",
        ),
        WeightSpec(
            name="vico_listener_generator",
            filename="Epoch_NNN.bin",
            default_path="vico/listener/Epoch_500.bin",
            description="ViCo listening-head generator (trained by you)",
            source=("your own training run: python -m vico.train --task listener writes "
                    "checkpoints/epoch_NNN.pt; an original Epoch_NNN.bin also loads (the ViCo baseline publishes no weights)"),
            flag="--resume",
            strip_prefix="module.",
            manifest="vico_listener_generator",
            used_by="vico.eval --task listener",
            note="plain dict of tensors, every key prefixed 'module.' (DDP)",
        ),
        WeightSpec(
            name="vico_speaker_generator",
            filename="Epoch_NNN.bin",
            default_path="vico/speaker/Epoch_500.bin",
            description="ViCo talking-head (speaker) generator (trained by you)",
            source=("your own training run: python -m vico.train --task speaker writes "
                    "checkpoints/epoch_NNN.pt; an original Epoch_NNN.bin also loads (the ViCo baseline publishes no weights)"),
            flag="--resume",
            strip_prefix="module.",
            manifest="vico_speaker_generator",
            used_by="vico.eval --task speaker",
            note="plain dict of tensors, every key prefixed 'module.' (DDP)",
        ),
        WeightSpec(
            name="vgg19",
            filename="vgg19-dcbb9e9d.pth",
            default_path="vgg19-dcbb9e9d.pth",
            description="ImageNet VGG19 for the PIRender training perceptual loss",
            source=("torchvision's model weights (https://download.pytorch.org/models/vgg19-dcbb9e9d.pth)"),
            flag="--vgg_weights",
            keep_prefix="features.",
            manifest="vgg19",
            used_by="PIRender.train",
            note="plain torchvision VGG19 state_dict; only features.* is used",
        ),
        WeightSpec(
            name="fan_2d",
            filename="2DFAN-4 and s3fd (face-alignment model zoo)",
            default_path=None,
            description="FAN 2D 68-point landmark network (optional 'fan' landmark backend)",
            source=("the face-alignment package (1adrianb/face-alignment), which downloads it into the "
                    "torch hub cache on first use"),
            flag="--landmarks fan",
            used_by="common.faces backend 'fan' (optional)",
            note="optional; managed by face-alignment itself, nothing to put in weights/",
        ),
    )
}


def weights_dir() -> Path:
    """The weights directory: ``$VICO_WEIGHTS_DIR`` if set, else ``<repo>/weights``."""
    env = os.environ.get(WEIGHTS_DIR_ENV)
    return Path(env) if env else REPO_ROOT / "weights"


def get_spec(name: str) -> WeightSpec:
    """The registry entry ``name`` (UserError listing the known names when unknown)."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown weights name {name!r} (known: {', '.join(REGISTRY)})") from None


def missing_message(spec: WeightSpec, path: str | os.PathLike) -> str:
    """The one-line 'missing weights file' message for ``spec`` at ``path``."""
    return (f"missing weights file {path} ({spec.description}): obtain {spec.filename} from "
            f"{spec.source} and put it there, or pass {spec.flag} PATH")


def resolve_weights(name: str, path: str | os.PathLike | None = None) -> Path:
    """Path of the weights file ``name``: ``path`` if given, else its default place.

    A directory ``path`` is accepted when it holds the registry file name. Raises
    ``UserError`` (one line: the file, what it is, where to get it, which flag) when missing.
    """
    spec = get_spec(name)
    if path is None:
        if spec.external:
            raise UserError(f"{name} ({spec.description}) is not a file of ours: it comes from "
                            f"{spec.source}")
        p = spec.default_file()
    else:
        p = Path(path).expanduser()
        if p.is_dir() and (p / spec.filename).is_file():
            p = p / spec.filename
    assert p is not None
    if not p.is_file():
        raise UserError(missing_message(spec, p))
    return p


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in x)


def _first(items: list[str], n: int = 3) -> str:
    more = f", ... (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def read_checkpoint_file(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with a one-line UserError for a non-checkpoint file."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        detail = " ".join(str(e).split())[:160]
        raise UserError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {detail})") from None


def extract_state_dict(obj: Any, spec: WeightSpec, source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Apply ``spec``'s layout to a loaded checkpoint: take the dict key, strip/keep prefixes."""
    if spec.state_key is not None:
        if not isinstance(obj, Mapping) or spec.state_key not in obj:
            found = list(obj.keys()) if isinstance(obj, Mapping) else [type(obj).__name__]
            raise UserError(f"{source}: expected a checkpoint dict with key {spec.state_key!r} "
                            f"({spec.description}); found {_first([str(k) for k in found], 6)}")
        obj = obj[spec.state_key]
    if not isinstance(obj, Mapping):
        raise UserError(f"{source}: expected a state dict of tensors ({spec.description}); "
                        f"found {type(obj).__name__}")
    non_tensor = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if non_tensor:
        raise UserError(f"{source}: expected a state dict of tensors ({spec.description}); "
                        f"non-tensor entries: {_first(non_tensor)}")
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        key = str(key)
        if spec.strip_prefix and key.startswith(spec.strip_prefix):
            key = key[len(spec.strip_prefix):]
        if spec.keep_prefix and not key.startswith(spec.keep_prefix):
            continue
        out[key] = value
    return out


def load_checkpoint(name: str, path: str | os.PathLike | None = None,
                    map_location: Any = "cpu") -> dict[str, torch.Tensor]:
    """Read the weights file ``name`` (``path`` or its default) into a plain state dict."""
    spec = get_spec(name)
    p = resolve_weights(name, path)
    obj = read_checkpoint_file(p, map_location=map_location)
    sd = extract_state_dict(obj, spec, p)
    if is_smoke(p):
        logger.warning("%s is a smoke-test file (fill-rule weights, not the real %s)", p, spec.filename)
    logger.debug("loaded %d tensors for %s from %s", len(sd), name, p)
    return sd


def state_dict_mismatch(expected: Mapping[str, Any], got: Mapping[str, Any],
                        optional_suffixes: tuple[str, ...] = ("num_batches_tracked",)) -> str:
    """One-line description of key/shape differences ('' when they match).

    ``expected``/``got`` map keys to tensors or shapes. Expected keys ending with one of
    ``optional_suffixes`` may be absent (BatchNorm counters, absent from some released files).
    """
    missing = [k for k in expected if k not in got and not k.endswith(optional_suffixes)]
    unexpected = [k for k in got if k not in expected]
    shape_bad = []
    for k in expected:
        if k in got:
            es = _shape(getattr(expected[k], "shape", expected[k]))
            gs = _shape(getattr(got[k], "shape", got[k]))
            if es != gs:
                shape_bad.append(f"{k} expected {list(es)} got {list(gs)}")
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {_first(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {_first(unexpected)}")
    if shape_bad:
        parts.append(f"{len(shape_bad)} shape mismatches: {_first(shape_bad)}")
    return "; ".join(parts)


def load_state_dict_strict(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor],
                           source: str | os.PathLike) -> None:
    """``module.load_state_dict(state_dict, strict=True)`` with a one-line UserError on mismatch.

    The message names ``source`` (the file), the first missing/unexpected keys and any shape
    mismatch (key, expected shape, got shape).
    """
    problem = state_dict_mismatch(module.state_dict(), state_dict)
    if problem:
        raise UserError(f"{source}: weights do not fit {type(module).__name__}: {problem}")
    try:
        module.load_state_dict(dict(state_dict), strict=True)
    except RuntimeError as e:  # anything the pre-check did not foresee
        raise UserError(f"{source}: weights do not fit {type(module).__name__}: "
                        f"{' '.join(str(e).split())[:300]}") from None


def load_pretrained(module: torch.nn.Module, name: str, path: str | os.PathLike | None = None,
                    map_location: Any = "cpu") -> Path:
    """Resolve, read and strictly load the weights ``name`` into ``module``; returns the file."""
    p = resolve_weights(name, path)
    load_state_dict_strict(module, load_checkpoint(name, p, map_location=map_location), p)
    return p


def check_manifest(module: torch.nn.Module, network: str) -> list[str]:
    """Differences between ``module.state_dict()`` and the manifest of ``network`` ([] if none).

    Checks key set, shapes and key order.
    """
    expected = manifest_shapes(network)
    got = {k: _shape(v.shape) for k, v in module.state_dict().items()}
    diffs = [f"missing key {k} (manifest shape {list(s)})" for k, s in expected.items() if k not in got]
    diffs += [f"unexpected key {k} (shape {list(s)})" for k, s in got.items() if k not in expected]
    diffs += [f"shape mismatch {k}: manifest {list(s)}, module {list(got[k])}"
              for k, s in expected.items() if k in got and got[k] != s]
    if not diffs:
        for i, (a, b) in enumerate(zip(expected, got)):
            if a != b:
                diffs.append(f"key order differs at index {i}: manifest {a}, module {b}")
                break
    return diffs


# --------------------------------------------------------------------------------------------
# Smoke-test checkpoints
# --------------------------------------------------------------------------------------------

SMOKE_SUFFIX = ".smoke.json"


def smoke_sidecar(path: str | os.PathLike) -> Path:
    """The sidecar ``<path>.smoke.json`` that marks a smoke-test weights file."""
    return Path(str(path) + SMOKE_SUFFIX)


def is_smoke(path: str | os.PathLike) -> bool:
    """True when ``path`` is the file :func:`make_smoke_checkpoint` wrote: its sidecar exists and
    still describes it. A real file copied over a smoke-test one (size or mtime changed) is real."""
    side = smoke_sidecar(path)
    if not side.is_file():
        return False
    try:
        made = json.loads(side.read_text()).get("file")
    except (OSError, ValueError):
        return True  # an unreadable sidecar still marks the file: never mistake fake weights for real
    if not made:
        return True
    try:
        st = Path(path).stat()
    except FileNotFoundError:
        return True
    return (st.st_size, st.st_mtime_ns) == (made.get("bytes"), made.get("mtime_ns"))


def _optimizer_placeholder(n_params: int, **hyper: Any) -> dict[str, Any]:
    """An optimizer ``state_dict()`` as a freshly built optimizer would save it (no state)."""
    return {"state": {}, "param_groups": [dict(hyper, params=list(range(n_params)))]}


def smoke_payload(name: str) -> Any:
    """The object a smoke-test file of ``name`` holds: fill-rule weights in the released layout."""
    spec = get_spec(name)
    if spec.manifest is None:
        raise UserError(f"{name}: no manifest, so no smoke-test file can be made ({spec.note})")
    sd = fill_state_dict(spec.manifest)
    n = sum(1 for k in sd if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    if name == "deep3dfacerecon_reconnet_resnet50":
        adam = dict(lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False)
        return {"net_recon": sd, "opt_00": _optimizer_placeholder(n, **adam),
                "sched_00": {"last_epoch": 20, "_step_count": 21}}
    if name == "pirender_face_generator":
        adam = dict(lr=1e-4, betas=(0.5, 0.999), eps=1e-8, weight_decay=0, amsgrad=False,
                    initial_lr=1e-4)
        return {
            # net_G is saved from the DDP-wrapped trainer network, net_G_ema from the bare one.
            "net_G": {"module." + k: v for k, v in sd.items()},
            "net_G_ema": sd,
            "opt_G": _optimizer_placeholder(n, **adam),
            "sch_G": {"step_size": 300000, "gamma": 0.2, "base_lrs": [1e-4], "last_epoch": 0,
                      "_step_count": 1},
            "current_epoch": 0,
            "current_iteration": 0,
        }
    if spec.strip_prefix:  # vico: the DDP module's state dict
        return {spec.strip_prefix + k: v for k, v in sd.items()}
    return sd


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
        "made_by": "python -m common.weights make-smoke (common.weights.make_smoke_checkpoint)",
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


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

EPILOG = """\
examples:
  # where each file is expected and whether it is there
  python -m common.weights list
  # smoke-test files (fill-rule weights in the released layouts) for a demo or CI run
  python -m common.weights make-smoke --all
  python -m common.weights make-smoke pirender_face_generator syncnet_s --dir /tmp/weights
  # the weights directory can also be set with the environment variable
  VICO_WEIGHTS_DIR=/data/weights python -m common.weights list

Real files are never overwritten: make-smoke skips any name whose file exists and is not a
smoke-test file. --force remakes existing smoke-test files.
"""


def _status(spec: WeightSpec, root: Path) -> tuple[str, str]:
    path = spec.default_file(root)
    if path is None:
        return "-", "external"
    if not path.is_file():
        return str(path), "missing"
    return str(path), "smoke" if is_smoke(path) else "present"


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser("common.weights", "List the pretrained weight files and make smoke-test stand-ins.", EPILOG)
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="table of weight files: name, path, status",
                            formatter_class=cli.HelpFormatter, epilog=EPILOG)
    p_list.add_argument("--dir", type=Path, default=weights_dir(),
                        help=f"weights directory (${WEIGHTS_DIR_ENV} or <repo>/weights)")
    p_make = sub.add_parser("make-smoke", help="write smoke-test weights files",
                            formatter_class=cli.HelpFormatter, epilog=EPILOG)
    p_make.add_argument("names", nargs="*", metavar="NAME", default=[],
                        help=f"registry names: {', '.join(n for n, s in REGISTRY.items() if s.manifest)}")
    p_make.add_argument("--all", action="store_true", help="every name that has a manifest")
    p_make.add_argument("--dir", type=Path, default=weights_dir(),
                        help=f"weights directory (${WEIGHTS_DIR_ENV} or <repo>/weights)")
    p_make.add_argument("--force", action="store_true", help="remake existing smoke-test files")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry: ``list`` and ``make-smoke``."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    root = args.dir
    if args.command == "list":
        rows = [(name, *_status(spec, root), spec.used_by) for name, spec in REGISTRY.items()]
        widths = [max(len(r[i]) for r in rows + [("name", "path", "status", "used by")]) for i in range(4)]
        header = ("name", "path", "status", "used by")
        for row in [header] + rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        return 0
    if args.all and args.names:
        raise UserError("give NAME arguments or --all, not both")
    names = [n for n, s in REGISTRY.items() if s.manifest] if args.all else args.names
    if not names:
        raise UserError("nothing to do: give NAME arguments or --all")
    specs = [get_spec(n) for n in names]
    for spec in specs:
        if spec.manifest is None:
            raise UserError(f"{spec.name}: no smoke-test file possible ({spec.note})")
    for spec in specs:
        path = spec.default_file(root)
        assert path is not None
        if path.exists() and not is_smoke(path):
            logger.info("%s: real weights file present at %s, left as is", spec.name, path)
            continue
        if path.exists() and not args.force:
            logger.info("%s: smoke-test file already at %s (--force remakes it)", spec.name, path)
            continue
        make_smoke_checkpoint(spec.name, path)
    return 0


if __name__ == "__main__":
    run_cli(main)
