"""Pretrained weight files: the registry, one resolver, strict loading, and the CLI.

* ``REGISTRY``: one :class:`WeightSpec` per file the pipeline uses (what it is, where users
  obtain it, how ``fetch`` downloads it and under which terms, its default place under the
  weights directory, the CLI flag that points to it, and the checkpoint layout: which dict key
  holds the weights, which key prefix to strip, which manifest lists its keys). Adding a file
  means appending one entry.
* :func:`resolve_weights` is the one place that finds a file: explicit path > ``root`` folder >
  ``$VICO_WEIGHTS_DIR`` > ``<repo>/weights``; a missing file gives one line naming the file,
  the flag and ``python -m common.weights fetch NAME``.
* Loading: :func:`load_checkpoint`, :func:`load_state_dict_strict`, :func:`check_manifest`
  report a wrong file or a key/shape mismatch in one line (``common.io.UserError``).

Smoke-test stand-ins (the fill rule) live in :mod:`common.smoke_weights`; downloading and
verifying released files in :mod:`common.weights_fetch`.

Command line::

    python -m common.weights list
    python -m common.weights fetch --all --accept_terms
    python -m common.weights verify
    python -m common.weights make-smoke --all --dir weights/
    python -m common.weights table
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import torch

from common import cli
from common.io import UserError, run_cli, setup_logging

logger = logging.getLogger("common.weights")

REPO_ROOT = Path(__file__).resolve().parent.parent
MANIFEST_DIR = Path(__file__).resolve().parent / "manifests"
WEIGHTS_DIR_ENV = "VICO_WEIGHTS_DIR"


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


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


FETCH_KINDS = ("https", "gdrive_file", "gdrive_folder", "onedrive")


@dataclass(frozen=True)
class FetchSource:
    """Where ``python -m common.weights fetch`` downloads a released file from.

    ``kind``: ``https`` (``ref`` is the full URL), ``gdrive_file`` (``ref`` is the Google Drive
    file id), ``gdrive_folder`` (the folder id) or ``onedrive`` (``ref`` is the share URL).
    ``member``: the file's path inside the zip archive (``archive='zip'``), the folder or the
    share; ``None`` when the download is the file itself.
    ``terms``: the licence or terms of use as the publisher states them (shown before fetching).
    ``page``: the page a user opens to get the file by hand.
    """

    kind: str
    ref: str
    page: str
    terms: str
    member: str | None = None
    archive: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in FETCH_KINDS:
            raise ValueError(f"unknown fetch kind {self.kind!r} (known: {', '.join(FETCH_KINDS)})")


@dataclass(frozen=True)
class WeightSpec:
    """One pretrained file: what it is, where users get it, where it goes, how it is laid out.

    ``default_path`` is relative to the weights directory (:func:`weights_dir`); ``None`` means
    the file is managed by a third-party package (nothing to put in place).
    ``state_key``: the checkpoint dict key that holds the weights (``None``: a plain state dict).
    ``strip_prefix``: removed from the start of every key that has it (e.g. ``'module.'``).
    ``keep_prefix``: only keys starting with it are kept (e.g. VGG19 ``'features.'``).
    ``manifest``: ``common/manifests/<manifest>.json`` lists the loaded keys and shapes (and the
    ``fill_rule`` used for smoke-test stand-ins).
    ``container``: the released file's top-level dict as a template, for smoke-test stand-ins
    (:mod:`common.smoke_weights`): ``"$state_dict"`` is the state dict, ``"$state_dict:PREFIX"``
    the state dict with PREFIX on every key, ``{"$optimizer": {...}}`` an optimizer state_dict
    with those hyper-parameters and no state; other values are written as given. ``None``: the
    file is the state dict itself (with ``strip_prefix`` on every key).
    ``fetch``: where ``fetch`` downloads it (``None``: not downloadable, e.g. your own training).
    ``source``: where users get it by hand, for messages; defaults to ``fetch.page``.
    ``sha256``: the known sha256 (hex, full or a prefix); torch.hub-style names
    (``name-<hex>.ext``) carry their own prefix (see :func:`known_sha256`).
    """

    name: str
    filename: str
    default_path: str | None
    description: str
    flag: str
    source: str = ""
    state_key: str | None = None
    strip_prefix: str | None = None
    manifest: str | None = None
    keep_prefix: str | None = None
    used_by: str = ""
    note: str = ""
    container: Mapping[str, Any] | None = field(default=None, hash=False, compare=False)
    fetch: FetchSource | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        if not self.source:
            if self.fetch is None:
                raise ValueError(f"{self.name}: give source= or fetch=")
            object.__setattr__(self, "source", self.fetch.page)

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
            flag="--checkpoint",
            state_key="net_recon",
            manifest="deep3dfacerecon_reconnet_resnet50",
            used_by="Deep3DFaceRecon_pytorch.face_recon_videos",
            note="dict with net_recon (used), opt_00, sched_00; keys have no prefix",
            container={"net_recon": "$state_dict",
                       "opt_00": {"$optimizer": dict(lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                                                     amsgrad=False)},
                       "sched_00": {"last_epoch": 20, "_step_count": 21}},
            fetch=FetchSource(
                kind="gdrive_folder", ref="1liaIxn9smpudjjqMaWWRpP0mXRW_qRPP", member="epoch_20.pth",
                page=("https://drive.google.com/drive/folders/1liaIxn9smpudjjqMaWWRpP0mXRW_qRPP (the "
                      "Deep3DFaceRecon_pytorch README, 'Prepare prerequisite models': the folder face_recon_feat0.2_augment)"),
                terms=("Deep3DFaceRecon_pytorch is MIT-licensed (Sicheng Xu); its README asks you to cite "
                       "Deng et al., CVPRW 2019. The model was trained on CelebA, LFW, 300W-LP, IJB-A, "
                       "LS3D-W and FFHQ, whose terms limit use to non-commercial research.")),
        ),
        WeightSpec(
            name="pirender_face_generator",
            filename="epoch_00190_iteration_000400000_checkpoint.pt",
            default_path="pirender/face/epoch_00190_iteration_000400000_checkpoint.pt",
            description="PIRender face generator (renders 3DMM coefficients to video)",
            flag="--checkpoint",
            state_key="net_G_ema",
            strip_prefix="module.",
            manifest="pirender_face_generator",
            used_by="PIRender.inference",
            note=("dict with net_G, net_G_ema (used), opt_G, sch_G, current_epoch, current_iteration"),
            # net_G is saved from the DDP-wrapped trainer network, net_G_ema from the bare one.
            container={"net_G": "$state_dict:module.", "net_G_ema": "$state_dict",
                       "opt_G": {"$optimizer": dict(lr=1e-4, betas=(0.5, 0.999), eps=1e-8, weight_decay=0,
                                                    amsgrad=False, initial_lr=1e-4)},
                       "sch_G": {"step_size": 300000, "gamma": 0.2, "base_lrs": [1e-4], "last_epoch": 0,
                                 "_step_count": 1},
                       "current_epoch": 0, "current_iteration": 0},
            fetch=FetchSource(
                kind="gdrive_file", ref="1-0xOf6g58OmtKtEWJlU3VlnfRqPN9Uq7", archive="zip",
                member="face/epoch_00190_iteration_000400000_checkpoint.pt",
                page=("https://drive.google.com/uc?id=1-0xOf6g58OmtKtEWJlU3VlnfRqPN9Uq7 (face.zip, from "
                      "RenYurui/PIRender scripts/download_weights.sh; unzip it, the file is in face/)"),
                terms=("PIRender (RenYurui/PIRender) states no licence for its code or weights; its README "
                       "asks you to cite Ren et al., ICCV 2021. Trained on VoxCeleb: research use only.")),
        ),
        WeightSpec(
            name="arcface_iresnet100",
            filename="backbone.pth",
            default_path="ms1mv3_arcface_r100_fp16/backbone.pth",
            description="ArcFace iresnet100 identity embedder for CSIM",
            flag="--arcface_weights",
            manifest="arcface_iresnet100",
            used_by="evaluation.evaluate (csim)",
            note="plain state_dict, no prefix",
            fetch=FetchSource(
                kind="onedrive", ref="https://1drv.ms/u/s!AswpsDO2toNKq0lWY69vN58GR6mw?e=p9Ov5d",
                member="ms1mv3_arcface_r100_fp16/backbone.pth",
                page=("https://1drv.ms/u/s!AswpsDO2toNKq0lWY69vN58GR6mw?e=p9Ov5d (the arcface_torch model "
                      "zoo of deepinsight/insightface, folder ms1mv3_arcface_r100_fp16)"),
                terms=("insightface arcface_torch model zoo: \"The models are available for non-commercial "
                       "research purposes only.\" Trained on MS1MV3.")),
        ),
        WeightSpec(
            name="syncnet_s",
            filename="syncnet_v2.model",
            default_path="syncnet_v2.model",
            description="SyncNet audio-visual sync network for LSE-D/LSE-C",
            flag="--syncnet_weights",
            manifest="syncnet_s",
            used_by="evaluation.evaluate (lipsync)",
            note="plain state_dict, no prefix; num_batches_tracked may be absent",
            fetch=FetchSource(
                kind="https", ref="https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model",
                page=("https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model "
                      "(joonson/syncnet_python download_model.sh)"),
                terms=("joonson/syncnet_python is MIT-licensed (Joon Son Chung); the model is served by the "
                       "Visual Geometry Group, University of Oxford. Cite Chung & Zisserman, ACCV 2016 workshops.")),
        ),
        WeightSpec(
            name="fid_inception_v3",
            filename="pt_inception-2015-12-05-6726825d.pth",
            default_path="pt_inception-2015-12-05-6726825d.pth",
            description="FID Inception-v3 (pytorch-fid port of the TF 2015-12-05 graph)",
            flag="--inception_weights",
            manifest="fid_inception_v3",
            used_by="evaluation.evaluate (fid)",
            note="plain Inception3 state_dict (before the InceptionV3 wrapper), no prefix",
            fetch=FetchSource(
                kind="https",
                ref=("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                     "pt_inception-2015-12-05-6726825d.pth"),
                page=("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                      "pt_inception-2015-12-05-6726825d.pth (the pytorch-fid release)"),
                terms=("pytorch-fid is Apache-2.0 (Maximilian Seitzer); the weights are a port of the "
                       "TensorFlow Inception 2015-12-05 graph (Apache-2.0), trained on ImageNet.")),
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
            flag="--vgg_weights",
            keep_prefix="features.",
            manifest="vgg19",
            used_by="PIRender.train",
            note="plain torchvision VGG19 state_dict; only features.* is used",
            fetch=FetchSource(
                kind="https", ref="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
                page="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth (torchvision's VGG19 ImageNet weights)",
                terms=("torchvision (BSD-3-Clause) ImageNet weights; torchvision notes that pre-trained "
                       "weights may carry terms of the data they were trained on (ImageNet: non-commercial "
                       "research).")),
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


from common.tddfa.specs import TDDFA_SPECS  # noqa: E402 - 3DDFA_V2 entries (plain data, no cycle)

REGISTRY.update((d["name"], WeightSpec(**{**d, "fetch": FetchSource(**d["fetch"])})) for d in TDDFA_SPECS)


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


def fetch_hint(spec: WeightSpec) -> str:
    """The command that downloads ``spec`` ('' when it cannot be downloaded)."""
    return f"python -m common.weights fetch {spec.name}" if spec.fetch is not None else ""


def missing_message(spec: WeightSpec, path: str | os.PathLike, flag: str | None = None) -> str:
    """The one-line 'missing weights file' message for ``spec`` at ``path``."""
    hint = fetch_hint(spec)
    run = f"run {hint}, or " if hint else ""
    return (f"missing weights file {path} ({spec.description}): {run}obtain {spec.filename} from "
            f"{spec.source} and put it there, or pass {flag or spec.flag} PATH")


def resolve_weights(name: str, explicit: str | os.PathLike | None = None,
                    root: str | os.PathLike | None = None, flag: str | None = None) -> Path:
    """Path of the weights file ``name``; the one resolver every stage uses.

    Order: ``explicit`` (a file, or a folder holding the registry file name) > the default place
    under ``root`` > under ``$VICO_WEIGHTS_DIR`` > under ``<repo>/weights``. Raises ``UserError``
    (one line: the file, what it is, the fetch command, where to get it, and ``flag`` or the
    registry's flag) when the file is missing.
    """
    spec = get_spec(name)
    if explicit is None:
        if spec.external:
            raise UserError(f"{name} ({spec.description}) is not a file of ours: it comes from "
                            f"{spec.source}")
        p = spec.default_file(Path(root).expanduser() if root is not None else None)
    else:
        p = Path(explicit).expanduser()
        if p.is_dir() and (p / spec.filename).is_file():
            p = p / spec.filename
    assert p is not None
    if not p.is_file():
        raise UserError(missing_message(spec, p, flag))
    return p


_HUB_HASH = re.compile(r"-([a-f0-9]{8,64})\.")


def known_sha256(spec: WeightSpec) -> str | None:
    """The known sha256 of the released file (hex, maybe only a prefix), or None.

    ``spec.sha256`` if set, else the torch.hub convention: a name ``<stem>-<hex>.<ext>`` carries
    the first hex digits of the file's sha256 (e.g. ``vgg19-dcbb9e9d.pth``).
    """
    if spec.sha256:
        return spec.sha256.lower()
    m = _HUB_HASH.search(spec.filename)
    return m.group(1) if m else None


# --------------------------------------------------------------------------------------------
# Smoke-test markers (written by common.smoke_weights)
# --------------------------------------------------------------------------------------------

SMOKE_SUFFIX = ".smoke.json"


def smoke_sidecar(path: str | os.PathLike) -> Path:
    """The sidecar ``<path>.smoke.json`` that marks a smoke-test weights file."""
    return Path(str(path) + SMOKE_SUFFIX)


def is_smoke(path: str | os.PathLike) -> bool:
    """True when ``path`` is a file :func:`common.smoke_weights.make_smoke_checkpoint` wrote: its
    sidecar exists and still describes it. A real file copied over a smoke-test one (size or
    mtime changed) is real."""
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
# CLI
# --------------------------------------------------------------------------------------------

EPILOG = """\
examples:
  # where each file is expected and whether it is there
  python -m common.weights list
  # download every released file from its original source (shows each file's terms first)
  python -m common.weights fetch --all --accept_terms
  python -m common.weights fetch syncnet_s fid_inception_v3 --dir /data/weights
  # size, hash and a strict load of every file present (real or smoke-test); exit 1 on a problem
  python -m common.weights verify
  # smoke-test files (fill-rule weights in the released layouts) for a demo or CI run
  python -m common.weights make-smoke --all
  python -m common.weights make-smoke pirender_face_generator syncnet_s --dir /tmp/weights
  # the weights table of docs/weights.md, generated from the registry
  python -m common.weights table --update docs/weights.md
  # the weights directory can also be set with the environment variable
  VICO_WEIGHTS_DIR=/data/weights python -m common.weights list

Real files are never overwritten: make-smoke skips any name whose file exists and is not a
smoke-test file. --force remakes existing smoke-test files. fetch replaces smoke-test files and
skips real ones.
"""

TABLE_START = "<!-- weights-table: generated by `python -m common.weights table`; do not edit -->"
TABLE_END = "<!-- /weights-table -->"
_KIND_WORDS = {"https": "download", "gdrive_file": "Google Drive file", "gdrive_folder": "Google Drive folder",
               "onedrive": "OneDrive share"}


def weights_table() -> str:
    """The markdown table of every registry entry (docs/weights.md holds a copy; a test compares)."""
    lines = ["| name | file (default place under `weights/`) | what it is | fetched from | terms | flag |",
             "|---|---|---|---|---|---|"]
    for spec in REGISTRY.values():
        place = f"`{spec.default_path}`" if spec.default_path else "—"
        if spec.fetch is not None:
            src = f"{_KIND_WORDS[spec.fetch.kind]}: {spec.fetch.page}"
            terms = spec.fetch.terms
        else:
            src, terms = f"not downloadable: {spec.source}", "—"
        used = f" (`{spec.used_by}`)" if spec.used_by else ""
        cells = [f"`{spec.name}`", place, spec.description + used, src, terms, f"`{spec.flag}`"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def update_table(path: Path) -> bool:
    """Rewrite the generated table block of ``path``; True when it changed."""
    text = path.read_text(encoding="utf-8")
    if TABLE_START not in text or TABLE_END not in text:
        raise UserError(f"{path}: no generated-table markers ({TABLE_START} ... {TABLE_END})")
    head, rest = text.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    new = f"{head}{TABLE_START}\n{weights_table()}{TABLE_END}{tail}"
    if new != text:
        from common.io import write_text_atomic

        write_text_atomic(path, new)
    return new != text


def _status(spec: WeightSpec, root: Path) -> tuple[str, str]:
    path = spec.default_file(root)
    if path is None:
        return "-", "external"
    if not path.is_file():
        return str(path), "missing"
    return str(path), "smoke" if is_smoke(path) else "present"


def _dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", type=Path, default=weights_dir(),
                   help=f"weights directory (${WEIGHTS_DIR_ENV} or <repo>/weights)")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser("common.weights", "Fetch, verify and list the pretrained weight files; make smoke-test "
                        "stand-ins.", EPILOG)
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_, formatter_class=cli.HelpFormatter, epilog=EPILOG)

    _dir_arg(add("list", "table of weight files: name, path, status"))
    fetchable = [n for n, s in REGISTRY.items() if s.fetch is not None]
    p_fetch = add("fetch", "download released files from their original sources, verify and put them in place")
    p_fetch.add_argument("names", nargs="*", metavar="NAME", default=[],
                         help=f"registry names: {', '.join(fetchable)}")
    p_fetch.add_argument("--all", action="store_true", help="every downloadable file")
    _dir_arg(p_fetch)
    p_fetch.add_argument("--accept_terms", action="store_true",
                         help="accept each file's licence / terms of use (shown first; needed when not interactive)")
    _dir_arg(add("verify", "size, sha256 and strict load of every file present; exit 1 on any problem"))
    p_make = add("make-smoke", "write smoke-test weights files")
    p_make.add_argument("names", nargs="*", metavar="NAME", default=[],
                        help=f"registry names: {', '.join(n for n, s in REGISTRY.items() if s.manifest)}")
    p_make.add_argument("--all", action="store_true", help="every name that has a manifest")
    _dir_arg(p_make)
    p_make.add_argument("--force", action="store_true", help="remake existing smoke-test files")
    p_table = add("table", "print the markdown weights table generated from the registry")
    p_table.add_argument("--update", type=Path, default=None, metavar="FILE",
                         help="rewrite the generated block of FILE (e.g. docs/weights.md) instead of printing")
    return parser


def _names(args: argparse.Namespace, all_names: list[str]) -> list[str]:
    if args.all and args.names:
        raise UserError("give NAME arguments or --all, not both")
    names = all_names if args.all else args.names
    if not names:
        raise UserError("nothing to do: give NAME arguments or --all")
    return names


def main(argv: list[str] | None = None) -> int:
    """CLI entry: ``list``, ``fetch``, ``verify``, ``make-smoke`` and ``table``."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.command == "table":
        if args.update is None:
            sys.stdout.write(weights_table())
        elif update_table(args.update):
            logger.info("updated the weights table in %s", args.update)
        return 0
    root = args.dir
    if args.command == "list":
        rows = [(name, *_status(spec, root), spec.used_by) for name, spec in REGISTRY.items()]
        widths = [max(len(r[i]) for r in rows + [("name", "path", "status", "used by")]) for i in range(4)]
        header = ("name", "path", "status", "used by")
        for row in [header] + rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        return 0
    if args.command in ("fetch", "verify"):
        from common import weights_fetch

        if args.command == "verify":
            rows = weights_fetch.verify(root)
            if not rows:
                print(f"no weights files under {root} (python -m common.weights fetch --all, or make-smoke --all)")
                return 0
            print(weights_fetch.format_table(rows))
            bad = [r.name for r in rows if not r.ok]
            if bad:
                logger.error("%d of %d files have a problem: %s", len(bad), len(rows), ", ".join(bad))
            return 1 if bad else 0
        outcomes = weights_fetch.fetch(_names(args, weights_fetch.fetchable()), root, args.accept_terms)
        failed = [o.name for o in outcomes if o.status == "failed"]
        if failed:
            logger.error("%d of %d files not fetched: %s (see the lines above)", len(failed), len(outcomes),
                         ", ".join(failed))
        return 1 if failed else 0
    from common.smoke_weights import make_smoke_checkpoint

    names = _names(args, [n for n, s in REGISTRY.items() if s.manifest])
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
    # Run the canonical module (not a second copy named __main__), so its registry is the one
    # common.smoke_weights and common.weights_fetch import.
    from common.weights import main as _main

    run_cli(_main)
