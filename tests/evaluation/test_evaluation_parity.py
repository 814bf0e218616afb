"""Golden parity of every metric and network against the original implementations' outputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from common.io import UserError
from common.smoke_weights import fill_state_dict, make_smoke_checkpoint
from common.weights import check_manifest, load_pretrained
from evaluation.metrics import csim as csim_mod
from evaluation.metrics.cpbd import cpbd
from evaluation.metrics.fid import GaussianStats, fid_from_features, frechet_distance
from evaluation.metrics.lipsync import mfcc, sync_scores
from evaluation.metrics.lmd import lip_distances
from evaluation.metrics.psnr_ssim import psnr, ssim, to_nchw
from evaluation.networks.inception import FIDInceptionV3
from evaluation.networks.iresnet import iresnet100
from evaluation.networks.syncnet import SyncNetS

torch.set_num_threads(2)


def _net(cls, name):
    m = cls()
    m.load_state_dict(fill_state_dict(name), strict=True)
    return m.eval()


@pytest.fixture(scope="module")
def img(golden):
    return np.load(golden / "metrics_image.npz")


@pytest.mark.parametrize("cls,name", [(FIDInceptionV3, "fid_inception_v3"), (iresnet100, "arcface_iresnet100"),
                                      (SyncNetS, "syncnet_s")])
def test_network_matches_manifest(cls, name):
    assert check_manifest(cls(), name) == []


def test_psnr_ssim_golden(img):
    pd, gt = to_nchw(img["pd_rgb"]), to_nchw(img["gt_rgb"])
    np.testing.assert_allclose(psnr(pd, gt).numpy(), img["psnr"], atol=1e-4)
    np.testing.assert_allclose(ssim(pd, gt).numpy(), img["ssim"], atol=1e-5)


def test_identical_frames_ssim_one_psnr_finite(img):
    gt = to_nchw(img["gt_rgb"])
    np.testing.assert_allclose(ssim(gt, gt).numpy(), 1.0, atol=1e-6)
    p = psnr(gt, gt).numpy()
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p, 80.0)  # 10*log10(1/1e-8): the original's epsilon, never inf


def test_ssim_batch_independent(img):
    pd, gt = to_nchw(img["pd_rgb"]), to_nchw(img["gt_rgb"])
    whole = ssim(pd, gt).numpy()
    single = np.array([ssim(pd[i:i + 1], gt[i:i + 1]).item() for i in range(3)])
    np.testing.assert_allclose(single, whole, atol=1e-7)


def test_cpbd_golden(img):
    got_pd = [cpbd(g) for g in img["grey_pd"]]
    got_gt = [cpbd(g) for g in img["grey_gt"]]
    np.testing.assert_allclose(got_pd, img["cpbd_pd"], atol=1e-6)
    np.testing.assert_allclose(got_gt, img["cpbd_gt"], atol=1e-6)


def test_cpbd_equals_package_on_other_images(img):
    cpbd_pkg = pytest.importorskip("cpbd")  # test-only reference (cpbd-py312)
    rng = np.random.default_rng(3)
    frames = [np.clip(img["grey_gt"][1].astype(int) + rng.integers(-20, 20, (256, 256)), 0, 255).astype(np.uint8),
              img["grey_gt"][2][:200, :150].copy(),  # non-multiple-of-64 size
              np.full((128, 128), 77, np.uint8)]  # flat: no edges
    for f in frames:
        assert cpbd(f) == pytest.approx(cpbd_pkg.compute(f), abs=1e-3)


def test_lip_lmd_golden(img):
    l1, eu = lip_distances(img["lm_pd"], img["lm_gt"])
    assert l1.mean() == pytest.approx(float(img["lip_lmd"]), rel=1e-6)
    d = img["lm_pd"][:, 48:68].astype(np.float64) - img["lm_gt"][:, 48:68]
    np.testing.assert_allclose(eu, np.sqrt((d ** 2).sum(-1)).mean(1))
    z1, z2 = lip_distances(img["lm_gt"], img["lm_gt"])
    assert z1.max() == 0 and z2.max() == 0


def test_frechet_distance_golden(golden):
    g = np.load(golden / "fid.npz")
    a, b = g["feats_a"], g["feats_b"]
    assert fid_from_features(a, b) == pytest.approx(float(g["fid_piq"]), rel=1e-6)
    assert fid_from_features(a, b, "scipy") == pytest.approx(float(g["fid_pytorch_fid"]), rel=1e-6)
    # streamed statistics (what torchrun ranks merge) give the same number
    sa, sb = GaussianStats.empty(64), GaussianStats.empty(64)
    sa.add(a[:123])
    part = GaussianStats.empty(64)
    part.add(a[123:])
    sa.merge(part)
    sb.add(b)
    assert frechet_distance(*sa.mean_cov(), *sb.mean_cov()) == pytest.approx(float(g["fid_piq"]), rel=1e-9)
    # identical sets: ~0 (Newton-Schulz stops at 1e-5 relative error, as piq, so not exactly 0)
    assert abs(fid_from_features(a, a, "scipy")) < 1e-6
    assert abs(fid_from_features(a, a)) < 0.01 * float(g["fid_piq"])


@pytest.mark.slow
def test_inception_golden_and_batch_independent(golden):
    g = np.load(golden / "fid.npz")
    net = _net(FIDInceptionV3, "fid_inception_v3")
    x = torch.from_numpy(g["inception_input"])
    with torch.no_grad():
        out = net(x).numpy()
        one = net(x[1:]).numpy()
    np.testing.assert_allclose(out, g["inception_pool3"], atol=1e-5)
    np.testing.assert_allclose(out, g["inception_pool3_piq"], atol=1e-5)
    np.testing.assert_allclose(one[0], out[1], atol=1e-5)


@pytest.mark.slow
def test_arcface_golden_and_csim(golden):
    g = np.load(golden / "arcface_iresnet100.npz")
    gin, pin = csim_mod.whole_frame_input(g["gt_rgb"]), csim_mod.whole_frame_input(g["pd_rgb"])
    np.testing.assert_allclose(gin.numpy(), g["input"], atol=1e-6)
    np.testing.assert_allclose(pin.numpy(), g["pd_input"], atol=1e-6)
    net = _net(iresnet100, "arcface_iresnet100")
    with torch.no_grad():
        feats = net(torch.cat([gin, pin]))
    np.testing.assert_allclose(feats[:2].numpy(), g["gt_features"], atol=1e-4)
    np.testing.assert_allclose(feats[2:].numpy(), g["pd_features"], atol=1e-4)
    pairs = csim_mod.paired_cosine(feats[:2], feats[2:])
    np.testing.assert_allclose(pairs, g["csim_pairs"], atol=1e-5)
    assert pairs.mean() == pytest.approx(float(g["csim"]), abs=1e-5)
    # a clean prediction (the GT itself) scores higher than the blurred / shifted ones
    assert np.allclose(csim_mod.paired_cosine(feats[:2], feats[:2]), 1.0) and (pairs < 0.999).all()


@pytest.mark.slow
def test_syncnet_golden_and_mfcc(golden):
    g = np.load(golden / "syncnet.npz")
    np.testing.assert_allclose(mfcc(g["clip_pcm16"], 16000), g["clip_mfcc"], rtol=1e-6)
    net = _net(SyncNetS, "syncnet_s")
    with torch.no_grad():
        aud = net.forward_aud(torch.from_numpy(g["aud_input"]))
        lip = net.forward_lip(torch.from_numpy(g["lip_input_uint8"]).float())
    np.testing.assert_allclose(aud.numpy(), g["aud_emb"], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(lip.numpy(), g["lip_emb"], rtol=1e-4, atol=1e-3)
    r = sync_scores(net, g["clip_frames_bgr"], g["clip_pcm16"].astype(np.float64), batch_size=20, vshift=15)
    np.testing.assert_allclose(r.dists, g["dists"], atol=1e-2)
    np.testing.assert_allclose(r.mean_dists, g["mean_dists"], atol=1e-2)
    assert r.offset == int(g["offset"])
    assert r.conf == pytest.approx(float(g["conf"]), abs=1e-2)
    # batch size does not change the scores
    r7 = sync_scores(net, g["clip_frames_bgr"], g["clip_pcm16"].astype(np.float64), batch_size=7, vshift=15)
    np.testing.assert_allclose(r7.mean_dists, r.mean_dists, atol=1e-3)
    with pytest.raises(ValueError, match="too short"):
        sync_scores(net, g["clip_frames_bgr"][:5], g["clip_pcm16"][:3200].astype(np.float64))


def test_mfcc_equals_python_speech_features_on_other_signals():
    psf = pytest.importorskip("python_speech_features")  # test-only reference
    rng = np.random.default_rng(5)
    for x in (rng.integers(-4000, 4000, 7777), rng.integers(-30000, 30000, 400), np.zeros(1000)):
        np.testing.assert_allclose(mfcc(x), psf.mfcc(x, 16000), rtol=1e-6, atol=1e-9)


def test_released_layout_loads_strictly_and_bad_file_is_one_line(tmp_path):
    path = make_smoke_checkpoint("syncnet_s", tmp_path / "syncnet_v2.model")
    net = SyncNetS()
    assert load_pretrained(net, "syncnet_s", path) == path
    bad = tmp_path / "wrong.model"
    torch.save({"netcnnaud.0.weight": torch.zeros(3)}, bad)
    with pytest.raises(UserError) as e:
        load_pretrained(SyncNetS(), "syncnet_s", bad)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)
