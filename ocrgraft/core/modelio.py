"""Reading and writing ONNX models: clear errors on bad files, atomic writes, inputs never touched."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from ocrgraft.core.errors import OcrgraftError


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
        _load_external_data(proto, path)
    except OcrgraftError:
        raise
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise OcrgraftError(
            f"{path} is not a valid ONNX model (corrupt or truncated): {_first_line(exc)}"
        ) from exc
    except FileNotFoundError as exc:
        raise OcrgraftError(f"{path}: external data file missing: {_first_line(exc)}") from exc
    except Exception as exc:  # protobuf and onnx raise a zoo of types for damaged files
        raise OcrgraftError(f"{path} cannot be read as ONNX: {_first_line(exc)}") from exc
    _check_text(proto, path)
    if not proto.graph.node and not proto.graph.output:
        raise OcrgraftError(f"{path} is not a valid ONNX model (no graph: corrupt, truncated or not ONNX)")
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise OcrgraftError(f"{path} is not a valid ONNX model: {_first_line(exc)}") from exc
    return proto


def _check_text(proto: onnx.ModelProto, path: Path, nodes: bool = False) -> None:
    """protobuf hands back undecodable text as bytes, which nothing downstream can write again:
    name the field instead of failing later with a serializer's error. Node texts are scanned only
    when asked (after a failure): the walk costs far more than parsing a large graph."""
    fields = [
        ("producer_name", proto.producer_name),
        ("producer_version", proto.producer_version),
        ("domain", proto.domain),
        ("doc_string", proto.doc_string),
        ("graph name", proto.graph.name),
        ("graph doc_string", proto.graph.doc_string),
    ]
    fields += [(f"metadata_props key {p.key!r}", p.value) for p in proto.metadata_props]
    fields += [("metadata_props key", p.key) for p in proto.metadata_props]
    if nodes:
        fields += [
            (f"node {n.name!r} {what}", text)
            for n in proto.graph.node
            for what, text in (
                ("name", n.name),
                ("doc_string", n.doc_string),
                ("input", n.input),
                ("output", n.output),
            )
        ]
    for what, text in fields:
        items = text if not isinstance(text, (str, bytes)) else [text]
        if any(isinstance(t, bytes) for t in items):
            raise OcrgraftError(
                f"{path}: the model's {what} is not valid UTF-8 text; rewrite it (e.g. with "
                "onnx.helper.set_model_props for metadata) and convert again"
            )


def _load_external_data(proto: onnx.ModelProto, path: Path) -> None:
    """Read the tensors kept in files beside the model, after checking that every such file is there
    (one walk over the tensors: on a large graph each walk costs a noticeable part of loading it)."""
    external = [t for t in _tensors(proto) if t.data_location == onnx.TensorProto.EXTERNAL]
    for tensor in external:
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        if not (path.parent / location).is_file():
            raise OcrgraftError(
                f"{path}: external data file '{location}' is missing "
                f"(tensor '{tensor.name}' expects it next to the model)"
            )
    for tensor in external:
        onnx.external_data_helper.load_external_data_for_tensor(tensor, str(path.parent))


def external_data_files(path: str | os.PathLike | None) -> list[Path]:
    """The external data files an .onnx file names (none for a file that cannot be read: loading it
    later says why)."""
    if path is None or not Path(path).is_file():
        return []
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:
        return []
    return sorted(
        {
            Path(path).parent / e.value
            for t in _tensors(proto)
            if t.data_location == onnx.TensorProto.EXTERNAL
            for e in t.external_data
            if e.key == "location"
        }
    )


def _tensors(proto: onnx.ModelProto, bodies: bool = True) -> list[onnx.TensorProto]:
    """Every tensor of the model: initializers and node attributes, in If / Loop bodies too if asked."""
    found, graphs = [], [proto.graph]
    while graphs:
        graph = graphs.pop()
        found += graph.initializer
        for node in graph.node:
            for a in node.attribute:
                if a.type == onnx.AttributeProto.TENSOR:
                    found.append(a.t)
                elif a.type == onnx.AttributeProto.GRAPH and bodies:
                    graphs.append(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS and bodies:
                    graphs += a.graphs
    return found


def load(path: str | os.PathLike) -> ir.Model:
    """Load an .onnx file as an in-memory onnx_ir model that passes edit in place."""
    proto = load_proto(path)
    try:
        with cycle_collector_paused():
            return ir.serde.deserialize_model(proto)
    except Exception as exc:
        _check_text(proto, Path(path), nodes=True)
        raise OcrgraftError(f"{path} cannot be read as ONNX: {_first_line(exc)}") from exc


def to_proto(model: ir.Model | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    try:
        return ir.serde.serialize_model(model)
    except ir.serde.SerdeError as exc:
        inner = exc
        while isinstance(inner.__cause__, Exception):
            inner, outer = inner.__cause__, inner
        if isinstance(inner, UnicodeError):  # a node or value name that came in as undecodable bytes
            where = str(outer).split(" with: ", 1)[-1][:200]
            raise OcrgraftError(
                f"the model holds text that is not valid UTF-8 ({where}); rename it and convert again"
            ) from exc
        raise


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
        if gc.get_freeze_count() == 0:  # never thaw what the caller froze
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


class SharedWeights:
    """Stage files that keep each distinct weight once: tensors of at least MIN_BYTES go to one data file
    beside them (ONNX external data, which ONNX Runtime, onnx.load and Netron read), found again by
    content, so a pass that leaves a weight alone costs its stage no copy of it."""

    MIN_BYTES = 1024
    ALIGN = 64

    def __init__(self, folder: Path, name: str = "weights.bin"):
        self.path = Path(folder) / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(b"")  # this run's file (a stages folder is written anew)
        self.index: dict[tuple[bytes, int], int] = {}
        self.size = 0

    def externalize(self, data: bytes) -> bytes:
        """The serialized model `data` with its large tensors in the shared file."""
        import hashlib

        proto = onnx.load_from_string(data)
        with open(self.path, "ab") as fh:
            for t in _tensors(proto, bodies=False):  # the main graph's
                raw = t.raw_data
                if t.data_location == onnx.TensorProto.EXTERNAL or len(raw) < self.MIN_BYTES:
                    continue
                key = (hashlib.blake2b(raw, digest_size=16).digest(), len(raw))
                if key not in self.index:
                    pad = -self.size % self.ALIGN
                    fh.write(b"\0" * pad + raw)
                    self.index[key] = self.size + pad
                    self.size += pad + len(raw)
                t.ClearField("raw_data")
                t.data_location = onnx.TensorProto.EXTERNAL
                del t.external_data[:]
                for k, v in (("location", self.path.name), ("offset", self.index[key]), ("length", len(raw))):
                    entry = t.external_data.add()
                    entry.key, entry.value = k, str(v)
        return proto.SerializeToString()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Files and folders are created with the modes the user's umask gives (tempfile's own are 0600/0700,
# which a serving container running under another uid cannot read).
UMASK = _umask()
MANIFEST = ".ocrgraft-manifest.json"


@contextlib.contextmanager
def atomic_file(path: Path):
    """Yield a temporary path next to `path`; move it into place only if the block succeeds."""
    with _parent(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~UMASK)
        os.close(fd)
        tmp = Path(tmp)
        try:
            yield tmp
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: Path, *, force: bool = False):
    """Yield a temporary folder next to `path`; it replaces `path` only if the block succeeds.

    An existing `path` is replaced only when it holds nothing but what an earlier run wrote (its
    manifest lists every file), or with `force`. The swap is one atomic exchange where the OS has
    it (Linux renameat2); elsewhere a crash between the two renames is repaired by the next run.
    Temporary folders of runs that died (SIGKILL, power loss) are removed first."""
    path = Path(path)
    with _parent(path):
        recover_interrupted(path)
        check_replaceable(path, force)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            yield tmp
            write_manifest(tmp)
            _swap_into_place(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _swap_into_place(tmp: Path, path: Path) -> None:
    """Move `tmp` to `path`; a previous `path` ends up at `tmp` (which the caller removes)."""
    if not path.exists():
        os.replace(tmp, path)
    elif not _exchange(tmp, path):
        old = path.with_name(f".{path.name}.{os.getpid()}.old")
        os.replace(path, old)
        os.replace(tmp, path)
        os.replace(old, tmp)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the OS cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _leftovers(path: Path) -> list[tuple[Path, int, str]]:
    """Temporary folders of earlier runs beside `path`: (folder, pid of the run, 'tmp' or 'old')."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.(tmp|old)")
    found = []
    for entry in path.parent.iterdir() if path.parent.is_dir() else ():
        m = pattern.fullmatch(entry.name)
        if m and entry.is_dir():
            found.append((entry, int(m.group(1)), m.group(2)))
    return found


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_interrupted(path: Path) -> None:
    """Undo what a killed run left beside `path`: put a previous result moved aside back in place
    when `path` is missing, and delete the temporary folders of runs that no longer live."""
    for folder, pid, kind in _leftovers(path):
        if _alive(pid):
            continue
        if kind == "old" and not path.exists():
            os.replace(folder, path)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def write_manifest(folder: Path) -> None:
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink())
    with atomic_file(folder / MANIFEST) as tmp:
        tmp.write_text(json.dumps({"written_by": "ocrgraft", "files": files}, indent=1) + "\n")


def foreign_files(folder: Path) -> list[str]:
    """Files in an output folder that its manifest does not list (all of them without a manifest)."""
    try:
        listed = set(json.loads((folder / MANIFEST).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        listed = set()
    present = (str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir() or p.is_symlink())
    return sorted(f for f in present if f not in listed and f != MANIFEST)


def check_replaceable(path: Path, force: bool) -> None:
    if path.is_symlink() or path.exists() and not path.is_dir():
        raise OcrgraftError(f"{path} exists and is not a folder: move it away or choose another --out")
    if not path.exists() or force:
        return
    foreign = foreign_files(path)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f", … {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise OcrgraftError(
            f"{path} holds files ocrgraft did not write ({shown}); a new conversion would "
            "replace the folder: move them, choose another --out, or rerun with --force to replace the folder"
        )


def refuse_overwrite(inputs, outputs=(), folders=()) -> None:
    """Refuse a run whose outputs would replace or delete one of its inputs: a file given as
    `outputs`, or anything inside a replaced `folders`."""
    outs = {Path(p).resolve() for p in outputs}
    dirs = [Path(d).resolve() for d in folders]
    for given in inputs:
        if given is None:
            continue
        p = Path(given).resolve()
        if p in outs:
            raise OcrgraftError(f"the output would overwrite the input {given}: choose another output path")
        for d in dirs:
            if p == d or d in p.parents:
                raise OcrgraftError(
                    f"the input {given} lies inside the output folder {d}, which this run "
                    "replaces: copy the input elsewhere or choose another --out"
                )


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
                p.rmdir()  # only succeeds while empty


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
