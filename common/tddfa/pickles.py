"""Reading the released 3DDFA_V2 ``.pkl`` files without running arbitrary code.

``bfm_noneck_v3.pkl`` and ``param_mean_std_62d_120x120.pkl`` are pickled dicts of numpy arrays.
:func:`load_numpy_pickle` accepts exactly that: the unpickler resolves only the few numpy names
an array needs (plus ``_codecs.encode``, which protocol-2 pickles use for the array bytes);
any other global (``os.system``, a class, a function) is refused.
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from common.io import UserError

# (module, name) pairs an ndarray / numpy scalar / dtype pickle refers to (numpy 1.x and 2.x names).
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),  # protocol-5 array pickles
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # protocol-2 pickles store array bytes as encode(latin-1 str)
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves only numpy array/dtype/scalar constructors."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed (numpy arrays only)")


def loads_numpy(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`NumpyOnlyUnpickler` (latin1 for Python 2 era numpy pickles)."""
    return NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()


def load_numpy_pickle(path: str | os.PathLike, required: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """A dict of numpy arrays from ``path``; UserError (one line naming the file) otherwise.

    ``required`` maps keys that must be present to their number of dimensions (-1: any).
    """
    p = Path(path)
    try:
        obj = loads_numpy(p.read_bytes())
    except FileNotFoundError:
        raise UserError(f"{p}: file not found") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure: not a numpy pickle
        raise UserError(f"{p}: not a pickle of numpy arrays ({type(e).__name__}: "
                        f"{' '.join(str(e).split())[:160]})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{p}: expected a pickled dict of numpy arrays, found {type(obj).__name__}")
    out = {str(k): v for k, v in obj.items()}
    bad = [k for k, v in out.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise UserError(f"{p}: entries that are not numpy arrays: {', '.join(bad[:4])}")
    for key, ndim in (required or {}).items():
        if key not in out:
            raise UserError(f"{p}: missing key {key!r} (found: {', '.join(sorted(out))})")
        if ndim >= 0 and out[key].ndim != ndim:
            raise UserError(f"{p}: {key!r} has shape {list(out[key].shape)}, expected {ndim} dimensions")
    return out
