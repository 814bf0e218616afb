"""Input discovery and streaming frame sources: videos, and still images as one-frame videos."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from common.dataset import IMAGE_EXTS, VIDEO_EXTS, find_files
from common.media import MediaError, iter_frames

MEDIA_EXTS: tuple[str, ...] = tuple(VIDEO_EXTS) + tuple(IMAGE_EXTS)


def is_image(path: str | os.PathLike) -> bool:
    return Path(path).suffix in IMAGE_EXTS


def find_inputs(root: str | os.PathLike) -> list[Path]:
    """Videos (.mp4) and still images (.png, .jpg) under ``root``, recursively, sorted."""
    return find_files(root, MEDIA_EXTS)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """A still image as (H,W,3) RGB uint8 (MediaError naming the file when unreadable)."""
    p = Path(path)
    try:
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise MediaError(f"{p}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise MediaError(f"{p}: cannot read as an image ({' '.join(str(e).split())})") from None


def iter_media_frames(path: str | os.PathLike, batch_size: int = 16) -> Iterator[np.ndarray]:
    """RGB uint8 batches (B,H,W,3), streaming; a still image is one batch of one frame."""
    if is_image(path):
        yield read_image(path)[None]
    else:
        yield from iter_frames(path, batch_size=batch_size)
