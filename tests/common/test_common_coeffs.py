import numpy as np
import pytest

from common import coeffs as C


def _recon(n=5, seed=0):
    rng = np.random.default_rng(seed)
    coeff = rng.standard_normal((n, 257)).astype(np.float32)
    tp = np.column_stack([np.full(n, 256), np.full(n, 256), rng.random((n, 3))]).astype(np.float32)
    return coeff, tp


def test_layout_dims_and_slices_match_upstream():
    assert (C.RECON.dim, C.VICO_DYN.dim, C.VICO_FIXED.dim, C.PIRENDER.dim) == (257, 73, 187, 73)
    assert C.RECON.slice("exp") == slice(80, 144)
    assert C.RECON.slice("angle") == slice(224, 227)
    assert C.RECON.slice("gamma") == slice(227, 254)
    assert C.RECON.slice("trans") == slice(254, 257)
    assert C.VICO_DYN.slice("crop") == slice(70, 73)
    assert C.PIRENDER.slice("angle") == slice(64, 67)
    with pytest.raises(KeyError, match="no field"):
        C.RECON.slice("pose")


def test_recon_to_vico_by_hand():
    coeff, tp = _recon()
    dyn, fixed = C.recon_to_vico(coeff, tp)
    # spec 2.3: angle.exp.trans = angle 3 | exp 64 | trans 3 | crop (s, t0, t1)
    np.testing.assert_array_equal(dyn, np.concatenate([coeff[:, 224:227], coeff[:, 80:144], coeff[:, 254:257], tp[:, 2:5]], 1))
    # id.gamma.tex = id 80 | gamma 27 | tex 80
    np.testing.assert_array_equal(fixed, np.concatenate([coeff[:, 0:80], coeff[:, 227:254], coeff[:, 144:224]], 1))
    assert dyn.dtype == fixed.dtype == np.float32


def test_round_trips():
    coeff, tp = _recon()
    dyn, fixed = C.recon_to_vico(coeff, tp)
    coeff2, tp2 = C.vico_to_recon(dyn, fixed, width=256, height=256)
    np.testing.assert_array_equal(coeff2, coeff)
    np.testing.assert_array_equal(tp2, tp)
    np.testing.assert_array_equal(C.pirender_to_vico(C.vico_to_pirender(dyn)), dyn)


def test_pirender_order_by_hand():
    coeff, tp = _recon()
    p = C.recon_to_pirender(coeff, tp)
    # spec 4.2: exp (80:144), angle (224:227), trans (254:257), crop (257:260 of the 260-vector)
    np.testing.assert_array_equal(p, np.concatenate([coeff[:, 80:144], coeff[:, 224:227], coeff[:, 254:257], tp[:, 2:5]], 1))


def test_pirender_windows_clamped():
    n = 4
    c = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 73), np.float32)
    w = C.pirender_windows(c)
    assert w.shape == (n, 73, 27)
    # frame 0: offsets -13..13 -> rows clamp(0+k) ; frame 3: last rows clamp to 3
    np.testing.assert_array_equal(w[0, 0], np.clip(np.arange(-13, 14), 0, n - 1))
    np.testing.assert_array_equal(w[3, 5], np.clip(3 + np.arange(-13, 14), 0, n - 1))
    assert w[2, :, 13].tolist() == [2.0] * 73  # the centre column is the frame itself


def test_shape_errors():
    coeff, tp = _recon()
    with pytest.raises(ValueError, match="257"):
        C.recon_to_vico(coeff[:, :256], tp)
    with pytest.raises(ValueError, match="frames"):
        C.recon_to_vico(coeff, tp[:3])
