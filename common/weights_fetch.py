"""Download the released weights from their original sources, verify them, record their hashes.

``python -m common.weights fetch`` and ``verify`` call :func:`fetch` and :func:`verify`. Each
registry entry's :class:`common.weights.FetchSource` says where its file comes from:

* ``https``: a plain URL (GitHub release, download.pytorch.org, robots.ox.ac.uk);
* ``gdrive_file``: a Google Drive file id (``gdown`` when installed, else plain HTTP);
* ``gdrive_folder``: a Google Drive folder id and the file's name inside it;
* ``onedrive``: a OneDrive share URL and the file's path inside the share.

Each kind sits behind a base URL that an environment variable overrides (tests point them at a
local server): ``VICO_FETCH_HTTPS_BASE`` (replaces scheme and host of the URL),
``VICO_FETCH_GDRIVE_FILE_BASE``, ``VICO_FETCH_GDRIVE_FOLDER_BASE``, ``VICO_FETCH_ONEDRIVE_BASE``.

A download streams into ``.<name>.part`` beside its final place (resumed with an HTTP Range
request after an interruption), is unpacked when it is an archive, checked against the known
sha256 (torch.hub-style names carry its first hex digits) or else against the size and sha256
recorded at its first verified fetch in ``<weights>/SHA256SUMS`` (trust on first use), loaded
strictly against its manifest, and only then renamed to its final name.
"""

from __future__ import annotations

import base64
import hashlib
import html.parser
import http.client
import logging
import os
import shutil
import socket
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from tqdm import tqdm

from common.io import UserError, write_text_atomic
from common.weights import (REGISTRY, WeightSpec, extract_state_dict, get_spec, is_smoke, known_sha256,
                            manifest_shapes, read_checkpoint_file, smoke_sidecar, state_dict_mismatch)

logger = logging.getLogger("common.weights_fetch")

BASE_ENV = {
    "https": "VICO_FETCH_HTTPS_BASE",
    "gdrive_file": "VICO_FETCH_GDRIVE_FILE_BASE",
    "gdrive_folder": "VICO_FETCH_GDRIVE_FOLDER_BASE",
    "onedrive": "VICO_FETCH_ONEDRIVE_BASE",
}
DEFAULT_BASE = {
    "gdrive_file": "https://drive.usercontent.google.com",
    "gdrive_folder": "https://drive.google.com",
    "onedrive": "https://api.onedrive.com/v1.0",
}
SUMS_FILE = "SHA256SUMS"
CHUNK = 1 << 20
USER_AGENT = "vico-baseline-weights-fetch/1"


class FetchError(Exception):
    """A file could not be fetched; the message is the one-line reason."""


class HttpStatus(FetchError):
    """The server answered with an HTTP error status (``code``)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class TransferInterrupted(FetchError):
    """The transfer stopped repeatedly; the ``.part`` file stays so that the next fetch resumes."""


def fetchable() -> list[str]:
    """Registry names that ``fetch`` can download."""
    return [n for n, s in REGISTRY.items() if s.fetch is not None and s.default_path is not None]


# --------------------------------------------------------------------------------------------
# Hashes and SHA256SUMS (trust on first use)
# --------------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def read_sums(root: Path) -> dict[str, tuple[str, int]]:
    """``<root>/SHA256SUMS`` as relpath -> (sha256, size). Lines: ``<sha256>  <size>  <relpath>``."""
    path = root / SUMS_FILE
    out: dict[str, tuple[str, int]] = {}
    if not path.is_file():
        return out
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        if len(parts) != 3 or len(parts[0]) != 64 or not parts[1].isdigit():
            raise UserError(f"{path}:{n}: expected '<sha256>  <size>  <path>', got {line[:80]!r}")
        out[parts[2]] = (parts[0].lower(), int(parts[1]))
    return out


def record_sum(root: Path, relpath: str, sha: str, size: int) -> None:
    """Add or replace the line of ``relpath`` in ``<root>/SHA256SUMS`` (atomic rewrite)."""
    sums = read_sums(root)
    sums[relpath] = (sha, size)
    lines = ["# sha256  size  path: recorded by `python -m common.weights fetch` at the first verified fetch"]
    lines += [f"{s}  {z}  {p}" for p, (s, z) in sorted(sums.items())]
    write_text_atomic(root / SUMS_FILE, "\n".join(lines) + "\n")


def check_hash(spec: WeightSpec, path: Path, root: Path, sha: str | None = None) -> tuple[bool, str]:
    """(ok, status) of a real file's hash: the known sha256 prefix, else SHA256SUMS, else unrecorded."""
    known = known_sha256(spec)
    rec = read_sums(root).get(spec.default_path or "")
    if known is None and rec is None:
        return True, "not recorded"
    size = path.stat().st_size
    if rec is not None and rec[1] != size:
        return False, f"MISMATCH: {size} bytes, SHA256SUMS says {rec[1]}"
    sha = sha or sha256_file(path)
    if known is not None:
        if not sha.startswith(known):
            return False, f"MISMATCH: sha256 {sha[:len(known)]}, expected {known}"
        return True, f"ok ({known}, from the name)" if not spec.sha256 else "ok (known sha256)"
    assert rec is not None
    if sha != rec[0]:
        return False, f"MISMATCH: sha256 {sha[:12]}, SHA256SUMS says {rec[0][:12]}"
    return True, "ok (SHA256SUMS)"


def check_load(spec: WeightSpec, path: Path) -> tuple[bool, str]:
    """(ok, status) of a strict load of ``path`` against ``spec``'s manifest (keys and shapes)."""
    if spec.manifest is None:
        return True, "no manifest"
    try:
        sd = extract_state_dict(read_checkpoint_file(path), spec, path)
    except UserError as e:
        return False, f"FAIL: {str(e).removeprefix(f'{path}: ')}"
    problem = state_dict_mismatch(manifest_shapes(spec.manifest), sd)
    if problem:
        return False, f"FAIL: {problem}"
    return True, f"ok ({len(sd)} tensors)"


# --------------------------------------------------------------------------------------------
# HTTP: streaming, resumable
# --------------------------------------------------------------------------------------------


class HtmlPage(Exception):
    """The server answered with a web page where a file was expected (``text`` holds it)."""

    def __init__(self, url: str, text: str):
        super().__init__(url)
        self.url, self.text = url, text


def _request(url: str, headers: dict[str, str] | None = None, timeout: float = 60.0):
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
    try:
        return urllib.request.urlopen(req, timeout=timeout)  # follows redirects (Range kept)
    except urllib.error.HTTPError as e:
        raise HttpStatus(f"HTTP {e.code} {e.reason} from {url}", e.code) from None
    except urllib.error.URLError as e:
        raise FetchError(f"cannot reach {urllib.parse.urlsplit(url).netloc} ({e.reason})") from None
    except (OSError, http.client.HTTPException) as e:
        raise FetchError(f"cannot reach {urllib.parse.urlsplit(url).netloc} ({e})") from None


def get_text(url: str) -> str:
    """A small web page (folder listings, confirmation pages)."""
    with _request(url) as resp:
        return resp.read(4 << 20).decode("utf-8", "replace")


def download(url: str, part: Path, desc: str, attempts: int = 5, wait_s: float = 0.5,
             progress: bool | None = None) -> Path:
    """Stream ``url`` into ``part``, resuming a partial ``part`` with a Range request.

    Retries an interrupted transfer up to ``attempts`` times, continuing where it stopped.
    Raises :class:`HtmlPage` when the answer is a web page, :class:`FetchError` otherwise.
    """
    last = "no attempt"
    for attempt in range(1, attempts + 1):
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            resp = _request(url, headers)
        except HttpStatus as e:
            if have and e.code == 416:  # Range not satisfiable: the part is already complete
                return part
            raise
        with resp:
            ctype = resp.headers.get("Content-Type", "")
            if ctype.startswith("text/html"):
                raise HtmlPage(resp.geturl(), resp.read(4 << 20).decode("utf-8", "replace"))
            length = resp.headers.get("Content-Length")
            if resp.status == 206 and have:
                mode, start = "ab", have
            else:
                mode, start = "wb", 0
            total = start + int(length) if length is not None else None
            got = start
            part.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(part, mode) as f, tqdm(total=total, initial=start, unit="B", unit_scale=True,
                                                 unit_divisor=1024, desc=desc, leave=False,
                                                 disable=None if progress is None else not progress) as bar:
                    while True:
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        f.write(block)
                        got += len(block)
                        bar.update(len(block))
            except (http.client.IncompleteRead, ConnectionError, socket.timeout, TimeoutError, ssl.SSLError) as e:
                last = f"interrupted after {got} bytes ({type(e).__name__})"
            else:
                if total is None or got >= total:
                    return part
                last = f"interrupted after {got} of {total} bytes"
        if attempt < attempts:
            logger.warning("%s: %s; resuming (attempt %d of %d)", desc, last, attempt + 1, attempts)
            time.sleep(wait_s * attempt)
    raise TransferInterrupted(f"transfer kept failing ({last}); run fetch again to resume from {part}")


# --------------------------------------------------------------------------------------------
# Source kinds
# --------------------------------------------------------------------------------------------


def _base(kind: str) -> str | None:
    """The overriding base URL of ``kind`` from its environment variable (None: the real one)."""
    value = os.environ.get(BASE_ENV[kind], "").strip()
    return value.rstrip("/") or None


def https_url(url: str) -> str:
    """``url``, with scheme and host replaced by ``$VICO_FETCH_HTTPS_BASE`` when that is set."""
    base = _base("https")
    if base is None:
        return url
    parts = urllib.parse.urlsplit(url)
    return base + parts.path + (f"?{parts.query}" if parts.query else "")


class _ConfirmForm(html.parser.HTMLParser):
    """The download form of Google Drive's 'cannot scan this file for viruses' page."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and self.action is None and a.get("action"):
            self.action = a["action"]
        elif tag == "input" and self.action is not None and a.get("type") == "hidden" and a.get("name"):
            self.fields[a["name"] or ""] = a.get("value") or ""


def _gdrive_file_http(file_id: str, part: Path, desc: str) -> None:
    base = _base("gdrive_file") or DEFAULT_BASE["gdrive_file"]
    url = f"{base}/download?" + urllib.parse.urlencode({"id": file_id, "export": "download", "confirm": "t"})
    try:
        download(url, part, desc)
        return
    except HtmlPage as page:
        form = _ConfirmForm()
        form.feed(page.text)
        if not form.action or "id" not in form.fields:
            raise FetchError("Google Drive answered with a web page, not the file (download quota exceeded, "
                             "or the file is no longer shared)") from None
        action = urllib.parse.urljoin(page.url, form.action)
    try:
        download(action + "?" + urllib.parse.urlencode(form.fields), part, desc)
    except HtmlPage:
        raise FetchError("Google Drive answered with a web page twice (download quota exceeded?)") from None


def _gdown():
    """The gdown module when installed and Google Drive is not redirected by the environment."""
    if _base("gdrive_file") or _base("gdrive_folder"):
        return None
    try:
        import gdown  # optional extra 'fetch'
    except ImportError:
        return None
    return gdown


def gdrive_file(file_id: str, part: Path, desc: str) -> None:
    gdown = _gdown()
    if gdown is None:
        _gdrive_file_http(file_id, part, desc)
        return
    try:
        out = gdown.download(id=file_id, output=str(part), quiet=False, resume=True)
    except Exception as e:  # noqa: BLE001 - gdown raises many kinds; all mean "not fetched"
        raise FetchError(f"gdown: {' '.join(str(e).split())[:200]}") from None
    if not out or not part.is_file():
        raise FetchError("gdown could not download the file (quota exceeded or no longer shared?)")


class _FolderListing(html.parser.HTMLParser):
    """Entries (id, title, is_folder) of Google Drive's embedded folder view."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[tuple[str, str, bool]] = []
        self._id: str | None = None
        self._folder = False
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "div" and "flip-entry" in classes and (a.get("id") or "").startswith("entry-"):
            self._id, self._folder = (a.get("id") or "")[len("entry-"):], False
        elif tag == "a" and self._id is not None and "/folders/" in (a.get("href") or ""):
            self._folder = True
        elif tag == "div" and "flip-entry-title" in classes and self._id is not None:
            self._in_title = True

    def handle_data(self, data: str) -> None:
        if self._in_title and self._id is not None:
            self.entries.append((self._id, data.strip(), self._folder))
            self._id, self._in_title = None, False


def _find_in_folder(folder_id: str, name: str, depth: int = 3) -> str | None:
    base = _base("gdrive_folder") or DEFAULT_BASE["gdrive_folder"]
    listing = _FolderListing()
    listing.feed(get_text(f"{base}/embeddedfolderview?" + urllib.parse.urlencode({"id": folder_id})))
    for entry_id, title, is_folder in listing.entries:
        if not is_folder and title == name:
            return entry_id
    for entry_id, _title, is_folder in listing.entries:
        if is_folder and depth > 0:
            found = _find_in_folder(entry_id, name, depth - 1)
            if found:
                return found
    return None


def gdrive_folder(folder_id: str, member: str, part: Path, desc: str) -> None:
    gdown = _gdown()
    if gdown is not None:
        tmp = part.parent / f".{part.name}.folder"
        try:
            gdown.download_folder(id=folder_id, output=str(tmp), quiet=False)
            hits = sorted(tmp.rglob(Path(member).name))
            if not hits:
                raise FetchError(f"the Google Drive folder holds no {Path(member).name}")
            shutil.move(str(hits[0]), part)
            return
        except FetchError:
            raise
        except Exception as e:  # noqa: BLE001
            raise FetchError(f"gdown: {' '.join(str(e).split())[:200]}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    file_id = _find_in_folder(folder_id, Path(member).name)
    if file_id is None:
        raise FetchError(f"the Google Drive folder lists no {Path(member).name}")
    _gdrive_file_http(file_id, part, desc)


def onedrive_url(share_url: str, member: str | None) -> str:
    """The OneDrive API download URL of ``member`` inside the share ``share_url``."""
    base = _base("onedrive") or DEFAULT_BASE["onedrive"]
    token = "u!" + base64.urlsafe_b64encode(share_url.encode()).decode().rstrip("=")
    item = f"root:/{urllib.parse.quote(member)}:" if member else "root"
    return f"{base}/shares/{token}/{item}/content"


# --------------------------------------------------------------------------------------------
# fetch
# --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    name: str
    status: str   # fetched | present | failed
    detail: str


def _download_source(spec: WeightSpec, part: Path) -> None:
    src = spec.fetch
    assert src is not None
    desc = spec.filename
    try:
        if src.kind == "https":
            download(https_url(src.ref), part, desc)
        elif src.kind == "gdrive_file":
            gdrive_file(src.ref, part, desc)
        elif src.kind == "gdrive_folder":
            gdrive_folder(src.ref, src.member or spec.filename, part, desc)
        else:
            download(onedrive_url(src.ref, src.member), part, desc)
    except HtmlPage as page:
        raise FetchError(f"{page.url} answered with a web page, not the file (moved, or sign-in needed)") from None


def _unpack(spec: WeightSpec, archive: Path, out: Path) -> None:
    """Extract the registry member of a zip ``archive`` into ``out``."""
    src = spec.fetch
    assert src is not None and src.member
    if not zipfile.is_zipfile(archive):
        raise FetchError(f"the download is not a zip archive ({archive.stat().st_size} bytes)")
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        member = src.member if src.member in names else next(
            (n for n in names if n.endswith("/" + src.member) or Path(n).name == Path(src.member).name), None)
        if member is None:
            raise FetchError(f"the archive holds no {src.member} (it has {len(names)} entries)")
        with z.open(member) as fin, open(out, "wb") as fout:
            shutil.copyfileobj(fin, fout, CHUNK)


def manual_steps(spec: WeightSpec, final: Path) -> str:
    src = spec.fetch
    assert src is not None
    what = f"the archive, take {src.member} out of it" if src.member and src.archive else f"{spec.filename}"
    return (f"by hand: open {src.page}, download {what}, put it at {final}, "
            f"then run python -m common.weights verify")


def fetch_one(spec: WeightSpec, root: Path) -> Outcome:
    """Fetch one registry file into ``root``: download, unpack, check hash and strict load, accept."""
    final = spec.default_file(root)
    assert final is not None and spec.fetch is not None and spec.default_path is not None
    if final.is_file() and not is_smoke(final):
        return Outcome(spec.name, "present", f"{final} already there (verify checks it)")
    src = spec.fetch
    dl_name = Path(urllib.parse.urlsplit(src.ref).path).name if src.kind == "https" else (
        f"{spec.name}.zip" if src.archive else final.name)
    part = final.parent / f".{dl_name}.part"
    candidate = part
    try:
        _download_source(spec, part)
        if src.archive == "zip":
            candidate = final.parent / f".{final.name}.unpacked.part"
            _unpack(spec, part, candidate)
        sha = sha256_file(candidate)
        ok, hash_status = check_hash(spec, candidate, root, sha)
        if not ok:
            raise FetchError(f"refused and removed: {hash_status}")
        ok, load_status = check_load(spec, candidate)
        if not ok:
            raise FetchError(f"refused and removed: strict load against the manifest: {load_status}")
    except FetchError as e:
        if candidate != part:
            candidate.unlink(missing_ok=True)
        if not isinstance(e, TransferInterrupted):  # a partial download stays so that fetch resumes it
            part.unlink(missing_ok=True)
        raise
    size = candidate.stat().st_size
    os.replace(candidate, final)
    smoke_sidecar(final).unlink(missing_ok=True)  # a smoke-test stand-in was replaced by the real file
    if part.exists():
        part.unlink()
    record_sum(root, spec.default_path, sha, size)
    return Outcome(spec.name, "fetched", f"{final} ({size} bytes, sha256 {sha[:12]}; hash {hash_status}; "
                                         f"load {load_status})")


def show_terms(specs: Iterable[WeightSpec]) -> None:
    """Print each file's licence or terms of use, as its publisher states them."""
    for spec in specs:
        assert spec.fetch is not None
        print(f"{spec.name} ({spec.filename}): {spec.fetch.terms}", flush=True)


def confirm_terms(specs: list[WeightSpec], accept_terms: bool,
                  ask: Callable[[str], str] | None = None) -> None:
    """Show each file's terms; go on with ``--accept_terms`` or an interactive yes, else UserError."""
    show_terms(specs)
    if accept_terms:
        return
    if ask is None:
        if not sys.stdin.isatty():
            raise UserError("fetch shows the terms of use above; pass --accept_terms to accept them "
                            "(needed when not interactive)")
        ask = input
    if ask("Accept these terms and download? [y/N] ").strip().lower() not in ("y", "yes"):
        raise UserError("terms not accepted; nothing downloaded")


def fetch(names: list[str], root: Path, accept_terms: bool = False,
          ask: Callable[[str], str] | None = None) -> list[Outcome]:
    """Fetch ``names`` into ``root``; each failure is one line (file, reason, manual steps)."""
    specs = [get_spec(n) for n in names]
    bad = [s.name for s in specs if s.fetch is None or s.default_path is None]
    if bad:
        raise UserError(f"cannot fetch {', '.join(bad)}: no public source (known: {', '.join(fetchable())})")
    todo = [s for s in specs if not ((f := s.default_file(root)) and f.is_file() and not is_smoke(f))]
    if todo:
        confirm_terms(todo, accept_terms, ask)
    outcomes = []
    for spec in specs:
        try:
            outcome = fetch_one(spec, root)
        except FetchError as e:
            final = spec.default_file(root)
            outcome = Outcome(spec.name, "failed", f"{spec.filename}: {e}; {manual_steps(spec, final)}")
            print(f"error: {outcome.detail}", file=sys.stderr, flush=True)
        else:
            logger.info("%s: %s %s", spec.name, outcome.status, outcome.detail)
        outcomes.append(outcome)
    return outcomes


# --------------------------------------------------------------------------------------------
# verify
# --------------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    file: str
    size: int
    kind: str      # real | smoke-test
    hash: str
    load: str
    ok: bool


def verify(root: Path) -> list[Row]:
    """A row for every registry file present under ``root``: size, hash status, strict load."""
    rows = []
    for spec in REGISTRY.values():
        path = spec.default_file(root)
        if path is None or not path.is_file():
            continue
        smoke = is_smoke(path)
        hash_ok, hash_status = (True, "n/a (smoke-test)") if smoke else check_hash(spec, path, root)
        load_ok, load_status = check_load(spec, path)
        rows.append(Row(spec.name, spec.default_path or "", path.stat().st_size,
                        "smoke-test" if smoke else "real", hash_status, load_status, hash_ok and load_ok))
    return rows


def format_table(rows: list[Row]) -> str:
    header = ("name", "file", "MB", "kind", "sha256", "strict load")
    body = [(r.name, r.file, f"{r.size / 1e6:.1f}", r.kind, r.hash, r.load) for r in rows]
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in [header, *body])
