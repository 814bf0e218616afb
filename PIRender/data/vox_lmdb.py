"""The PIRender LMDB layout (upstream-spec 4.1), readable by the original readers too.

One LMDB per image size under ``<root>/<size>/``, with list files beside the size folders::

    <root>/test_list.txt, <root>/train_list.txt      one video name per line
    <root>/<size>/data.mdb

Keys are UTF-8 text; integers inside keys are zero-filled to 7 digits; parts are joined by '-':

=========================  =========================================================================
``length``                 number of videos in the LMDB, 7-digit text
``<name>-length``          frame count N of the video, 7-digit text
``<name>-<i:07d>``         JPEG bytes (PIL default quality) of frame i, RGB, size x size
``<name>-coeff_3dmm``      raw little-endian float32 bytes of (N, 260) = coeff 257 | s | t0 | t1
=========================  =========================================================================

``<name>`` is the video stem, e.g. ``ab12cd34ef56.listener``.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from common.io import UserError

COEFF_DIM = 260  # 257 Deep3DFaceRecon coefficients | s, t0, t1
MAP_SIZE = 1 << 40  # 1 TiB of address space, as upstream (the file grows as needed)
LIST_FILES = {"test": "test_list.txt", "train": "train_list.txt"}


def format_key(*parts: str | int) -> bytes:
    """Upstream ``format_for_lmdb``: ints zero-filled to 7 digits, parts joined by '-'."""
    return "-".join(str(p).zfill(7) if isinstance(p, (int, np.integer)) else str(p) for p in parts).encode("utf-8")


def encode_count(n: int) -> bytes:
    return str(int(n)).zfill(7).encode("utf-8")


def encode_frame(frame: np.ndarray, size: int, img_format: str = "jpeg") -> bytes:
    """RGB uint8 (H, W, 3) -> image bytes at size x size (PIL bicubic, aspect not kept)."""
    img = Image.fromarray(frame)
    if img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format=img_format)
    return buf.getvalue()


def decode_frame(data: bytes) -> np.ndarray:
    """Image bytes -> RGB uint8 (H, W, 3)."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def coeff_260(coeff: np.ndarray, transform_params: np.ndarray) -> np.ndarray:
    """(N, 257) coefficients + (N, 5) transform params -> (N, 260) float32 = coeff | s, t0, t1."""
    coeff = np.asarray(coeff)
    tp = np.asarray(transform_params)
    if coeff.ndim != 2 or coeff.shape[1] != 257:
        raise ValueError(f"coeff must be (N, 257), got {coeff.shape}")
    if tp.ndim != 2 or tp.shape != (coeff.shape[0], 5):
        raise ValueError(f"transform_params must be ({coeff.shape[0]}, 5), got {tp.shape}")
    return np.ascontiguousarray(np.concatenate([coeff, tp[:, 2:5]], 1).astype("<f4"))


def lmdb_dir(root: str | os.PathLike, size: int) -> Path:
    return Path(root) / str(size)


def open_env(path: str | os.PathLike, write: bool = False):
    """Open an LMDB environment (read-only unless ``write``); UserError naming ``path`` on failure."""
    import lmdb

    p = Path(path)
    try:
        if write:
            p.mkdir(parents=True, exist_ok=True)
            env = lmdb.open(str(p), map_size=MAP_SIZE, readahead=False, meminit=False, map_async=True)
        else:
            if not (p / "data.mdb").is_file():
                raise UserError(f"{p}: not an LMDB folder (no data.mdb)")
            env = lmdb.open(str(p), readonly=True, lock=False, readahead=False, meminit=False,
                            max_readers=256)
    except lmdb.Error as e:
        raise UserError(f"{p}: cannot open LMDB ({e})") from None
    _check_not_truncated(env, p)
    return env


def _check_not_truncated(env, p: Path) -> None:
    """A data.mdb shorter than the pages its header says are in use (a copy cut short, a full
    disk) would kill the reader with SIGBUS when it touches the missing pages: refuse it here."""
    need = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    have = (p / "data.mdb").stat().st_size
    if have < need:
        env.close()
        raise UserError(f"{p / 'data.mdb'}: truncated LMDB ({have} bytes, its header says {need}); "
                        "delete the folder and re-run PIRender.prepare_vox_lmdb, or copy the file again")


@dataclass(frozen=True)
class VideoEntry:
    name: str
    n_frames: int


class VoxLMDB:
    """Reader of one size's LMDB. ``path`` is the prepare output root (with ``<size>/`` and the
    list files) or the size folder itself.

    Video names come from the list files (``split`` 'test', 'train' or 'all' = both) when they name
    anything, else from the ``*-length`` keys of the LMDB.
    """

    def __init__(self, path: str | os.PathLike, size: int = 256, split: str = "all"):
        p = Path(path)
        if not p.exists():
            raise UserError(f"{p}: LMDB folder not found")
        if (p / "data.mdb").is_file():
            self.db_path, self.root = p, p.parent
        elif (p / str(size) / "data.mdb").is_file():
            self.db_path, self.root = p / str(size), p
        else:
            raise UserError(f"{p}: no LMDB found (expected {p / str(size) / 'data.mdb'} or {p / 'data.mdb'})")
        self.size = size
        self.env = open_env(self.db_path)
        self.names = self._list_names(split)

    def _list_names(self, split: str) -> list[str]:
        files = list(LIST_FILES.values()) if split == "all" else [LIST_FILES[split]]
        names: list[str] = []
        for fn in files:
            f = self.root / fn
            if f.is_file():
                names += [ln.strip() for ln in f.read_text().splitlines() if ln.strip()]
        if not names:  # upstream writes train_list.txt empty; fall back to the keys
            with self.env.begin() as txn:
                names = [k.decode()[: -len("-length")] for k, _ in txn.cursor()
                         if k.endswith(b"-length") and k != b"-length"]
        return sorted(dict.fromkeys(names))

    def close(self) -> None:
        self.env.close()

    def __enter__(self) -> "VoxLMDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _get(self, txn, key: bytes, what: str) -> bytes:
        v = txn.get(key)
        if v is None:
            raise UserError(f"{self.db_path}: missing key {key.decode()!r} ({what})")
        return bytes(v)

    def n_frames(self, name: str) -> int:
        with self.env.begin() as txn:
            return int(self._get(txn, format_key(name, "length"), "frame count").decode())

    def has(self, name: str) -> bool:
        with self.env.begin() as txn:
            return txn.get(format_key(name, "length")) is not None

    def coeffs(self, name: str) -> np.ndarray:
        """(N, 260) float32 coefficients; UserError when the byte count disagrees with N."""
        n = self.n_frames(name)
        with self.env.begin() as txn:
            raw = self._get(txn, format_key(name, "coeff_3dmm"), "coefficients")
        arr = np.frombuffer(raw, dtype="<f4")
        if arr.size != n * COEFF_DIM:
            raise UserError(f"{self.db_path}: {name}: coefficients hold {arr.size} floats, "
                            f"expected {n} frames x {COEFF_DIM}")
        return arr.reshape(n, COEFF_DIM).astype(np.float32)

    def frame_bytes(self, name: str, index: int) -> bytes:
        with self.env.begin() as txn:
            return self._get(txn, format_key(name, int(index)), f"frame {index}")

    def frame(self, name: str, index: int) -> np.ndarray:
        """RGB uint8 (size, size, 3) frame ``index`` of video ``name``."""
        return decode_frame(self.frame_bytes(name, index))

    def frames(self, name: str, indices: Sequence[int]) -> np.ndarray:
        """(len(indices), H, W, 3) RGB uint8."""
        with self.env.begin() as txn:
            return np.stack([decode_frame(self._get(txn, format_key(name, int(i)), f"frame {i}")) for i in indices])

    def entries(self) -> Iterator[VideoEntry]:
        for name in self.names:
            yield VideoEntry(name, self.n_frames(name))


def image_to_tensor_array(frames: np.ndarray) -> np.ndarray:
    """RGB uint8 (B, H, W, 3) -> float32 (B, 3, H, W) in [-1, 1] (ToTensor then (x-0.5)/0.5)."""
    x = frames.astype(np.float32) / 255.0
    return np.ascontiguousarray(((x - 0.5) / 0.5).transpose(0, 3, 1, 2))


def tensor_to_uint8(images: np.ndarray) -> np.ndarray:
    """float (B, 3, H, W) in [-1, 1] -> RGB uint8 (B, H, W, 3), truncated as upstream's writer:
    ``uint8(((clamp(x, -1, 1) + 1) / 2) * 255)``."""
    x = (np.clip(images, -1.0, 1.0) + 1.0) / 2.0 * 255.0
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1).astype(np.uint8))
