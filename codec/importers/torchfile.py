"""Read a `torch.save` checkpoint into numpy arrays without torch, and without running its pickle.

`torch.save` writes a zip archive: `NAME/data.pkl` (a pickle whose tensors point at storages by key),
`NAME/data/KEY` (each storage's raw little-endian bytes) and `NAME/byteorder`. A pickle can name any Python
callable, so loading an untrusted one with `pickle` (or `torch.load(weights_only=False)`) runs whatever it
names. This reader allows exactly what a state dict or a training checkpoint holds: containers, numbers,
strings, `collections.OrderedDict`, and tensors rebuilt by `torch._utils._rebuild_tensor_v2` /
`_rebuild_parameter` from typed storages. Anything else is refused with the name it asked for.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from codec.errors import PackageError

STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
MAX_CHECKPOINT_BYTES = 2 * 2**30


class CheckpointError(PackageError):
    code = "bad-checkpoint"


class _Storage:
    def __init__(self, array: np.ndarray) -> None:
        self.array = array


class _StorageType:
    def __init__(self, name: str) -> None:
        self.name, self.dtype = name, STORAGE_DTYPES[name]


def _rebuild_tensor(storage: _Storage, offset: int, size: tuple, stride: tuple, *_: Any) -> np.ndarray:
    flat = storage.array
    if not size:
        return flat[offset : offset + 1].reshape(()).copy()
    extent = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) + 1
    if min(size) > 0 and (offset < 0 or extent > flat.size):
        raise CheckpointError("a tensor of the checkpoint reaches outside its storage")
    strides = tuple(s * flat.itemsize for s in stride)
    return np.lib.stride_tricks.as_strided(flat[offset:], shape=tuple(size), strides=strides).copy()


def _rebuild_parameter(data: np.ndarray, *_: Any) -> np.ndarray:
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): OrderedDict,
    ("collections", "Counter"): Counter,  # a learning-rate scheduler's milestones
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, path: Path) -> None:
        super().__init__(io.BytesIO(data))
        self._archive, self._prefix, self._path = archive, prefix, path

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise CheckpointError(
            f"refusing {self._path.name}: its pickle asks for {module}.{name}, "
            "which a tensor checkpoint never needs"
        )

    def persistent_load(self, pid: Any) -> _Storage:
        if not (
            isinstance(pid, tuple)
            and len(pid) >= 5
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
        ):
            raise CheckpointError(f"{self._path.name}: unreadable storage reference {pid!r:.80}")
        storage_type, key = pid[1], str(pid[2])
        try:
            raw = self._archive.read(f"{self._prefix}data/{key}")
        except KeyError:
            raise CheckpointError(f"{self._path.name}: storage {key} is missing from the archive") from None
        return _Storage(np.frombuffer(raw, dtype=np.dtype(storage_type.dtype).newbyteorder("<")))


def load_checkpoint(path: str | Path) -> Any:
    """The object a checkpoint holds, with every tensor as a numpy array."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_CHECKPOINT_BYTES:
            raise CheckpointError(f"{path} is larger than {MAX_CHECKPOINT_BYTES} bytes")
        with zipfile.ZipFile(path) as archive:
            return _load_zip(archive, path)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path} is a directory, not a checkpoint file") from None
    except zipfile.BadZipFile:
        raise CheckpointError(
            f"{path} is not a torch.save archive (a zip file); re-save it with "
            "torch.save(model.state_dict(), PATH) from torch 1.6 or newer"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None


def _load_zip(archive: zipfile.ZipFile, path: Path) -> Any:
    pickles = [name for name in archive.namelist() if name.endswith("data.pkl")]
    if len(pickles) != 1:
        raise CheckpointError(f"{path}: expected one data.pkl in the archive, found {len(pickles)}")
    prefix = pickles[0][: -len("data.pkl")]
    order = (
        archive.read(f"{prefix}byteorder").decode()
        if f"{prefix}byteorder" in archive.namelist()
        else "little"
    )
    if order.strip() != "little":
        raise CheckpointError(f"{path}: big-endian checkpoints are not supported")
    return _Unpickler(archive.read(pickles[0]), archive, prefix, path).load()


def state_dict_of(checkpoint: Any, path: Path) -> dict[str, np.ndarray]:
    """The state dict of a checkpoint: itself, or its `state_dict` entry (the CompressAI zoo layout)."""
    if (
        isinstance(checkpoint, dict)
        and "state_dict" in checkpoint
        and isinstance(checkpoint["state_dict"], dict)
    ):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict) or not all(isinstance(v, np.ndarray) for v in checkpoint.values()):
        raise CheckpointError(
            f"{path} holds no state dict (a mapping of names to tensors, or one under 'state_dict')"
        )
    return {str(name).removeprefix("module."): value for name, value in checkpoint.items()}
