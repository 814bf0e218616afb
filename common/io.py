"""Atomic writes, skip-if-complete, one-line user errors and the per-run JSON report."""
from __future__ import annotations

import dataclasses
import errno
import glob
import json
import logging
import os
import platform
import re
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

log = logging.getLogger(__name__)


class UserError(Exception):
    """A problem with the user's input or setup, reported as one line without a traceback."""

    def __init__(self, message: str):
        # One line, always: newlines in wrapped messages would break the contract.
        super().__init__(" ".join(str(message).split()))


def setup_logging(verbose: bool = False) -> None:
    """Configure the root logger once for a CLI process (rank-aware prefix under torchrun)."""
    rank = os.environ.get("RANK")
    prefix = f"[rank {rank}] " if rank is not None and os.environ.get("WORLD_SIZE", "1") != "1" else ""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


_TEMP_NAME = re.compile(r"\.(?P<stem>.+)\.[a-z0-9_]{8}\.tmp(?P<ext>.*)")


def os_error_line(e: OSError) -> str:
    """``PATH: cause`` for an OSError (read-only folder, disk full, file too large, permission,
    a file where a folder is expected, ...). An atomic_path temporary file is named by its final
    path (the temporary one is deleted by then)."""
    path = e.filename if e.filename is not None else getattr(e, "filename2", None)
    cause = e.strerror or " ".join(str(e).split()) or type(e).__name__
    if path is None:
        return cause
    p = Path(os.fsdecode(path))
    m = _TEMP_NAME.fullmatch(p.name)
    if m:
        p = p.with_name(m["stem"] + m["ext"])
    hint = {errno.EFBIG: " (file-size limit reached)",
            errno.EACCES: " (choose a folder you can write)", errno.EEXIST: " (a file is in the way)",
            errno.ENOTDIR: " (a file is in the way of a folder)"}.get(e.errno or 0, "")
    return f"{p}: {cause}{hint}"


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> None:
    """Run a CLI ``main(argv) -> exit code``. A UserError, or an OSError from the file system
    (read-only folder, disk full, file-size limit, permission, a file where a folder should be),
    becomes one ``error: PATH: cause`` line and exit 2; atomic writes leave nothing partial."""
    try:
        code = main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    except OSError as e:
        print(f"error: {os_error_line(e)}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(int(code or 0))


def check_writable(folder: str | os.PathLike) -> None:
    """Make ``folder`` (with its parents) and prove a file can be written there, before any work;
    an OSError (read-only, permission, a file in the way) otherwise."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".write_check_"):
        pass


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success, delete it on error.

    The temporary name keeps the extension (``suffix`` overrides it) so that writers which pick a
    format from the extension (PyAV, savemat, np.save) behave as for the final name. Temporary
    files of ``path`` left by a killed earlier run (SIGKILL, power loss) are deleted first; one
    output is written by one process at a time (ranks write disjoint outputs).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix if suffix is None else suffix
    _remove_stale_temps(path, ext)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{ext}", dir=path.parent)
    _try_lock(fd)  # held while writing: marks the temporary file as in use (released at death)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except (RuntimeError, OSError) as e:
        tmp_path.unlink(missing_ok=True)
        # A short write reported without a file name (np.save: "N requested and M written") or as
        # a RuntimeError (torch.save: "PytorchStreamWriter failed writing file ..."): name the file.
        if isinstance(e, OSError) and e.filename is None and e.errno is not None and e.strerror:
            raise OSError(e.errno, e.strerror, str(path)) from e  # e.g. ENOSPC from file.write
        unnamed = isinstance(e, OSError) and (e.filename is None or e.errno is None)
        if unnamed or (isinstance(e, RuntimeError) and "writ" in str(e).lower()):
            why = " ".join(str(e).split())
            raise OSError(errno.EIO, f"write failed ({why}; disk full or file-size limit?)", str(path)) from e
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    """An exclusive advisory lock on ``fd`` without waiting; True if taken (or unsupported)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, stale files are then always removable
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _remove_stale_temps(path: Path, ext: str) -> None:
    """Delete ``.<stem>.XXXXXXXX.tmp<ext>`` (mkstemp's 8 random characters) beside ``path`` that no
    live writer holds locked. The exact pattern leaves other outputs' files (``<stem>.b``) alone."""
    pattern = re.compile(re.escape(f".{path.stem}.") + r"[a-z0-9_]{8}" + re.escape(f".tmp{ext}"))
    for p in path.parent.glob(f".{glob.escape(path.stem)}.*.tmp*"):
        if not pattern.fullmatch(p.name):
            continue
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            if _try_lock(fd):
                log.info("removing %s, left by an interrupted earlier run", p)
                p.unlink(missing_ok=True)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


def config_to_dict(cfg: Any) -> dict:
    """A dataclass (or argparse Namespace) as a JSON-friendly dict."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        d = dataclasses.asdict(cfg)
    elif hasattr(cfg, "__dict__"):
        d = dict(vars(cfg))
    else:
        d = dict(cfg)
    return json.loads(json.dumps(d, default=_json_default))


def is_complete(path: str | os.PathLike) -> bool:
    """True when ``path`` exists and is non-empty. Outputs are written atomically, so an existing
    file is a finished one."""
    p = Path(path)
    return p.is_file() and p.stat().st_size > 0


def versions() -> dict[str, str]:
    """Versions of the interpreter and the main libraries, for run reports and checkpoints."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("torch", "numpy", "scipy", "av", "cv2", "dlib"):
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = str(getattr(mod, "__version__", "?"))
    return out


def run_record_name(name: str | None = None) -> str:
    """The run record's file name: ``run.json``, or ``run.<name>.json`` where several runs write
    into one folder (``--run_record NAME``), so that no run overwrites another's record."""
    if not name:
        return "run.json"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise UserError(f"--run_record {name!r}: use letters, digits, '_', '-' and '.' only")
    return f"run.{name}.json"


class RunReport:
    """What a stage did: its config, items done/skipped/failed with reasons; written as run.json."""

    def __init__(self, stage: str, config: Any, out_dir: str | os.PathLike, filename: str = "run.json"):
        self.stage = stage
        self.config = config_to_dict(config) if config is not None else {}
        self.path = Path(out_dir) / filename
        self.started = time.time()
        self.done: list[dict] = []
        self.skipped: list[dict] = []
        self.failures: list[dict] = []

    def ok(self, item: Any, outputs: Iterable[Any] = (), **facts: Any) -> None:
        """Record a finished item; ``facts`` (JSON-friendly) are stored with it."""
        self.done.append({"item": str(item), "outputs": [str(o) for o in outputs], **facts})

    def skip(self, item: Any, reason: str = "already complete") -> None:
        self.skipped.append({"item": str(item), "reason": reason})

    def fail(self, item: Any, reason: str | BaseException) -> None:
        msg = " ".join(str(reason).split())
        log.error("%s: %s", item, msg)
        self.failures.append({"item": str(item), "reason": msg})

    @property
    def n_failed(self) -> int:
        return len(self.failures)

    def exit_code(self) -> int:
        return 1 if self.failures else 0

    def to_dict(self) -> dict:
        return {
            "stage": self.stage,
            "config": self.config,
            "versions": versions(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started)),
            "seconds": round(time.time() - self.started, 3),
            "counts": {"done": len(self.done), "skipped": len(self.skipped), "failed": len(self.failures)},
            "done": self.done,
            "skipped": self.skipped,
            "failures": self.failures,
        }

    def merge(self, others: Iterable[dict]) -> None:
        """Fold the ``to_dict()`` of other ranks' reports into this one (rank 0 under torchrun)."""
        for other in others:
            if other is None:
                continue
            self.done.extend(other.get("done", []))
            self.skipped.extend(other.get("skipped", []))
            self.failures.extend(other.get("failures", []))
        key = lambda r: r["item"]  # noqa: E731 - stable order regardless of rank count
        self.done.sort(key=key)
        self.skipped.sort(key=key)
        self.failures.sort(key=key)

    def write(self) -> Path:
        write_json_atomic(self.path, self.to_dict())
        summary = f"{self.stage}: {len(self.done)} done, {len(self.skipped)} skipped, {len(self.failures)} failed"
        (log.warning if self.failures else log.info)("%s (report: %s)", summary, self.path)
        return self.path
