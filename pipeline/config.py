"""The demo's configuration: its settings and every path it reads or writes.

``configs/demo.yaml`` lists them; command-line flags override it; the resolved config is saved
as ``<out>/demo_config.json``, which the report reads to find the run's artifacts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.config import from_dict, read_yaml
from common.io import UserError, read_json

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "demo.yaml"
TASKS = ("speaker", "listener")


@dataclass
class DemoPaths:
    """Artifact folders, relative to the run folder ``out`` (absolute paths are kept as they are)."""

    data: str = "data"                              # synthetic dataset (videos/, audios/, *.csv)
    keypoints: str = "keypoints"                    # 68-point landmarks of the GT videos
    recons: str = "recons"                          # GT 3DMM coefficients <uuid>.<role>.mat
    features: str = "features"                      # audio_feats/, video_feats/, mean/std
    vico: str = "vico"                              # vico training runs, one folder per task
    generated: str = "generated"                    # vico.eval output: recon_coeffs/test/
    baselines: str = "baselines"                    # reference motion to score against
    lmdb: str = "vox_lmdb"                          # PIRender's LMDB
    rendered: str = "rendered"                      # rendered mp4 with speech
    rendered_keypoints: str = "rendered_keypoints"  # landmarks of the rendered videos
    rendered_recons: str = "rendered_recons"        # coefficients re-extracted from the renders
    metrics: str = "metrics"                        # evaluation results and scores
    from_image: str = "from_image"                  # pipeline.generate: a talking head from one photo
    report: str = "report.html"                     # the HTML report (assets in report_assets/)


@dataclass
class DemoConfig:
    out: Path = Path("outputs/demo")
    pairs: int = 3
    frames: int = 90
    seed: int = 0
    epochs: int = 3
    nproc: int = 1          # processes per distributed step (> 1: torchrun --standalone)
    weights_dir: Path = Path("weights")
    # pretrained files the demo needs; missing ones get labelled smoke-test stand-ins
    weights: tuple[str, ...] = ("deep3dfacerecon_reconnet_resnet50", "pirender_face_generator",
                                "fid_inception_v3", "arcface_iresnet100", "syncnet_s")
    # face photo for the single-image step; None: matplotlib's sample portrait of Grace Hopper
    image: Path | None = None
    paths: DemoPaths = field(default_factory=DemoPaths)

    @property
    def face_image(self) -> Path:
        if self.image is not None:
            return self.image
        import matplotlib

        return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"

    def path(self, name: str) -> Path:
        """The run's artifact ``name`` (a DemoPaths field) as a path."""
        p = Path(getattr(self.paths, name))
        return p if p.is_absolute() else self.out / p


def config_from_dict(raw: dict[str, Any], source: str) -> DemoConfig:
    """A DemoConfig from a YAML/JSON mapping; unknown keys are a one-line error naming ``source``."""
    return from_dict(DemoConfig, raw, source, what="setting")


def load_config(path: str | Path = DEFAULT_CONFIG) -> DemoConfig:
    """Read a demo config (YAML, or the JSON a run saved)."""
    p = Path(path)
    if p.suffix == ".json" and p.is_file():
        return config_from_dict(read_json(p), str(p))
    return config_from_dict(read_yaml(p, "demo config") or {}, str(p))


def run_config(run_dir: str | Path) -> DemoConfig:
    """The resolved config a demo run saved in ``<run_dir>/demo_config.json``."""
    p = Path(run_dir) / "demo_config.json"
    if not p.is_file():
        raise UserError(f"{p}: not found; is {run_dir} a demo run folder (python -m pipeline.demo --out ...)?")
    return load_config(p)
