"""The training loss: the original's numbers, and the real-frames mean."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.smoke_weights import fill_state_dict
from vico.losses import DEFAULT_WEIGHTS, GROUPS, TERM_NAMES, loss_terms, vico_loss
from vico.models import CONFIGS, MANIFESTS, build_model


@pytest.fixture(scope="module")
def case(golden):
    d = np.load(golden / "vico_generators.npz")
    return {k: d[k] for k in d.files}


def _values(total, means):
    return np.array([total.item()] + [means[k].item() for k in TERM_NAMES])


def test_given_prediction_matches_original(case):
    assert list(case["loss_names"]) == ["TOTAL_LOSS", *TERM_NAMES]
    total, means = vico_loss(torch.from_numpy(case["given_pred"]), torch.from_numpy(case["target"]),
                             torch.from_numpy(case["lengths"]), mean="padded")
    np.testing.assert_allclose(_values(total, means), case["listener_loss_given"], rtol=1e-5)
    assert abs(total.item() - 21.871548) < 1e-4


@pytest.mark.parametrize("task", ["listener", "speaker"])
def test_model_loss_matches_original(case, task):
    m = build_model(CONFIGS[f"baseline_{task}"]).eval()
    m.load_state_dict(fill_state_dict(MANIFESTS[task]))
    x = [torch.from_numpy(case[k]) for k in ("audio", "driven", "init", "lengths")]
    with torch.no_grad():
        total, means = vico_loss(m(*x), torch.from_numpy(case["target"]), x[3], mean="padded")
    np.testing.assert_allclose(_values(total, means), case[f"{task}_loss_model"], rtol=1e-5)


def _frames_reference(pred, target, lengths):
    """Per-sample loop over real rows only, written out by hand."""
    out = {k: [] for k in TERM_NAMES}
    for i, n in enumerate(lengths.tolist()):
        p, g = pred[i, : n - 1], target[i, : n - 1]
        start = 0
        for name, d in GROUPS:
            ps, gs = p[:, start:start + d], g[:, start:start + d]
            start += d
            out[f"loss_{name}"].append(F.pairwise_distance(ps, gs))
            out[f"loss_{name}_spiky"].append(F.pairwise_distance(ps[1:] - ps[:-1], gs[1:] - gs[:-1]))
    means = {k: torch.cat(v).mean() for k, v in out.items()}
    return sum(DEFAULT_WEIGHTS[k] * means[k] for k in TERM_NAMES), means


def test_frames_mean_counts_real_rows_only(case):
    pred, target = torch.from_numpy(case["given_pred"]), torch.from_numpy(case["target"])
    lengths = torch.from_numpy(case["lengths"])
    total, means = vico_loss(pred, target, lengths)
    ref_total, ref = _frames_reference(pred, target, lengths)
    np.testing.assert_allclose(_values(total, means), _values(ref_total, ref), rtol=1e-5)
    terms = loss_terms(pred, target, lengths)
    assert (terms.count, terms.count_spiky) == (39 + 24, 38 + 23)
    # extra padding changes the original mean but not ours
    pad_pred, pad_tgt = F.pad(pred, (0, 0, 0, 10)), F.pad(target, (0, 0, 0, 10))
    assert vico_loss(pad_pred, pad_tgt, lengths)[0].item() == pytest.approx(total.item(), rel=1e-6)
    orig = vico_loss(pred, target, lengths, mean="padded")[0].item()
    assert vico_loss(pad_pred, pad_tgt, lengths, mean="padded")[0].item() < orig * 0.9


def test_zero_weight_samples_are_ignored(case):
    pred, target = torch.from_numpy(case["given_pred"]), torch.from_numpy(case["target"])
    lengths = torch.from_numpy(case["lengths"])
    for mean in ("frames", "padded"):
        both = loss_terms(torch.cat([pred, pred[:1]]), torch.cat([target, target[:1]]), torch.cat([lengths, lengths[:1]]),
                          mean, sample_weights=torch.tensor([1.0, 1.0, 0.0]))
        ref = loss_terms(pred, target, lengths, mean)
        assert (both.count, both.count_spiky) == (ref.count, ref.count_spiky)
        for k in TERM_NAMES:
            assert both.sums[k].item() == pytest.approx(ref.sums[k].item(), rel=1e-6)
