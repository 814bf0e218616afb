"""PIRender.train: the recipe's config, resumable checkpoints, loss going down, torchrun DDP."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from common.io import UserError
from common.smoke_weights import fill_state_dict
from common.weights import check_manifest
from PIRender.losses import PerceptualLoss, VGG19Features, gram_matrix
from PIRender.training.config import TrainConfig, load_config
from PIRender.training.trainer import FaceTrainer

SMALL = ["data.resolution=64", "data.num_workers=0", "data.train.batch_size=2", "data.repeat=10", "logging_iter=1",
         "trainer.vgg_param_warp.layers=[relu_1_1,relu_2_1,relu_3_1]", "trainer.vgg_param_warp.num_scales=2",
         "trainer.vgg_param_final.layers=[relu_1_1,relu_2_1,relu_3_1]", "trainer.vgg_param_final.num_scales=2"]


def test_shipped_config_is_the_recipe(repo_root):
    cfg = load_config(repo_root / "configs" / "pirender_face.yaml")
    assert cfg == TrainConfig()  # the YAML states exactly the defaults, which are upstream's
    assert cfg.trainer.ema_decay == pytest.approx(0.5 ** (32 / 10000), rel=1e-15)
    assert (cfg.gen_optimizer.lr, cfg.gen_optimizer.adam_beta1, cfg.gen_optimizer.lr_policy.gamma) == (1e-4, 0.5, 0.2)
    assert cfg.trainer.pretrain_warp_iteration == 200000 and cfg.trainer.vgg_param_final.style_to_perceptual == 250
    assert load_config(repo_root / "configs" / "pirender_face.yaml", ["max_iter=7"]).max_iter == 7
    with pytest.raises(UserError, match="unknown key"):
        load_config(repo_root / "configs" / "pirender_face.yaml", ["trainer.nope=1"])


def test_vgg19_layout_and_losses():
    vgg = VGG19Features()
    assert check_manifest(vgg, "vgg19") == []
    vgg.load_state_dict(fill_state_dict("vgg19"))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    feats = vgg(x, ["relu_1_1", "relu_3_1"])
    assert feats["relu_1_1"].shape == (2, 64, 32, 32) and feats["relu_3_1"].shape == (2, 256, 8, 8)
    assert float(feats["relu_1_1"].min()) >= 0
    # Gram matrix by hand: F F^T / (C H W)
    f = torch.arange(12.0).view(1, 3, 2, 2)
    m = f.view(3, 4)
    torch.testing.assert_close(gram_matrix(f)[0], m @ m.T / 12)
    loss = PerceptualLoss(vgg, ["relu_1_1", "relu_2_1"], num_scales=2, use_style_loss=True, style_to_perceptual=250)
    assert float(loss(x, x)) == 0.0
    y = x.clone().requires_grad_(True)
    val = loss(y, torch.flip(x, [3]))
    val.backward()
    assert float(val.detach()) > 0 and y.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg.parameters())  # frozen


def _batch(seed: int, size: int = 64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"source_image": torch.rand(1, 3, size, size, generator=g) * 2 - 1,
            "target_image": torch.rand(1, 3, size, size, generator=g) * 2 - 1,
            "source_semantics": torch.randn(1, 73, 27, generator=g),
            "target_semantics": torch.randn(1, 73, 27, generator=g)}


@pytest.fixture
def flush_denormal():
    """As PIRender.train does: subnormal gradients are slow on CPU."""
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)


@pytest.mark.slow
def test_resume_is_exact(flush_denormal):
    """2 steps straight == 1 step, save, load into a fresh trainer, 1 step (EMA, optimizer, schedule).

    Warp stage only, to keep it fast; the CLI test below runs the full stage switch."""
    from common.dist import DistInfo

    cfg = load_config_small()
    vgg = VGG19Features()
    vgg.load_state_dict(fill_state_dict("vgg19"))
    torch.manual_seed(0)
    a = FaceTrainer(cfg, vgg, DistInfo())
    torch.manual_seed(0)
    b = FaceTrainer(cfg, vgg, DistInfo())
    for it in range(2):
        a.step(_batch(it), it)
    b.step(_batch(0), 0)
    state = b.state_dict(0, 1)
    torch.manual_seed(123)  # a different init: everything must come from the checkpoint
    c = FaceTrainer(cfg, vgg, DistInfo())
    assert c.load_state_dict(state) == (0, 1)
    c.step(_batch(1), 1)
    for (k, p), q in zip(a.net_G_ema.state_dict().items(), c.net_G_ema.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6, msg=k)
    assert c.sch_G.last_epoch == a.sch_G.last_epoch == 2
    assert c.opt_G.state_dict()["state"][0]["step"] == 2


def load_config_small() -> TrainConfig:
    from PIRender.training.config import config_from_dict
    import yaml

    raw: dict = {}
    for item in SMALL + ["trainer.pretrain_warp_iteration=100"]:
        key, value = item.split("=", 1)
        d = raw
        for k in key.split(".")[:-1]:
            d = d.setdefault(k, {})
        d[key.split(".")[-1]] = yaml.safe_load(value)
    return config_from_dict(raw)


def test_missing_vgg_weights(run_cli, tmp_path, repo_root):
    r = run_cli("PIRender.train", "--config", repo_root / "configs" / "pirender_face.yaml", "--data", tmp_path,
                "--output_path", tmp_path / "run", "--vgg_weights", tmp_path / "vgg19.pth")
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: missing weights file") and "vgg19.pth" in last and "--vgg_weights" in last
    assert "download.pytorch.org" in last and "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def train_lmdb(synthetic_root, tmp_path_factory, pir_helpers):
    """One synthetic speaker video (60 frames) with coefficients, packed at 64 px."""
    from common.media import probe_video
    from PIRender.prepare_vox_lmdb import PrepareConfig, prepare

    d = tmp_path_factory.mktemp("pir_train")
    video = sorted((synthetic_root / "videos").glob("*.speaker.mp4"))[0]
    pir_helpers.write_mat(d / "recons" / f"{video.stem}.mat",
                                 *pir_helpers.make_coeffs(probe_video(video).n_frames, 256, 0))
    (d / "videos").mkdir()
    (d / "videos" / video.name).symlink_to(video)
    report = prepare(PrepareConfig(path=str(d / "videos"), coeff_3dmm_path=str(d / "recons"), out=str(d / "lmdb"),
                                   sizes=(64,), n_worker=1, split="train"))
    assert report.n_failed == 0
    return d / "lmdb"


def _log(path):
    return [json.loads(line) for line in (path / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_train_lowers_loss_and_resumes(train_lmdb, run_cli, pir_weights, tmp_path, repo_root):
    out = tmp_path / "run"
    base = ["--config", repo_root / "configs" / "pirender_face.yaml", "--data", train_lmdb, "--output_path", out,
            "--vgg_weights", pir_weights["vgg19"], "--set", *SMALL, "data.train.batch_size=1", "data.repeat=3", "trainer.pretrain_warp_iteration=3"]
    r = run_cli("PIRender.train", *base, "max_iter=4")
    assert r.returncode == 0, r.stderr
    rows = _log(out)
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4]
    assert [r["stage"] for r in rows] == ["warp"] * 3 + ["gen"]
    warp = [r["perceptual_warp"] for r in rows[:3]]
    assert warp[2] < warp[0], warp  # the warm-up lowers the warp loss
    assert "perceptual_final" in rows[3] and all(np.isfinite(r["total_loss"]) for r in rows)
    ckpt = out / "epoch_00001_iteration_000000004_checkpoint.pt"
    assert (out / "latest_checkpoint.txt").read_text().strip() == f"latest_checkpoint: {ckpt.name}"
    state = torch.load(ckpt, weights_only=True)
    assert {"net_G", "net_G_ema", "opt_G", "sch_G", "current_epoch", "current_iteration"} <= set(state)
    assert state["current_iteration"] == 4 and state["config"]["data"]["resolution"] == 64
    # resume: continues at iteration 5 with the saved optimizer state
    r = run_cli("PIRender.train", *base, "max_iter=5")
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stderr
    rows = _log(out)
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["epoch"] for r in rows] == [0, 0, 0, 1, 1]  # 1 video x repeat 3 / batch 1: 3 steps per epoch
    final = torch.load(out / "epoch_00001_iteration_000000005_checkpoint.pt", weights_only=True)
    assert final["opt_G"]["state"] and final["sch_G"]["last_epoch"] == 2  # restarted at the switch (iter 3)
    # the trained checkpoint renders with PIRender.inference's loader (config rebuilt from the file)
    from PIRender.engine.checkpoint import load_generator

    g = load_generator(out)
    with torch.no_grad():
        img = g.model(torch.zeros(1, 3, 64, 64), torch.zeros(1, 73, 27))["fake_image"]
    assert img.shape == (1, 3, 64, 64)


@pytest.mark.slow
@pytest.mark.torchrun
def test_train_torchrun_ddp(train_lmdb, run_cli, pir_weights, tmp_path, repo_root):
    out = tmp_path / "ddp"
    r = run_cli("torch.distributed.run", "--nproc_per_node", "2", "--standalone", "-m", "PIRender.train",
                "--config", repo_root / "configs" / "pirender_face.yaml", "--data", train_lmdb, "--output_path", out,
                "--vgg_weights", pir_weights["vgg19"], "--device", "cpu", "--set", *SMALL, "max_iter=2",
                "data.train.batch_size=1")
    assert r.returncode == 0, r.stderr
    state = torch.load(out / "epoch_00000_iteration_000000002_checkpoint.pt", weights_only=True)
    assert all(k.startswith("module.") for k in state["net_G"])  # DDP layout, as upstream
    assert not any(k.startswith("module.") for k in state["net_G_ema"])
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    # warp stage: the editing net gets no gradient, which DDP must accept (find_unused_parameters)
    assert [r["stage"] for r in _log(out)] == ["warp", "warp"]
    torch.testing.assert_close(state["net_G"]["module.editing_net.decoder.final.model.0.weight"],
                               state["net_G_ema"]["editing_net.decoder.final.model.0.weight"])
