"""Reading pickled parameter files, and .npy / .npz array files, without running anything they contain.

A pickle names functions to call while it loads, so a crafted `.pdparams` (or any pickle) runs
whatever it names. Parameter files only need numpy arrays, plain containers and scalars: this
reader admits exactly those and refuses the file, naming what it asked for, otherwise.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ocrgraft.core.errors import OcrgraftError

# What numpy's own pickles of arrays, dtypes and scalars call (numpy 1 and 2 module names).
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("collections", "OrderedDict"),
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED or module == "numpy.dtypes" and name.endswith("DType"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it asks to load {module}.{name}, and loading it could run code")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("it refers to external objects (persistent ids)")


def load_arrays(path: str | Path, what: str = "parameter file") -> dict[str, np.ndarray]:
    """The arrays of a pickled dict (Paddle's `.pdparams`: name -> ndarray), loaded without
    executing anything; entries that are not arrays (Paddle's name table) are left out."""
    path = Path(path)
    if not path.is_file():
        raise OcrgraftError(
            f"{what} not found: {path}" if not path.exists() else f"{what} {path} is not a file"
        )
    try:
        with open(path, "rb") as f:
            obj = _ArraysOnly(f).load()
    except pickle.UnpicklingError as exc:
        raise OcrgraftError(
            f"{path} is not read: {exc} (only arrays, plain containers and numbers are loaded from a pickle)"
        ) from None
    except Exception as exc:
        raise OcrgraftError(
            f"{path} is not a readable {what}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None
    if not isinstance(obj, dict):
        raise OcrgraftError(f"{path} holds a {type(obj).__name__}, not a dict of named arrays")
    arrays = {str(k): v for k, v in obj.items() if isinstance(v, np.ndarray)}
    if not arrays:
        raise OcrgraftError(f"{path} holds no arrays (keys: {', '.join(map(str, list(obj)[:8]))})")
    return arrays


def plain_arrays(path: str | Path, flag: str) -> dict[str, np.ndarray]:
    """A user's .npz (arrays by name) or .npy (one array, under the name "") read with pickles refused:
    an object array would run code. A file that is not one is a one-line error naming `flag`."""
    import zipfile

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
        if head[:2] != b"PK" and head != b"\x93NUMPY":  # numpy would guess "pickled data" for any other file
            raise ValueError("not an .npz or .npy file")
        if path.suffix.lower() == ".npy":
            return {"": np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise ValueError("it holds one array without a name, not an .npz of named arrays")
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise OcrgraftError(f"{flag}: no such file: {path}") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise OcrgraftError(
            f"{flag} {path}: not a readable file of plain arrays ({str(exc).splitlines()[0]}); "
            "pickled objects are not read"
        ) from None
