"""common.weights and common.smoke_weights: fill rule vs the golden fill checks, registry, loading, smoke files."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from common import smoke_weights as S
from common import weights as W
from common.io import UserError

NETWORKS = [
    "vico_speaker_generator",
    "vico_listener_generator",
    "syncnet_s",
    "pirender_face_generator",
    "deep3dfacerecon_reconnet_resnet50",
    "fid_inception_v3",
    "arcface_iresnet100",
]


# ------------------------------------------------------------------------------------------
# fill rule
# ------------------------------------------------------------------------------------------


def _check_fill(golden: Path, network: str) -> None:
    checks = json.loads((golden / "fill_checks" / f"{network}.json").read_text())
    plan = S.fill_plan(network)
    sd = S.fill_state_dict(network)
    assert list(sd) == list(checks), "keys must come in manifest order"
    for key, ref in checks.items():
        kind, fan_in, post = plan[key]
        assert (kind, fan_in, post) == (ref["kind"], ref["fan_in"], ref["post_scale"]), key
        t = sd[key]
        assert list(t.shape) == ref["shape"], key
        assert t.dtype == (torch.int64 if kind == "zero_int64" else torch.float32), key
        a = t.numpy()
        assert a.reshape(-1)[0].item() == ref["first"], key  # exact
        total = float(a.astype(np.float64).sum())
        assert math.isclose(total, ref["sum_f64"], rel_tol=1e-9, abs_tol=1e-9), (key, total, ref["sum_f64"])


@pytest.mark.parametrize("network", NETWORKS[:-1])
def test_fill_matches_golden_checks(golden, network):
    _check_fill(golden, network)


@pytest.mark.slow
def test_fill_matches_golden_checks_arcface(golden):
    _check_fill(golden, "arcface_iresnet100")  # 65M parameters


def test_fill_tensor_hand_computed():
    key = "enc.0.weight"
    v = np.random.default_rng(zlib.crc32(key.encode())).standard_normal((4, 3, 2))
    np.testing.assert_array_equal(S.fill_tensor(key, (4, 3, 2), "weight"),
                                  (v * (1.0 / math.sqrt(6))).astype(np.float32))
    np.testing.assert_array_equal(S.fill_tensor(key, (4, 3, 2), "convT_weight"),
                                  (v * (1.0 / math.sqrt(8))).astype(np.float32))
    np.testing.assert_array_equal(S.fill_tensor(key, (4, 3, 2), "norm_weight", post_scale=0.1),
                                  (0.1 * (1.0 + 0.1 * v)).astype(np.float32))
    np.testing.assert_array_equal(S.fill_tensor(key, (4, 3, 2), "running_var"),
                                  (1.0 + 0.1 * np.abs(v)).astype(np.float32))
    z = S.fill_tensor("bn.num_batches_tracked", (), "zero_int64")
    assert z.dtype == np.int64 and z.shape == () and z == 0


def test_fill_kind_rules():
    pir = S.FILL_RULES["pirender_face_generator"]
    # LayerNorm2d affine params are (C,1,1): norm weight / small bias, never fan-in scaled.
    assert S.fill_kind("editing_net.decoder.up1.model.1.bias", (128, 1, 1), pir) == ("small", None, None)
    assert S.fill_kind("editing_net.decoder.up1.model.1.weight", (128, 1, 1), pir)[0] == "norm_weight"
    assert S.fill_kind("warpping_net.hourglass.decoder.decoder3.conv_s.weight", (512, 256, 3, 3), pir) \
        == ("convT_weight", 512 * 9, None)
    arc = S.FILL_RULES["arcface_iresnet100"]
    assert S.fill_kind("layer2.3.bn3.weight", (128,), arc) == ("norm_weight", None, 0.1)
    assert S.fill_kind("layer2.3.bn3.bias", (128,), arc) == ("small", None, None)
    assert S.fill_kind("layer2.3.prelu.weight", (128,), arc) == ("prelu", None, None)
    assert S.fill_kind("fc.weight", (512, 25088), arc) == ("weight", 25088, None)


# ------------------------------------------------------------------------------------------
# registry and missing files
# ------------------------------------------------------------------------------------------


def test_registry_entries():
    assert set(W.REGISTRY) == {
        "deep3dfacerecon_reconnet_resnet50", "pirender_face_generator", "arcface_iresnet100",
        "syncnet_s", "fid_inception_v3", "vico_listener_generator", "vico_speaker_generator",
        "vgg19", "fan_2d", "tddfa_v2_mb1", "tddfa_v2_mb05", "tddfa_v2_faceboxes", "tddfa_v2_bfm",
        "tddfa_v2_param_mean_std"}
    for spec in W.REGISTRY.values():
        if spec.manifest:
            assert W.manifest_shapes(spec.manifest), spec.name
            assert spec.manifest in S.FILL_RULES
    assert W.REGISTRY["deep3dfacerecon_reconnet_resnet50"].state_key == "net_recon"
    assert W.REGISTRY["pirender_face_generator"].state_key == "net_G_ema"
    assert W.REGISTRY["vico_speaker_generator"].strip_prefix == "module."


def test_weights_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("VICO_WEIGHTS_DIR", str(tmp_path))
    assert W.REGISTRY["syncnet_s"].default_file() == tmp_path / "syncnet_v2.model"
    monkeypatch.delenv("VICO_WEIGHTS_DIR")
    assert W.weights_dir() == W.REPO_ROOT / "weights"


def test_missing_file_message(monkeypatch, tmp_path):
    monkeypatch.setenv("VICO_WEIGHTS_DIR", str(tmp_path))
    spec = W.REGISTRY["arcface_iresnet100"]
    with pytest.raises(UserError) as e:
        W.resolve_weights("arcface_iresnet100")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"missing weights file {tmp_path / 'ms1mv3_arcface_r100_fp16/backbone.pth'} (")
    assert "obtain backbone.pth from" in msg and spec.source in msg
    assert msg.endswith("or pass --arcface_weights PATH")
    with pytest.raises(UserError, match=r"missing weights file /nonexistent/x\.pt .*--checkpoint PATH$"):
        W.load_checkpoint("pirender_face_generator", "/nonexistent/x.pt")
    with pytest.raises(UserError, match="unknown weights name 'nope'"):
        W.resolve_weights("nope")


# ------------------------------------------------------------------------------------------
# smoke files: exact layout and round trip through the loader
# ------------------------------------------------------------------------------------------


def _round_trip(name: str, tmp_path: Path) -> None:
    spec = W.REGISTRY[name]
    path = S.make_smoke_checkpoint(name, tmp_path / spec.filename)
    assert W.is_smoke(path)
    side = json.loads(W.smoke_sidecar(path).read_text())
    assert side["smoke_test"] is True and side["weights"] == name
    raw = torch.load(path, map_location="cpu", weights_only=True)
    ref = S.fill_state_dict(spec.manifest)
    if name == "deep3dfacerecon_reconnet_resnet50":
        assert {"net_recon", "opt_00"} <= set(raw)
        inner = raw["net_recon"]
    elif name == "pirender_face_generator":
        assert set(raw) == {"net_G", "net_G_ema", "opt_G", "sch_G", "current_epoch", "current_iteration"}
        assert raw["current_epoch"] == 0 and raw["current_iteration"] == 0
        assert all(k.startswith("module.") for k in raw["net_G"])
        inner = raw["net_G_ema"]
    elif spec.strip_prefix == "module.":
        assert all(k.startswith("module.") for k in raw)
        inner = {k[len("module."):]: v for k, v in raw.items()}
    else:
        inner = raw
    assert list(inner) == list(ref)
    loaded = W.load_checkpoint(name, path)
    assert list(loaded) == list(ref)
    for k in ref:
        assert loaded[k].dtype == ref[k].dtype and torch.equal(loaded[k], ref[k]), k


@pytest.mark.parametrize("name", ["vico_listener_generator", "vico_speaker_generator", "syncnet_s",
                                  "pirender_face_generator", "vgg19", "deep3dfacerecon_reconnet_resnet50",
                                  "fid_inception_v3"])
def test_smoke_round_trip(name, tmp_path):
    _round_trip(name, tmp_path)


@pytest.mark.slow
def test_smoke_round_trip_arcface(tmp_path):
    _round_trip("arcface_iresnet100", tmp_path)  # 261 MB file


def test_smoke_never_overwrites_real_file(tmp_path):
    real = tmp_path / "syncnet_v2.model"
    real.write_bytes(b"real weights")
    with pytest.raises(UserError, match="real weights file"):
        S.make_smoke_checkpoint("syncnet_s", real)
    assert real.read_bytes() == b"real weights"
    assert not W.is_smoke(real)


def test_real_file_copied_over_a_smoke_file_counts_as_real(tmp_path, run_cli):
    """Users drop the released file where the demo made a stand-in: the leftover sidecar must not
    label it smoke-test, and make-smoke must then leave it alone."""
    path = S.make_smoke_checkpoint("syncnet_s", tmp_path / "syncnet_v2.model")
    assert W.is_smoke(path)
    real = tmp_path / "downloaded.model"
    real.write_bytes(path.read_bytes()[:-1] + b"\0")  # same layout, other bytes, a later copy
    os.replace(real, path)
    assert W.smoke_sidecar(path).is_file() and not W.is_smoke(path)
    before = path.read_bytes()
    p = run_cli("common.weights", "make-smoke", "syncnet_s", "--dir", tmp_path, "--force")
    assert p.returncode == 0 and "real weights file present" in p.stderr and path.read_bytes() == before


# ------------------------------------------------------------------------------------------
# loader errors
# ------------------------------------------------------------------------------------------


def test_non_checkpoint_file(tmp_path):
    bad = tmp_path / "syncnet_v2.model"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(UserError) as e:
        W.load_checkpoint("syncnet_s", bad)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{bad}: not a readable torch checkpoint")


def test_wrong_layout(tmp_path):
    p = tmp_path / "epoch_20.pth"
    torch.save({"backbone.conv1.weight": torch.zeros(1)}, p)
    with pytest.raises(UserError, match=r"epoch_20\.pth: expected a checkpoint dict with key 'net_recon'"):
        W.load_checkpoint("deep3dfacerecon_reconnet_resnet50", p)
    torch.save({"a": torch.zeros(1), "epoch": 3}, p)
    with pytest.raises(UserError, match="non-tensor entries: epoch"):
        W.load_checkpoint("syncnet_s", p)


class _Tiny(nn.Module):
    def __init__(self, width: int = 4):
        super().__init__()
        self.fc = nn.Linear(3, width)
        self.bn = nn.BatchNorm1d(width)


def test_load_state_dict_strict_messages():
    ref = _Tiny().state_dict()
    sd = dict(ref)
    sd["fc.weights"] = sd.pop("fc.weight")
    with pytest.raises(UserError) as e:
        W.load_state_dict_strict(_Tiny(), sd, "/x/model.pth")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("/x/model.pth: weights do not fit _Tiny")
    assert "1 missing keys: fc.weight" in msg and "1 unexpected keys: fc.weights" in msg
    with pytest.raises(UserError, match=r"6 shape mismatches: fc\.weight expected \[4, 3\] got \[5, 3\], fc\.bias"):
        W.load_state_dict_strict(_Tiny(), _Tiny(5).state_dict(), "/x/model.pth")
    # BatchNorm counters may be absent (some released files lack them); the rest loads exactly.
    src = _Tiny()
    nn.init.normal_(src.fc.weight)
    sd = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    dst = _Tiny()
    W.load_state_dict_strict(dst, sd, "mem")
    assert torch.equal(dst.fc.weight, src.fc.weight)


def _vgg19_features() -> nn.Module:
    """VGG19 conv stack built from torch layers, to check the hand-written vgg19 manifest."""
    layers: list[nn.Module] = []
    c_in = 3
    for c in [64, 64, "M", 128, 128, "M"] + [256] * 4 + ["M"] + ([512] * 4 + ["M"]) * 2:
        if c == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(inplace=True)]
            c_in = c
    m = nn.Module()
    m.features = nn.Sequential(*layers)
    return m


def test_check_manifest_and_load_pretrained(tmp_path):
    model = _vgg19_features()
    assert W.check_manifest(model, "vgg19") == []
    path = S.make_smoke_checkpoint("vgg19", tmp_path / "vgg19-dcbb9e9d.pth")
    # a real torchvision file also holds classifier.*: the loader keeps only features.*
    sd = torch.load(path, weights_only=True)
    sd["classifier.0.bias"] = torch.zeros(4096)
    torch.save(sd, path)
    assert W.load_pretrained(model, "vgg19", tmp_path) == path  # directory holding the file
    assert torch.equal(model.features[34].bias, S.fill_state_dict("vgg19")["features.34.bias"])
    model.features[34] = nn.Conv2d(512, 256, 3)
    diffs = W.check_manifest(model, "vgg19")
    assert diffs == ["shape mismatch features.34.weight: manifest [512, 512, 3, 3], module [256, 512, 3, 3]",
                     "shape mismatch features.34.bias: manifest [512], module [256]"]
    with pytest.raises(UserError, match=r"features\.34\.weight expected \[256, 512, 3, 3\] got \[512, 512, 3, 3\]"):
        W.load_pretrained(model, "vgg19", path)
    del model.features[34]
    assert W.check_manifest(model, "vgg19")[0] == "missing key features.34.weight (manifest shape [512, 512, 3, 3])"


# ------------------------------------------------------------------------------------------
# CLI (real subprocess runs)
# ------------------------------------------------------------------------------------------


def _cli(*args: str, env_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("VICO_WEIGHTS_DIR", None)
    if env_dir is not None:
        env["VICO_WEIGHTS_DIR"] = str(env_dir)
    return subprocess.run([sys.executable, "-m", "common.weights", *args], cwd=W.REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_cli_make_smoke_and_list(tmp_path, monkeypatch):
    monkeypatch.setattr(W, "setup_logging", lambda verbose=False: None)  # in-process main() calls
    r = _cli("make-smoke", "vico_speaker_generator", "syncnet_s", "--dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    speaker = tmp_path / "vico/speaker/Epoch_500.bin"
    sync = tmp_path / "syncnet_v2.model"
    assert W.is_smoke(speaker) and W.is_smoke(sync)
    # a "real" file is never replaced, even with --force; smoke files are remade with --force
    real = tmp_path / "vico/listener/Epoch_500.bin"
    real.parent.mkdir(parents=True)
    real.write_bytes(b"trained weights")
    before = sync.stat().st_ino
    speaker_before = speaker.stat().st_ino
    assert W.main(["make-smoke", "vico_listener_generator", "vico_speaker_generator", "syncnet_s",
                   "--dir", str(tmp_path)]) == 0
    assert speaker.stat().st_ino == speaker_before  # present smoke files are skipped
    assert W.main(["make-smoke", "vico_listener_generator", "vico_speaker_generator", "--force",
                   "--dir", str(tmp_path)]) == 0
    assert real.read_bytes() == b"trained weights" and not W.is_smoke(real)
    assert speaker.stat().st_ino != speaker_before  # remade (atomic replace: a new file)
    assert sync.stat().st_ino == before
    r = _cli("list", env_dir=tmp_path)
    assert r.returncode == 0, r.stderr
    status = {line.split()[0]: line.split()[2] for line in r.stdout.splitlines()[1:]}
    assert status["vico_speaker_generator"] == "smoke"
    assert status["syncnet_s"] == "smoke"
    assert status["vico_listener_generator"] == "present"
    assert status["arcface_iresnet100"] == "missing"
    assert status["fan_2d"] == "external"
    assert str(sync) in r.stdout
    r = _cli("make-smoke", "nope", "--dir", str(tmp_path))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith("error: unknown weights name")


def test_cli_help(capsys, monkeypatch):
    with pytest.raises(SystemExit) as e:
        W.main(["make-smoke", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "make-smoke --all" in out and "(default: " in out
