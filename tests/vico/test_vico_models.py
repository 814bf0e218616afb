"""Generators: manifest layout, golden parity with the original, the fast path, variants."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from common.io import UserError
from common.smoke_weights import fill_state_dict
from common.weights import check_manifest, manifest_shapes
from vico.models import CONFIGS, MANIFESTS, build_model, config_from_dict, resolve_config

TASKS = ("listener", "speaker")
N_PARAMS = {"listener": 248_449, "speaker": 907_747}


@pytest.fixture(scope="module")
def case(golden):
    d = np.load(golden / "vico_generators.npz")
    return {k: d[k] for k in d.files}


def _model(task: str, name: str | None = None):
    m = build_model(CONFIGS[name or f"baseline_{task}"]).eval()
    m.load_state_dict(fill_state_dict(MANIFESTS[task]), strict=True)
    return m


def _inputs(case):
    return [torch.from_numpy(case[k]) for k in ("audio", "driven", "init", "lengths")]


@pytest.mark.parametrize("task", TASKS)
def test_manifest_layout_and_parameter_count(task):
    m = build_model(CONFIGS[f"baseline_{task}"])
    got = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    want = manifest_shapes(MANIFESTS[task])
    assert list(got) == list(want)  # same keys in the same order
    assert got == want
    assert check_manifest(m, MANIFESTS[task]) == []
    assert sum(p.numel() for p in m.parameters()) == N_PARAMS[task]


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("packed", [False, True])
def test_forward_matches_original(case, task, packed):
    m = _model(task)
    with torch.no_grad():
        pred = m(*_inputs(case), packed=packed).numpy()
    np.testing.assert_allclose(pred, case[f"{task}_pred"], atol=1e-5, rtol=0)
    # padded rows of sample 1 (length 25) are the fc bias, as the original's
    bias = m.dynam_3dmm_fc.bias.detach().numpy()
    np.testing.assert_allclose(pred[1, 25:], np.broadcast_to(bias, (15, 73)), atol=1e-6)
    masked = pred.copy()
    for i, n in enumerate(case["lengths"]):
        masked[i, n - 1:] = 0
    np.testing.assert_allclose(masked, case[f"{task}_pred_masked"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("task", TASKS)
def test_fast_path_equals_packed_in_training(task):
    """Outputs and gradients of the unpacked path equal pack_padded_sequence's for mixed lengths."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(CONFIGS[f"baseline_{task}"], dropout=0.0)  # dropout masks differ by path
    m = build_model(cfg).train()
    b, t = 5, 23
    audio, driven, init = torch.randn(b, t, 45), torch.randn(b, t, 73), torch.randn(b, 73)
    lengths = torch.tensor([23, 7, 15, 23, 2])
    grads = []
    outs = []
    for packed in (True, False):
        m.zero_grad()
        out = m(audio, driven, init, lengths, packed=packed)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-4, rtol=1e-4)
    # and a lone clip run unpadded gives the same rows as inside the padded batch
    with torch.no_grad():
        lone = m(audio[1:2, :7], driven[1:2, :7], init[1:2])
    torch.testing.assert_close(lone[0], outs[1][1, :7], atol=1e-5, rtol=1e-5)


def test_residual_listener_adds_first_frame(case):
    base, res = _model("listener"), build_model(CONFIGS["residual_listener"]).eval()
    res.load_state_dict(base.state_dict())  # same parameters: only the output changes
    x = _inputs(case)
    with torch.no_grad():
        diff = res(*x) - base(*x)
    torch.testing.assert_close(diff, x[2][:, None, :].expand_as(diff), atol=1e-6, rtol=0)


def test_residual_speaker_is_conditioned_on_first_frame(case):
    torch.manual_seed(1)
    m = build_model(CONFIGS["residual_speaker"]).eval()
    assert "audio_to_face.init_state.get_initial_state.2.weight" in m.state_dict()
    a, d, i, n = _inputs(case)
    with torch.no_grad():
        p1 = m(a, d, i, n) - i[:, None]
        j = torch.randn_like(i)  # (a constant shift would vanish in the LayerNorm)
        p2 = m(a, d, j, n) - j[:, None]
    assert (p1 - p2).abs().max() > 1e-3  # the residual itself depends on frame 0
    with pytest.raises(ValueError, match="init"):
        m(a, d, None, n)


def test_config_registry_and_yaml(tmp_path):
    assert resolve_config(None, "speaker") == CONFIGS["baseline_speaker"]
    cfg = CONFIGS["residual_speaker"]
    assert config_from_dict(dataclasses.asdict(cfg)) == cfg  # the checkpoint round trip
    y = tmp_path / "small.yaml"
    y.write_text("base: baseline_listener\nhidden_dim: 32\ndropout: 0.0\n")
    c = resolve_config(str(y), "listener")
    assert (c.hidden_dim, c.dropout, c.num_layers) == (32, 0.0, 2)
    assert build_model(c).dynam_3dmm_fc.weight.shape == (73, 32)
    with pytest.raises(UserError, match="speaker model but --task is listener"):
        resolve_config("residual_speaker", "listener")
    y.write_text("base: baseline_listener\nhiden_dim: 32\n")
    with pytest.raises(UserError, match=r"small.yaml: unknown listener config field\(s\) \['hiden_dim'\]"):
        resolve_config(str(y), "listener")


def test_shipped_example_configs_build(repo_root):
    wide = resolve_config(str(repo_root / "configs" / "vico_listener_wide.yaml"), "listener")
    assert (wide.residual, wide.hidden_dim, wide.num_layers, wide.dropout) == (True, 192, 3, 0.2)
    assert build_model(wide).dynam_3dmm_fc.weight.shape == (73, 192)
    spk = resolve_config(str(repo_root / "configs" / "vico_speaker_conditioned.yaml"), "speaker")
    assert (spk.init_conditioning, spk.residual) == (True, False)
    build_model(spk)
