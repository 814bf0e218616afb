"""Per-video work of ``PIRender.prepare_vox_lmdb``: read coefficients, decode and encode frames.

Kept free of torch so that worker processes start fast.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


from common.artifacts import load_recon_mat
from common.io import UserError
from common.media import MediaError, check_clip, iter_frames
from PIRender.data.vox_lmdb import coeff_260, encode_frame

# Preference when the same name exists in several sub-folders (upstream reads train/ first).
_SUBDIR_ORDER = ("train", "test")


def find_coeff_files(root: str | os.PathLike) -> dict[str, Path]:
    """Map video stem -> .mat file under ``root`` (``root/*.mat`` and one level below).

    As upstream, ``train/<name>.mat`` wins over ``test/<name>.mat``; other sub-folders follow in
    sorted order, files directly in ``root`` come last.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: coefficient folder not found")
    subdirs = sorted((d for d in root.iterdir() if d.is_dir()),
                     key=lambda d: (_SUBDIR_ORDER.index(d.name) if d.name in _SUBDIR_ORDER else 2, d.name))
    found: dict[str, Path] = {}
    for folder in [*subdirs, root]:
        for f in sorted(folder.glob("*.mat")):
            found.setdefault(f.stem, f)
    return found


@dataclass
class PreparedVideo:
    name: str
    n_frames: int = 0
    frames: dict[int, list[bytes]] = field(default_factory=dict)  # size -> encoded frames
    coeff: bytes = b""
    error: str | None = None


def prepare_video(video: str, mat: str, sizes: tuple[int, ...], img_format: str = "jpeg") -> PreparedVideo:
    """Decode one video and encode its frames for every size; check it against its coefficients.

    Errors are returned (``.error``), not raised, so a pool worker never dies on a bad input.
    """
    name = Path(video).stem
    out = PreparedVideo(name)
    try:
        coeff, tp = load_recon_mat(mat)
        n_coeff = coeff.shape[0]
        info = check_clip(video)  # 30 fps, 256x256: the coefficients' crop is of a 256 frame
        if info.n_frames != n_coeff:
            raise UserError(f"{video}: frame-count mismatch: the video has {info.n_frames} frames, "
                            f"{mat} has {n_coeff} coefficient rows")
        out.frames = {s: [] for s in sizes}
        n = 0
        for batch in iter_frames(video, batch_size=16):
            for frame in batch:
                for s in sizes:
                    out.frames[s].append(encode_frame(frame, s, img_format))
                n += 1
        if n != n_coeff:
            raise UserError(f"{video}: frame-count mismatch: decoded {n} frames, {mat} has {n_coeff} rows")
        out.n_frames = n
        out.coeff = coeff_260(coeff, tp).tobytes()
    except (UserError, MediaError) as e:
        return PreparedVideo(name, error=str(e))
    return out


def prepare_video_star(args: tuple) -> PreparedVideo:
    return prepare_video(*args)
