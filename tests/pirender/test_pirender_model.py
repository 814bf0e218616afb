"""FaceGenerator: manifest, golden parity with the original, quirks, batch independence, loading."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.io import UserError
from common.smoke_weights import fill_state_dict
from common.weights import check_manifest
from PIRender.engine.checkpoint import load_generator
from PIRender.engine.render import Renderer, driving_windows
from PIRender.models import FaceGenerator, GeneratorConfig
from PIRender.models.face_generator import flow_to_deformation, warp_image

NET = "pirender_face_generator"


@pytest.fixture(scope="module")
def gen() -> FaceGenerator:
    m = FaceGenerator().eval()
    m.load_state_dict(fill_state_dict(NET), strict=True)
    return m


def test_manifest_match():
    m = FaceGenerator()
    assert check_manifest(m, NET) == []
    assert sum(p.numel() for p in m.parameters()) == 22_519_109
    assert sum(p.numel() for p in m.mapping_net.parameters()) == 721_664


def test_config_round_trip():
    cfg = GeneratorConfig()
    assert GeneratorConfig.from_param(cfg.to_param()) == cfg
    with pytest.raises(ValueError, match="use_spect"):
        GeneratorConfig.from_param({"common": {"use_spect": True}})


@pytest.mark.slow
def test_golden_parity(gen, golden):
    g = np.load(golden / "pirender_generator.npz")
    with torch.no_grad():
        out2 = gen(torch.from_numpy(g["source_b2"]), torch.from_numpy(g["driving_b2"]))
        out1 = gen(torch.from_numpy(g["source_b1"]), torch.from_numpy(g["driving_b1"]))
    for b, out in (("b1", out1), ("b2", out2)):
        np.testing.assert_allclose(out["fake_image"].numpy(), g[f"fake_image_{b}"], rtol=0, atol=2e-4)
        np.testing.assert_allclose(out["warp_image"].numpy(), g[f"warp_image_{b}"], rtol=0, atol=2e-4)
        np.testing.assert_allclose(out["flow_field"].numpy(), g[f"flow_field_{b}"], rtol=0, atol=1e-4)
    assert out1["flow_field"].shape == (1, 2, 64, 64)
    for k in ("fake_image", "warp_image", "flow_field"):  # batch independence of the network
        np.testing.assert_allclose(out2[k][:1].numpy(), out1[k].numpy(), rtol=0, atol=1e-4)


def test_warp_stage_skips_editing(gen):
    x = torch.zeros(1, 3, 64, 64)
    with torch.no_grad():
        out = gen(x, torch.zeros(1, 73, 27), stage="warp")
    assert set(out) == {"flow_field", "warp_image"}
    assert out["flow_field"].shape == (1, 2, 16, 16)


def test_dead_fine_adain_branch(gen):
    """conv1/norm1 of the FineADAIN blocks are in the state dict but do not change the output."""
    torch.manual_seed(0)
    x, d = torch.rand(1, 3, 64, 64) * 2 - 1, torch.randn(1, 73, 27)
    with torch.no_grad():
        ref = gen(x, d)["fake_image"].clone()
        block = gen.editing_net.decoder.res2.res0
        saved = block.conv1.weight.clone()
        block.conv1.weight.mul_(-3.0)
        block.compute_dead_branch = True
        try:
            alt = gen(x, d)["fake_image"]
        finally:
            block.conv1.weight.copy_(saved)
            block.compute_dead_branch = False
    torch.testing.assert_close(alt, ref, rtol=0, atol=0)


def test_grid_convention():
    """Zero flow: grid built for align_corners=True, sampled with align_corners=False (a slight zoom)."""
    flow = torch.zeros(1, 2, 4, 4)
    grid = flow_to_deformation(flow)
    lin = torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0])
    torch.testing.assert_close(grid[0, :, :, 0], lin.expand(4, 4))
    torch.testing.assert_close(grid[0, :, :, 1], lin[:, None].expand(4, 4))
    img = torch.arange(64.0).view(1, 1, 8, 8)
    warped = warp_image(img, grid)
    up = F.interpolate(grid.permute(0, 3, 1, 2), size=(8, 8), mode="bilinear", align_corners=False)
    expect = F.grid_sample(img, up.permute(0, 2, 3, 1), align_corners=False)
    torch.testing.assert_close(warped, expect)
    assert not torch.allclose(warped, img)  # not the identity: the quirk the weights expect
    # one pixel of flow along x on a 4-px grid moves the sample point by 2/(4-1) in grid units
    flow[:, 0] = 1.0
    assert torch.allclose(flow_to_deformation(flow)[..., 0] - grid[..., 0], torch.tensor(2 / 3))


@pytest.mark.slow
def test_batch_independence(gen):
    """The same 8 frames rendered at batch 1 and batch 8 agree (64 px to keep the test fast)."""
    rng = np.random.default_rng(1)
    coeff = np.concatenate([0.2 * rng.standard_normal((8, 257)), [[3.0, 110.0, 120.0]] * 8], 1).astype(np.float32)
    windows = driving_windows(coeff)
    source = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    src = torch.from_numpy(((source / 255.0 - 0.5) / 0.5).astype(np.float32).transpose(2, 0, 1))[None]
    w = torch.from_numpy(windows)
    r1, r8 = Renderer(gen, batch_size=1), Renderer(gen, batch_size=8)
    a = torch.cat([r1.render_tensors(src, w[i:i + 1]) for i in range(8)])
    b = r8.render_tensors(src.expand(8, -1, -1, -1), w)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    assert float(a.std()) > 0.1  # not a constant image
    # the numpy path in uneven batches (3 + 3 + 2) gives the same frames, as uint8
    frames = np.concatenate(list(Renderer(gen, batch_size=3).render(source, windows)))
    assert frames.shape == (8, 64, 64, 3) and frames.dtype == np.uint8
    expect = ((b.numpy().transpose(0, 2, 3, 1) + 1) / 2 * 255).astype(np.uint8)
    assert np.abs(frames.astype(int) - expect.astype(int)).max() <= 1


def test_smoke_checkpoint_loads_strict(pir_weights):
    loaded = load_generator(pir_weights["generator"])
    ref = fill_state_dict(NET)
    sd = loaded.model.state_dict()
    assert list(sd) == list(ref)
    assert all(torch.equal(sd[k], ref[k]) for k in ref)
    assert loaded.result_subdir == "epoch_00000_iteration_000000000"


def test_latest_checkpoint_folder(pir_weights, tmp_path):
    d = pir_weights["generator"].parent
    (tmp_path / "latest_checkpoint.txt").write_text(f"latest_checkpoint: {pir_weights['generator']}\n")
    assert load_generator(tmp_path).path == pir_weights["generator"]


def test_wrong_checkpoints_one_line_errors(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(UserError, match=r"missing weights file .*nope\.pt.*--checkpoint"):
        load_generator(missing)
    bad_keys = tmp_path / "bad_keys.pt"
    torch.save({"net_G_ema": {"foo.weight": torch.zeros(1)}}, bad_keys)
    with pytest.raises(UserError) as e:
        load_generator(bad_keys)
    assert "bad_keys.pt" in str(e.value) and "missing keys" in str(e.value) and "\n" not in str(e.value)
    sd = fill_state_dict(NET)
    sd["mapping_net.first.0.bias"] = torch.zeros(5)
    shaped = tmp_path / "shape.pt"
    torch.save({"net_G_ema": sd}, shaped)
    with pytest.raises(UserError, match="mapping_net.first.0.bias expected \\[256\\] got \\[5\\]"):
        load_generator(shaped)
    plain = tmp_path / "plain.pt"
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(UserError, match="not a PIRender checkpoint"):
        load_generator(plain)
