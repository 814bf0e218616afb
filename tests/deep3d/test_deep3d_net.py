"""The reconstruction network: released parameter names, strict loading, golden parity."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from common.io import UserError
from common.smoke_weights import fill_state_dict, make_smoke_checkpoint
from common.weights import check_manifest
from Deep3DFaceRecon_pytorch.face_recon_videos import load_model
from Deep3DFaceRecon_pytorch.models.recon_net import COEFF_DIM, HEAD_DIMS, ReconNet, build_recon_net

NET = "deep3dfacerecon_reconnet_resnet50"


@pytest.fixture(scope="module")
def filled_net() -> ReconNet:
    return build_recon_net(fill_state_dict(NET))


def test_module_matches_released_manifest():
    net = ReconNet()
    assert check_manifest(net, NET) == []
    assert sum(p.numel() for p in net.parameters()) == 24_034_625
    assert sum(HEAD_DIMS) == COEFF_DIM == 257


def test_golden_parity_resnet50(filled_net, golden):
    d = np.load(golden / "recon_resnet50.npz")
    with torch.inference_mode():
        out = filled_net(torch.from_numpy(d["input"])).numpy()
        row1 = filled_net(torch.from_numpy(d["input"][1:])).numpy()
    assert out.shape == (2, 257)
    np.testing.assert_allclose(out, d["output"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(row1, d["output"][1:], rtol=1e-4, atol=1e-4)  # batch independent


def test_released_layout_checkpoint_loads_strictly(tmp_path, filled_net):
    path = make_smoke_checkpoint(NET, tmp_path / "epoch_20.pth")
    raw = torch.load(path, weights_only=True)
    assert set(raw) >= {"net_recon", "opt_00"}
    assert list(raw["net_recon"]) == list(filled_net.state_dict())
    net = load_model(str(path), torch.device("cpu"))
    for k, v in filled_net.state_dict().items():
        assert torch.equal(net.state_dict()[k], v), k


def test_missing_checkpoint_is_one_clear_line(tmp_path):
    with pytest.raises(UserError) as e:
        load_model(str(tmp_path / "nope.pth"), torch.device("cpu"))
    msg = str(e.value)
    assert "\n" not in msg
    for part in ("nope.pth", "epoch_20.pth", "face_recon_feat0.2_augment", "--checkpoint"):
        assert part in msg


def test_wrong_key_is_named(tmp_path):
    sd = fill_state_dict(NET)
    sd["final_layers.7.weight"] = sd.pop("final_layers.6.weight")
    torch.save({"net_recon": sd}, tmp_path / "bad.pth")
    with pytest.raises(UserError) as e:
        load_model(str(tmp_path / "bad.pth"), torch.device("cpu"))
    assert "final_layers.6.weight" in str(e.value) and "final_layers.7.weight" in str(e.value)
    torch.save({"model": sd}, tmp_path / "nokey.pth")
    with pytest.raises(UserError, match="net_recon"):
        load_model(str(tmp_path / "nokey.pth"), torch.device("cpu"))
