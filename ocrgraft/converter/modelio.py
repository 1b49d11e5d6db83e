"""Reading and writing ONNX models: clear errors on bad files, atomic writes, inputs never touched."""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import tempfile
from pathlib import Path

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from ocrgraft.errors import OcrgraftError


def load_proto(path: str | os.PathLike) -> onnx.ModelProto:
    """Parse an .onnx file (external data included) into memory, or fail with one clear line."""
    path = Path(path)
    if not path.exists():
        raise OcrgraftError(f"no such file: {path}")
    if path.is_dir():
        raise OcrgraftError(f"{path} is a directory, not an .onnx file")
    if path.stat().st_size == 0:
        raise OcrgraftError(f"{path} is empty")
    try:
        proto = onnx.load(str(path), load_external_data=False)
        _check_external_data(proto, path)
        onnx.external_data_helper.load_external_data_for_model(proto, str(path.parent))
    except OcrgraftError:
        raise
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise OcrgraftError(f"{path} is not a valid ONNX model (corrupt or truncated): {_first_line(exc)}") from exc
    except FileNotFoundError as exc:
        raise OcrgraftError(f"{path}: external data file missing: {_first_line(exc)}") from exc
    except Exception as exc:  # protobuf and onnx raise a zoo of types for damaged files
        raise OcrgraftError(f"{path} cannot be read as ONNX: {_first_line(exc)}") from exc
    if not proto.graph.node and not proto.graph.output:
        raise OcrgraftError(f"{path} is not a valid ONNX model (no graph: corrupt, truncated or not ONNX)")
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise OcrgraftError(f"{path} is not a valid ONNX model: {_first_line(exc)}") from exc
    return proto


def _check_external_data(proto: onnx.ModelProto, path: Path) -> None:
    tensors = list(proto.graph.initializer) + [a.t for n in proto.graph.node for a in n.attribute if a.HasField("t")]
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            if not (path.parent / location).is_file():
                raise OcrgraftError(f"{path}: external data file '{location}' is missing "
                                    f"(tensor '{tensor.name}' expects it next to the model)")


def load(path: str | os.PathLike) -> ir.Model:
    """Load an .onnx file as an in-memory onnx_ir model that passes edit in place."""
    with cycle_collector_paused():
        return ir.serde.deserialize_model(load_proto(path))


def to_proto(model: ir.Model | onnx.ModelProto) -> onnx.ModelProto:
    return model if isinstance(model, onnx.ModelProto) else ir.serde.serialize_model(model)


def to_ir(model: ir.Model | onnx.ModelProto | str | os.PathLike) -> ir.Model:
    if isinstance(model, ir.Model):
        return model
    if isinstance(model, onnx.ModelProto):
        return ir.serde.deserialize_model(model)
    return load(model)


def to_bytes(model: ir.Model | onnx.ModelProto) -> bytes:
    with cycle_collector_paused():
        return to_proto(model).SerializeToString()


@contextlib.contextmanager
def cycle_collector_paused():
    """Building, rewriting or writing a large graph allocates hundreds of thousands of small objects, and
    Python's cycle collector would rescan the whole heap again and again meanwhile, a cost that grows
    faster than the graph. Afterwards the new objects, mostly the graph that lives on, are filed with the
    oldest generation unscanned (freeze + unfreeze); the next full collection frees what is garbage."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:   # never thaw what the caller froze
            gc.freeze()
            gc.unfreeze()
        if enabled:
            gc.enable()


def save(model: ir.Model | onnx.ModelProto, path: str | os.PathLike) -> Path:
    """Write a self-contained .onnx file atomically: readers never see a half-written file."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_bytes(to_bytes(model))
    return path


@contextlib.contextmanager
def atomic_file(path: Path):
    """Yield a temporary path next to `path`; move it into place only if the block succeeds."""
    with _parent(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp)
        try:
            yield tmp
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: Path):
    """Yield a temporary folder next to `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    with _parent(path):
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        try:
            yield tmp
            if path.exists():
                old = path.with_name(f".{path.name}.old-{os.getpid()}")
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _parent(path: Path):
    """Create the parent folders for `path`; remove the ones created here again if nothing landed."""
    created = [p for p in reversed(path.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield
    finally:
        for p in reversed(created):
            with contextlib.suppress(OSError):
                p.rmdir()   # only succeeds while empty


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
