"""common.weights fetch / verify and the one resolver, against a local HTTP server (no internet).

The server on 127.0.0.1 plays each source kind (plain https, Google Drive file and folder,
OneDrive share) and serves fill-rule files in the released layouts. The large networks keep
their registry entry (source, ids, archive member, checkpoint layout) but get a small manifest,
so that the files stay small; syncnet_s is served as its full released-layout stand-in.
"""
from __future__ import annotations

import dataclasses
import hashlib
import html
import http.server
import io
import re
import shutil
import threading
import urllib.parse
import zipfile
from pathlib import Path

import pytest

from common import weights as W
from common import weights_fetch as F
from common.io import UserError
from common.smoke_weights import make_smoke_checkpoint

TINY = "vico_listener_generator"  # 1 MB manifest used in place of the big networks


class Server:
    """Routes: path -> bytes | ('redirect', location) | ('html', text); behaviours per path."""

    def __init__(self) -> None:
        self.routes: dict[str, object] = {}
        self.interrupt_once: set[str] = set()
        self.interrupt_always: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []  # (path with query, Range header)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                route = server.routes.get(self.path, server.routes.get(urllib.parse.urlsplit(self.path).path))
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if isinstance(route, tuple) and route[0] == "redirect":
                    self.send_response(302)
                    self.send_header("Location", route[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if isinstance(route, tuple) and route[0] == "html":
                    body = route[1].encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                data: bytes = route  # type: ignore[assignment]
                start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1)) if rng else 0
                self.send_response(206 if start else 200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data) - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                cut = self.path in server.interrupt_always or (self.path in server.interrupt_once and not start)
                if cut:
                    server.interrupt_once.discard(self.path)
                    self.wfile.write(data[start: start + max(1, (len(data) - start) // 3)])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)  # the transfer breaks after a third
                    return
                self.wfile.write(data[start:])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.httpd.shutdown()


@pytest.fixture(scope="module")
def syncnet_bytes(tmp_path_factory) -> bytes:
    """The released-layout stand-in of syncnet_v2.model (fill-rule weights)."""
    path = make_smoke_checkpoint("syncnet_s", tmp_path_factory.mktemp("src") / "syncnet_v2.model")
    return path.read_bytes()


@pytest.fixture
def env(server, monkeypatch):
    server.routes.clear()
    server.requests.clear()
    for kind in F.BASE_ENV.values():
        monkeypatch.setenv(kind, server.base)
    monkeypatch.setattr(F.time, "sleep", lambda s: None)
    return server


def _tiny(monkeypatch, tmp_path, name: str, **changes) -> bytes:
    """Swap ``name``'s manifest for the tiny one (layout and source kept); its released-layout bytes."""
    spec = dataclasses.replace(W.REGISTRY[name], manifest=TINY, **changes)
    monkeypatch.setitem(W.REGISTRY, name, spec)
    path = make_smoke_checkpoint(name, tmp_path / "src" / name)
    return path.read_bytes()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _no_partials(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part") or ".tmp" in p.name]


# ------------------------------------------------------------------------------------------
# the resolver
# ------------------------------------------------------------------------------------------


def test_resolver_order_and_message(tmp_path, monkeypatch):
    env_dir, root, explicit = tmp_path / "env", tmp_path / "root", tmp_path / "x" / "mine.model"
    for d in (env_dir / "syncnet_v2.model", root / "syncnet_v2.model", explicit):
        d.parent.mkdir(parents=True, exist_ok=True)
        d.write_bytes(b"w")
    monkeypatch.setenv("VICO_WEIGHTS_DIR", str(env_dir))
    assert W.resolve_weights("syncnet_s") == env_dir / "syncnet_v2.model"
    assert W.resolve_weights("syncnet_s", root=root) == root / "syncnet_v2.model"
    assert W.resolve_weights("syncnet_s", explicit, root) == explicit
    assert W.resolve_weights("syncnet_s", root) == root / "syncnet_v2.model"  # a folder holding the file
    with pytest.raises(UserError) as e:
        W.resolve_weights("syncnet_s", None, tmp_path / "none", flag="--sync")
    msg = str(e.value)
    assert msg.startswith(f"missing weights file {tmp_path / 'none' / 'syncnet_v2.model'} (")
    assert "run python -m common.weights fetch syncnet_s, or obtain" in msg and msg.endswith("or pass --sync PATH")
    with pytest.raises(UserError) as e:  # your own training: no fetch command to suggest
        W.resolve_weights("vico_speaker_generator", root=tmp_path / "none")
    assert "fetch" not in str(e.value) and str(e.value).endswith("or pass --resume PATH")


# ------------------------------------------------------------------------------------------
# fetch paths
# ------------------------------------------------------------------------------------------


def test_https_redirect_interrupted_resume_then_verify(env, syncnet_bytes, tmp_path):
    env.routes["/~vgg/software/lipsync/data/syncnet_v2.model"] = ("redirect", "/mirror/syncnet_v2.model")
    env.routes["/mirror/syncnet_v2.model"] = syncnet_bytes
    env.interrupt_once.add("/mirror/syncnet_v2.model")
    root = tmp_path / "w"
    [out] = F.fetch(["syncnet_s"], root, accept_terms=True)
    assert out.status == "fetched", out.detail
    final = root / "syncnet_v2.model"
    assert final.read_bytes() == syncnet_bytes and not W.is_smoke(final)
    ranges = [r for p, r in env.requests if p == "/mirror/syncnet_v2.model"]
    assert ranges[0] is None and ranges[1] == f"bytes={len(syncnet_bytes) // 3}-"  # resumed, not restarted
    assert not _no_partials(root)
    assert F.read_sums(root) == {"syncnet_v2.model": (_sha(syncnet_bytes), len(syncnet_bytes))}
    [row] = F.verify(root)
    assert (row.kind, row.hash, row.ok) == ("real", "ok (SHA256SUMS)", True) and row.load.startswith("ok (")
    # a second fetch leaves the present file alone (no request at all)
    env.requests.clear()
    assert F.fetch(["syncnet_s"], root, accept_terms=True)[0].status == "present" and not env.requests
    # a changed file is caught by the recorded size and sha256
    final.write_bytes(syncnet_bytes[:-1] + bytes([syncnet_bytes[-1] ^ 1]))
    [row] = F.verify(root)
    assert not row.ok and row.hash.startswith("MISMATCH: sha256")


def test_gdrive_file_confirm_page_and_zip_unpacked(env, tmp_path, monkeypatch):
    spec = W.REGISTRY["pirender_face_generator"]
    inner = _tiny(monkeypatch, tmp_path, spec.name)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:  # face.zip as PIRender publishes it: face/<checkpoint>
        z.writestr("face/", b"")
        z.writestr(f"face/{spec.filename}", inner)
    file_id = spec.fetch.ref
    page = ('<html><body>Google Drive can\'t scan this file for viruses.<form id="download-form" '
            'action="/download" method="get"><input type="submit" value="Download anyway">'
            f'<input type="hidden" name="id" value="{html.escape(file_id)}">'
            '<input type="hidden" name="export" value="download"><input type="hidden" name="confirm" value="t">'
            '<input type="hidden" name="uuid" value="u-123"></form></body></html>')
    env.routes[f"/download?id={file_id}&export=download&confirm=t"] = ("html", page)
    env.routes[f"/download?id={file_id}&export=download&confirm=t&uuid=u-123"] = buf.getvalue()
    root = tmp_path / "w"
    final = root / spec.default_path
    make_smoke_checkpoint(spec.name, final)  # a smoke-test stand-in there is replaced by the real file
    [out] = F.fetch([spec.name], root, accept_terms=True)
    assert out.status == "fetched", out.detail
    assert final.read_bytes() == inner and not W.smoke_sidecar(final).exists() and not W.is_smoke(final)
    assert W.load_checkpoint(spec.name, final).keys() == W.manifest_shapes(TINY).keys()
    assert not _no_partials(root) and not list(root.rglob("*.zip*"))


def test_gdrive_folder_and_onedrive_share(env, tmp_path, monkeypatch):
    recon = W.REGISTRY["deep3dfacerecon_reconnet_resnet50"]
    recon_bytes = _tiny(monkeypatch, tmp_path, recon.name)
    folder = recon.fetch.ref

    def listing(entries):
        return "".join(f'<div class="flip-entry" id="entry-{i}"><a href="https://drive.google.com/'
                       f'{"drive/folders" if sub else "file/d"}/{i}"><div class="flip-entry-title">{t}</div></a></div>'
                       for i, t, sub in entries)
    env.routes[f"/embeddedfolderview?id={folder}"] = ("html", listing([("sub1", "face_recon_feat0.2_augment", True),
                                                                        ("readme1", "README.txt", False)]))
    env.routes["/embeddedfolderview?id=sub1"] = ("html", listing([("f20", "epoch_20.pth", False)]))
    env.routes["/download?id=f20&export=download&confirm=t"] = recon_bytes

    arc = W.REGISTRY["arcface_iresnet100"]
    arc_bytes = _tiny(monkeypatch, tmp_path, arc.name)
    api = urllib.parse.urlsplit(F.onedrive_url(arc.fetch.ref, arc.fetch.member)).path
    assert api.endswith("/root:/ms1mv3_arcface_r100_fp16/backbone.pth:/content")
    env.routes[api] = ("redirect", "/blob/backbone.pth")  # the API answers with a redirect to the file
    env.routes["/blob/backbone.pth"] = arc_bytes

    root = tmp_path / "w"
    outs = F.fetch([recon.name, arc.name], root, accept_terms=True)
    assert [o.status for o in outs] == ["fetched", "fetched"], [o.detail for o in outs]
    assert (root / recon.default_path).read_bytes() == recon_bytes
    assert (root / arc.default_path).read_bytes() == arc_bytes
    assert [r.ok for r in F.verify(root)] == [True, True]
    # trust on first use: a later download with other bytes is refused and removed
    (root / arc.default_path).unlink()
    env.routes["/blob/backbone.pth"] = arc_bytes[:-1] + bytes([arc_bytes[-1] ^ 1])
    [out] = F.fetch([arc.name], root, accept_terms=True)
    assert out.status == "failed" and "SHA256SUMS says" in out.detail
    assert not (root / arc.default_path).exists() and not _no_partials(root)


def test_wrong_hash_refused_and_removed_known_hash_accepted(env, tmp_path, monkeypatch, capsys):
    vgg = W.REGISTRY["vgg19"]
    data = _tiny(monkeypatch, tmp_path, vgg.name, keep_prefix=None)
    env.routes["/models/vgg19-dcbb9e9d.pth"] = data  # sha256 does not start with dcbb9e9d
    root = tmp_path / "w"
    [out] = F.fetch([vgg.name], root, accept_terms=True)
    assert out.status == "failed" and "MISMATCH: sha256" in out.detail and "expected dcbb9e9d" in out.detail
    assert not (root / vgg.default_path).exists() and not _no_partials(root)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: vgg19-dcbb9e9d.pth: refused and removed")
    # a torch.hub-style name whose prefix matches is accepted
    good = f"tiny-{_sha(data)[:8]}.pth"
    spec = dataclasses.replace(W.REGISTRY[vgg.name], filename=good, default_path=good,
                               fetch=dataclasses.replace(vgg.fetch, ref=f"https://example.org/models/{good}"))
    monkeypatch.setitem(W.REGISTRY, vgg.name, spec)
    env.routes[f"/models/{good}"] = data
    [out] = F.fetch([vgg.name], root, accept_terms=True)
    assert out.status == "fetched" and f"ok ({_sha(data)[:8]}, from the name)" in out.detail


def test_transfer_that_keeps_breaking_resumes_in_the_next_run(env, tmp_path, monkeypatch):
    arc = W.REGISTRY["arcface_iresnet100"]
    data = _tiny(monkeypatch, tmp_path, arc.name)
    api = urllib.parse.urlsplit(F.onedrive_url(arc.fetch.ref, arc.fetch.member)).path
    env.routes[api] = data
    env.interrupt_always.add(api)
    root = tmp_path / "w"
    [out] = F.fetch([arc.name], root, accept_terms=True)
    assert out.status == "failed" and "transfer kept failing" in out.detail
    assert "run fetch again to resume" in out.detail
    [part] = _no_partials(root)  # kept for the next run, never under the final name
    size = part.stat().st_size
    assert 0 < size < len(data) and not (root / arc.default_path).exists()
    env.interrupt_always.clear()
    env.requests.clear()
    [out] = F.fetch([arc.name], root, accept_terms=True)
    assert out.status == "fetched", out.detail
    assert env.requests == [(api, f"bytes={size}-")]  # one request, resuming the kept part
    assert (root / arc.default_path).read_bytes() == data and not _no_partials(root)


def test_terms_and_unreachable(env, tmp_path, monkeypatch, capsys):
    with pytest.raises(UserError, match="pass --accept_terms"):
        F.fetch(["syncnet_s"], tmp_path, accept_terms=False)  # pytest's stdin is not a terminal
    assert "MIT-licensed" in capsys.readouterr().out
    with pytest.raises(UserError, match="terms not accepted"):
        F.fetch(["syncnet_s"], tmp_path, ask=lambda prompt: "n")
    with pytest.raises(UserError, match="cannot fetch vico_speaker_generator: no public source"):
        F.fetch(["vico_speaker_generator"], tmp_path, accept_terms=True)
    monkeypatch.setenv("VICO_FETCH_HTTPS_BASE", "http://127.0.0.1:9")  # nothing listens there
    [out] = F.fetch(["syncnet_s"], tmp_path, accept_terms=True)
    assert out.status == "failed" and out.detail.startswith("syncnet_v2.model: cannot reach 127.0.0.1:9")


def test_cli_404_one_line(env, tmp_path, run_cli):
    root = tmp_path / "w"
    p = run_cli("common.weights", "fetch", "syncnet_s", "--dir", root, "--accept_terms",
                env={"VICO_FETCH_HTTPS_BASE": env.base})
    assert p.returncode == 1
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert errors == [line for line in p.stderr.splitlines() if "syncnet_v2.model:" in line] and len(errors) == 1
    assert "HTTP 404" in errors[0] and "by hand: open https://www.robots.ox.ac.uk/" in errors[0]
    assert f"put it at {root / 'syncnet_v2.model'}" in errors[0] and "common.weights verify" in errors[0]
    assert "syncnet_s (syncnet_v2.model): joonson/syncnet_python is MIT-licensed" in p.stdout
    assert not root.exists() or not _no_partials(root)


def test_verify_table_and_exit_code(tmp_path, syncnet_bytes, capsys, monkeypatch, caplog):
    monkeypatch.setattr(W, "setup_logging", lambda verbose=False: None)  # in-process main() calls
    root = tmp_path / "w"
    assert W.main(["verify", "--dir", str(root)]) == 0
    assert "no weights files under" in capsys.readouterr().out
    make_smoke_checkpoint(TINY, root / W.REGISTRY[TINY].default_path)
    assert W.main(["verify", "--dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["name", "file", "MB", "kind", "sha256", "strict", "load"]
    assert re.search(rf"{TINY}\s+vico/listener/Epoch_500\.bin\s+1\.0\s+smoke-test\s+n/a \(smoke-test\)\s+ok "
                     r"\(\d+ tensors\)", out), out
    (root / "syncnet_v2.model").write_bytes(syncnet_bytes[: len(syncnet_bytes) // 2])  # a broken "real" file
    assert W.main(["verify", "--dir", str(root)]) == 1
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("syncnet_s "))
    assert "real" in row and "not recorded" in row and "FAIL: not a readable torch checkpoint" in row
    assert "1 of 2 files have a problem: syncnet_s" in caplog.text
