"""Fixtures of the Deep3DFaceRecon tests: a tiny input folder and a smoke checkpoint."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

NET = "deep3dfacerecon_reconnet_resnet50"


@pytest.fixture(scope="session")
def recon_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint in the released layout (fill-rule weights, exact keys)."""
    from common.smoke_weights import make_smoke_checkpoint

    return make_smoke_checkpoint(NET, tmp_path_factory.mktemp("d3d_weights") / "epoch_20.pth")


def make_tiny_inputs(root: Path, golden: Path) -> dict[str, Path]:
    """root/test/{a.speaker.mp4 (5 frames), b.listener.mp4 (3 frames), still.png}, made from the
    golden 256x256 astronaut frame (dlib finds its face)."""
    from PIL import Image

    from common.media import write_video

    frame = np.load(golden / "recon_align.npz")["frame_rgb"]
    (root / "test").mkdir(parents=True, exist_ok=True)
    files = {"a": root / "test" / "a.speaker.mp4", "b": root / "test" / "b.listener.mp4",
             "png": root / "test" / "still.png"}
    write_video(files["a"], np.stack([np.roll(frame, (i, 2 * i), axis=(0, 1)) for i in range(5)]))
    write_video(files["b"], np.stack([np.roll(frame, -i, axis=1) for i in range(3)]))
    Image.fromarray(frame).save(files["png"])
    return files
