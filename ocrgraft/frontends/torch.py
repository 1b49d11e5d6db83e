"""PyTorch frontend: a zoo model from its recipe, with --weights or a fixed-seed random init, the
torch-level rewrites its target needs, exported with either of torch 2.13's exporters.

The reference the pipeline checks every stage against is the *unrewritten* torch model, so the
rewrites and the export are verified together. After export, every dynamic dim is checked: an input
dim the exporter fixed is an error; an output dim is compared with torch at a second shape
(research/frontends.md: the torch.export-based exporter fixes batch 1 silently and declares LSTM
sequence lengths static).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import logging
import math
import pickle
import re
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import torch
import torch.nn as nn

from ocrgraft import models
from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.pooling import adaptive_matrix, axis_plan
from ocrgraft.core.progress import busy
from ocrgraft.core.recipe import Recipe
from ocrgraft.core.shapes import ShapeSet, fmt_dims, random_inputs
from ocrgraft.frontends import Source
from ocrgraft.models import crnn

EXPORTERS = ("torchscript", "dynamo")
DYNAMO_MIN_OPSET = 18  # torch.export-based exporter: lower requests silently stay at 18
DEFAULT_OPSET = 11  # TorchScript exporter, as in the seeds


# -- torch-level rewrites, registered per target (and per exporter) -----------------------------


@dataclass(frozen=True)
class TorchRewrite:
    """Swap a module for an exact equivalent that some target or exporter needs.

    Applies when the conversion's target is in `targets` or its exporter in `exporters`;
    both empty means always."""

    name: str
    cls: type
    why: str
    targets: tuple[str, ...] = ()
    exporters: tuple[str, ...] = ()

    def wanted(self, target: str, exporter: str) -> bool:
        return (
            (not self.targets and not self.exporters) or target in self.targets or exporter in self.exporters
        )


REWRITES: list[TorchRewrite] = []


def torch_rewrite(name: str, why: str, targets: tuple[str, ...] = (), exporters: tuple[str, ...] = ()):
    """Register a replacement module class; it has `matches(module) -> bool` and `__init__(module)`."""

    def deco(cls):
        REWRITES.append(TorchRewrite(name, cls, why, tuple(targets), tuple(exporters)))
        return cls

    return deco


@torch_rewrite(
    "adaptive-avgpool-to-mean",
    "the TorchScript exporter refuses AdaptiveAvgPool2d once any input dim is dynamic, and the "
    "other exporter bakes its kernel from the example size; a mean over the pooled axis stays dynamic",
)
class AdaptivePoolAsMean(nn.Module):
    """AdaptiveAvgPool2d((None, 1)) / ((1, None)) is a mean over width / height, keeping the dim."""

    def __init__(self, pool: nn.AdaptiveAvgPool2d):
        super().__init__()
        self.dim = -1 if tuple(pool.output_size) == (None, 1) else -2

    @staticmethod
    def matches(m: nn.Module) -> bool:
        return (
            type(m) is nn.AdaptiveAvgPool2d
            and isinstance(m.output_size, (tuple, list))
            and tuple(m.output_size) in ((None, 1), (1, None))
        )

    def forward(self, x):
        return x.mean(dim=self.dim, keepdim=True)


@torch_rewrite(
    "uneven-adaptive-avgpool",
    "an AdaptiveAvgPool whose output size does not divide a static input size is refused by the "
    "TorchScript exporter and written by the other as a gather of every window (GatherND, Where, one "
    "Gather/Add per cell); per axis an AveragePool, a mean or a MatMul with the averaging matrix says "
    "the same in ops every target has",
)
class UnevenAdaptiveAvgPool(nn.Module):
    """AdaptiveAvgPool1d/2d as per-axis averaging; pools whose sizes divide (or whose pooled axis is
    dynamic at export) are left to the exporter, which writes them compactly."""

    def __init__(self, pool: nn.Module):
        super().__init__()
        rank = 2 if isinstance(pool, nn.AdaptiveAvgPool2d) else 1
        size = pool.output_size
        self.size = tuple(size) if isinstance(size, (tuple, list)) else (size,) * rank
        self.exported = nn.functional.adaptive_avg_pool2d if rank == 2 else nn.functional.adaptive_avg_pool1d
        self.output_size = pool.output_size

    @staticmethod
    def matches(m: nn.Module) -> bool:
        return type(m) in (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)

    def forward(self, x):
        # torch.export gives a dynamic size as a SymInt (left to the exporter); the TorchScript tracer gives
        # every size as a tensor and its value is baked (a dynamic axis then fails the export's dim check)
        sizes = {
            a: int(x.shape[a]) if torch.jit.is_tracing() else x.shape[a] for a in range(-len(self.size), 0)
        }
        pooled = [(a, o) for a, o in zip(sizes, self.size) if o is not None]
        if not all(isinstance(sizes[a], int) for a, _ in pooled) or all(sizes[a] % o == 0 for a, o in pooled):
            return self.exported(x, self.output_size)
        for axis, out in pooled:
            matrix = adaptive_matrix(sizes[axis], out)
            plan = axis_plan(matrix)
            if plan[0] == "full":
                x = x.mean(dim=axis, keepdim=True)
            elif plan[0] == "pool" and x.dim() == 4:
                k, s = plan[1:]
                window = ((k, 1), (s, 1)) if axis == -2 else ((1, k), (1, s))
                x = nn.functional.avg_pool2d(x, *window)
            elif plan[0] != "id":
                weights = torch.tensor(matrix, dtype=x.dtype)
                x = torch.matmul(weights, x) if axis == -2 else torch.matmul(x, weights.T)
        return x


@torch_rewrite(
    "maxpool3d-as-2d",
    "nn.MaxPool3d on a 4-D tensor (LPRNet) pools over channels: Sophon's toolchain has no 3-D max pool "
    "(sophon-demo LPRNet_Export_Guide.md) and TensorRT users hit the same wall "
    "(sirius-ai/LPRNet_Pytorch#66); the TorchScript exporter writes a MaxPool that ONNX Runtime rejects "
    "(dilations of the wrong size)",
    targets=("sophon", "trt"),
    exporters=("torchscript",),
)
class MaxPool3dAs2d(nn.Module):
    """Max pooling is separable: a MaxPool2d over (H, W), then one over the channel axis after a transpose."""

    def __init__(self, pool: nn.MaxPool3d):
        super().__init__()
        kd, kh, kw = _triple(pool.kernel_size)
        sd, sh, sw = _triple(pool.stride if pool.stride is not None else pool.kernel_size)
        self.spatial = nn.MaxPool2d((kh, kw), (sh, sw))
        self.depth = nn.MaxPool2d((1, kd), (1, sd)) if (kd, sd) != (1, 1) else None
        self.pool3d = pool

    @staticmethod
    def matches(m: nn.Module) -> bool:
        return (
            type(m) is nn.MaxPool3d
            and _triple(m.padding) == (0, 0, 0)
            and _triple(m.dilation) == (1, 1, 1)
            and not m.ceil_mode
            and not m.return_indices
        )

    def forward(self, x):
        if x.dim() != 4:  # a real 5-D input keeps the 3-D pool
            return self.pool3d(x)
        x = self.spatial(x)
        if self.depth is not None:
            x = self.depth(x.transpose(1, 3)).transpose(1, 3)
        return x


# The CRNN family's own rewrite lives beside its model; it is switched on here, for one exporter.
torch_rewrite(
    "linear-on-sequence",
    "`view(T*b, h) -> Linear -> view(T, b, -1)` after an LSTM: the torch.export-based exporter takes T "
    "from the LSTM's static fake shape and bakes it into the Reshape; Linear on the 3-D tensor is the "
    "same MatMul + Add (the graph-level form of this is the Ascend seed's fix.py `fix_gemm`)",
    exporters=("dynamo",),
)(crnn.LinearOnSequence)


def _triple(v) -> tuple[int, int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v, v)


def apply_rewrites(model: nn.Module, target: str, exporter: str) -> tuple[nn.Module, list[str]]:
    """A rewritten copy of `model` (the original stays the reference) and one note per rewrite that ran."""
    model = copy.deepcopy(model)
    notes = []
    for rw in REWRITES:
        if not rw.wanted(target, exporter):
            continue
        count = 0
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if rw.cls.matches(child):
                    setattr(parent, name, rw.cls(child))
                    count += 1
        if count:
            scope = (
                ", ".join([f"target {t}" for t in rw.targets] + [f"{e} exporter" for e in rw.exporters])
                or "every target"
            )
            notes.append(f"torch rewrite '{rw.name}' ({scope}): {count} module(s) replaced; why: {rw.why}")
    return model.eval(), notes


# -- weights --------------------------------------------------------------------------------------

CHECKPOINT_KEYS = ("state_dict", "model", "net", "model_state_dict")


def load_weights(
    model: nn.Module, path: str | Path, arch: str, trust_code: bool = False
) -> tuple[str, torch.jit.ScriptModule | None]:
    """Load a plain state_dict, a checkpoint dict, a DataParallel checkpoint or a TorchScript file into
    `model` (strict: every key and shape must fit). Returns what was loaded, and the TorchScript
    module when `trust_code` let it be loaded as code (else its tensors are read without running it)."""
    path = Path(path)
    if not path.is_file():
        raise OcrgraftError(
            f"weights file not found: {path}" if not path.exists() else f"weights {path} is not a file"
        )
    if path.stat().st_size == 0:
        raise OcrgraftError(f"weights {path} is empty")
    jit = None
    if zipfile.is_zipfile(path) and _is_torchscript(path):
        if trust_code:
            try:
                jit = torch.jit.load(str(path), map_location="cpu")
            except Exception as exc:
                raise OcrgraftError(f"{path}: cannot load this TorchScript file: {_first_line(exc)}") from exc
            state, form = jit.state_dict(), "TorchScript module, loaded as code (--trust-code)"
        else:
            state, form = torchscript_tensors(path), "TorchScript file, tensors read without running its code"
    else:
        state, form = _read_checkpoint(path)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
        form += ", DataParallel 'module.' prefix removed"
    for old, new in getattr(sys.modules[type(model).__module__], "CHECKPOINT_RENAMES", ()):
        if any(k.startswith(old) for k in state):  # an older release's names for the same parameters
            state = {new + k[len(old) :] if k.startswith(old) else k: v for k, v in state.items()}
            form += f", '{old}*' read as '{new}*'"
    _check_fit(model, state, path, arch)
    own = model.state_dict()
    for k in own:  # older checkpoints lack BatchNorm's step counter; it does not affect inference
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = own[k]
    model.load_state_dict(state, strict=True)
    return f"{path.name} ({form}, {len(state)} tensors)", jit


def _is_torchscript(path: Path) -> bool:
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())


class _ScriptObject:
    """A TorchScript module's attributes as plain data: what its pickle holds, with no code bound to it."""

    def __setstate__(self, state):
        self.state = state if isinstance(state, dict) else {}


class _StorageType:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


class _TorchScriptReader(pickle.Unpickler):
    """Reads a TorchScript archive's data.pkl admitting only module records, tensors and plain values:
    the code in the archive is never compiled or run, so a crafted file cannot do anything."""

    SAFE = {
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"),
        ("collections", "OrderedDict"),
        ("torch.jit._pickle", "restore_type_tag"),
        ("torch.jit._pickle", "build_intlist"),
        ("torch.jit._pickle", "build_doublelist"),
        ("torch.jit._pickle", "build_boollist"),
        ("torch.jit._pickle", "build_tensorlist"),
    }

    def __init__(self, archive: zipfile.ZipFile, prefix: str, path: Path):
        super().__init__(io.BytesIO(archive.read(f"{prefix}data.pkl")))
        self.archive, self.prefix, self.path = archive, prefix, path

    def find_class(self, module: str, name: str):
        if module.startswith("__torch__"):
            return _ScriptObject
        if module == "torch" and name.endswith("Storage") and isinstance(getattr(torch, name, None), type):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TypedStorage classes are deprecated, their dtype is not
                return _StorageType(getattr(torch, name).dtype)
        if (module, name) in self.SAFE:
            return getattr(importlib.import_module(module), name)
        raise OcrgraftError(
            f"{self.path}: the TorchScript file refers to {module}.{name}, which is not read "
            "without running the file's code (--trust-code runs it)"
        )

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise OcrgraftError(f"{self.path}: unexpected record {kind!r} in the TorchScript file")
        raw = self.archive.read(f"{self.prefix}data/{key}")
        untyped = torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else torch.UntypedStorage(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TypedStorage is what _rebuild_tensor_v2 takes
            return torch.storage.TypedStorage(wrap_storage=untyped, dtype=storage_type.dtype, _internal=True)


def torchscript_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The named tensors (parameters and buffers) of a TorchScript file, read without running it."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
            if not data:
                raise OcrgraftError(f"{path}: a TorchScript file without data.pkl (damaged?)")
            root = _TorchScriptReader(archive, data[0][: -len("data.pkl")], path).load()
    except OcrgraftError:
        raise
    except Exception as exc:
        raise OcrgraftError(f"{path}: cannot read this TorchScript file: {_first_line(exc)}") from exc
    tensors: dict[str, torch.Tensor] = {}

    def walk(obj, prefix):
        for key, value in getattr(obj, "state", {}).items():
            if isinstance(value, torch.Tensor):
                tensors[prefix + key] = value.detach()
            elif isinstance(value, _ScriptObject):
                walk(value, f"{prefix}{key}.")

    walk(root, "")
    return tensors


def _read_checkpoint(path: Path) -> tuple[dict, str]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        if "Unsupported global" in text:  # weights_only refuses classes: a pickled model object
            raise OcrgraftError(
                f"{path} holds pickled Python objects (e.g. a whole model saved with torch.save(model)), "
                "which are not loaded because unpickling runs code; save the state_dict instead: "
                "torch.save(model.state_dict(), 'weights.pth')"
            ) from exc
        hint = "; convert .onnx files with --onnx FILE" if path.suffix.lower() == ".onnx" else ""
        why = re.search(r"WeightsUnpickler error:\s*(.+)", text)  # the unpickler's reason, without the advice
        why = why.group(1).strip() if why else f"{type(exc).__name__}: {_first_line(exc)}"
        raise OcrgraftError(f"{path} is not a PyTorch checkpoint ({why}){hint}") from exc
    if _is_state_dict(obj):
        return dict(obj), "state_dict"
    if isinstance(obj, dict):
        for key in CHECKPOINT_KEYS:
            if key in obj and _is_state_dict(obj[key]):
                return dict(obj[key]), f"checkpoint['{key}']"
        keys = ", ".join(map(str, list(obj)[:8]))
        raise OcrgraftError(
            f"{path}: a dict without a state_dict: expected tensors, or one of the keys "
            f"{', '.join(CHECKPOINT_KEYS)} holding them; found keys: {keys}"
        )
    raise OcrgraftError(f"{path}: holds a {type(obj).__name__}, not a state_dict or checkpoint dict")


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _check_fit(model: nn.Module, state: dict, path: Path, arch: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {fmt_dims(state[k].shape)} vs {fmt_dims(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    for what, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("shape mismatch (file vs model)", shapes),
    ):
        if items:
            more = f", … {len(items) - 3} more" if len(items) > 3 else ""
            parts.append(f"{len(items)} {what}: {', '.join(items[:3])}{more}")
    raise OcrgraftError(
        f"weights {path.name} do not fit zoo architecture '{arch}' "
        f"({len(state)} tensors in the file, {len(own)} in the model): {'; '.join(parts)}"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


# -- export ---------------------------------------------------------------------------------------


@dataclass
class DynamicDim:
    input: str
    axis: int
    name: str
    lo: int
    hi: int
    multiple: int = 1


def dynamic_dims(shapes: ShapeSet, names: list[str], multiples: dict[str, int]) -> list[DynamicDim]:
    """Dims whose min and max differ, named after the recipe's dim names (batch, height, width...)."""
    out = []
    for inp, cases in shapes.shapes.items():
        for axis in range(len(cases[0])):
            lo, hi = min(s[axis] for s in cases), max(s[axis] for s in cases)
            if lo != hi:
                name = names[axis] if axis < len(names) else f"{inp}_{axis}"
                out.append(DynamicDim(inp, axis, name, lo, hi, int(multiples.get(name, 1))))
    return out


def example_shapes(shapes: ShapeSet, dyn: list[DynamicDim]) -> dict[str, tuple[int, ...]]:
    """The opt shapes, with a dynamic batch of at least 2: the torch.export-based exporter silently
    fixes a dim whose example value is 1."""
    ex = {k: list(v) for k, v in shapes.opt().items()}
    for d in dyn:
        if ex[d.input][d.axis] == 1:
            ex[d.input][d.axis] = 2 if d.hi >= 2 else 1
    return {k: tuple(v) for k, v in ex.items()}


def probe_shapes(example: dict, dyn: list[DynamicDim]) -> dict[str, tuple[int, ...]]:
    """A second shape in which every dynamic dim differs from the example (min where it can)."""
    probe = {k: list(v) for k, v in example.items()}
    for d in dyn:
        probe[d.input][d.axis] = d.lo if d.lo != example[d.input][d.axis] else d.hi
    return {k: tuple(v) for k, v in probe.items()}


def export_onnx(
    model: nn.Module,
    *,
    exporter: str,
    opset: int,
    example: dict[str, tuple[int, ...]],
    dyn: list[DynamicDim],
    outputs: list[str],
    output_axes: dict[str, dict[int, str]],
) -> ir.Model:
    """Export with one of the two exporters into one self-contained in-memory model."""
    args = tuple(torch.from_numpy(v) for v in _inputs(example, seed=1).values())
    names = list(example)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            if exporter == "torchscript":
                axes = {n: {d.axis: d.name for d in dyn if d.input == n} for n in names}
                axes.update(output_axes)
                f = io.BytesIO()
                torch.onnx.export(
                    model,
                    args,
                    f,
                    dynamo=False,
                    opset_version=opset,
                    input_names=names,
                    output_names=outputs,
                    dynamic_axes={k: v for k, v in axes.items() if v},
                )
                proto = onnx.load_from_string(f.getvalue())
            else:
                from torch.export import Dim

                spec = {n: {} for n in names}
                for d in dyn:
                    if d.multiple > 1:
                        spec[d.input][d.axis] = d.multiple * Dim(
                            f"{d.name}_{d.multiple}", min=math.ceil(d.lo / d.multiple), max=d.hi // d.multiple
                        )
                    else:
                        spec[d.input][d.axis] = Dim(d.name, min=d.lo, max=d.hi)
                program = torch.onnx.export(
                    model,
                    args,
                    dynamo=True,
                    opset_version=max(opset, DYNAMO_MIN_OPSET),
                    input_names=names,
                    output_names=outputs,
                    external_data=False,
                    dynamic_shapes=tuple(spec[n] or None for n in names),
                    verbose=False,
                    optimize=not has_rnn(model),
                )
                proto = program.model_proto
    except OcrgraftError:
        raise
    except Exception as exc:
        other = EXPORTERS[1 - EXPORTERS.index(exporter)]
        raise OcrgraftError(
            f"the {exporter} exporter failed: {_export_error(exc)} (try --exporter {other})"
        ) from exc
    finally:
        quiet.setLevel(level)
    return ir.serde.deserialize_model(proto)


def has_rnn(model: nn.Module) -> bool:
    """torch.export gives an RNN's output a static sequence length, and the exporter's own optimizer
    folds shape arithmetic from it, baking the example width in; its optimizer stays off for these
    (the pipeline's folding re-derives shapes from the graph)."""
    return any(isinstance(m, nn.RNNBase) for m in model.modules())


def _export_error(exc: BaseException) -> str:
    """torch.onnx wraps the real error in pages of advice; its 'Exception summary' names it."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = text.splitlines()
    if "## Exception summary" in lines:
        rest = [ln for ln in lines[lines.index("## Exception summary") + 1 :] if ln.strip()]
        if rest:
            return rest[0].strip()[:400]
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _inputs(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """The pipeline's random, non-zero float inputs at these shapes."""
    values = [ir.Value(name=k, type=ir.TensorType(ir.DataType.FLOAT)) for k in shapes]
    return random_inputs(values, shapes, seed=seed)


def check_dims(
    onnx_model: ir.Model,
    exporter: str,
    dyn: list[DynamicDim],
    output_axes: dict[str, dict[int, str]],
    torch_probe: dict[str, np.ndarray],
    probe: dict[str, tuple[int, ...]],
) -> list[str]:
    """Refuse inputs whose dynamic dims were fixed; name the outputs' dynamic dims, and where the
    exporter declared one static, confirm in ONNX Runtime at the probe shape that it really follows
    the input before replacing the stale declaration. Returns notes."""
    from ocrgraft.core.runner import Runner

    inputs = {v.name: v for v in onnx_model.graph.inputs}
    for d in dyn:
        dim = inputs[d.input].shape[d.axis] if inputs[d.input].shape is not None else None
        if isinstance(dim, int):
            raise OcrgraftError(
                f"the {exporter} exporter fixed input '{d.input}' dim {d.axis} ({d.name}) at {dim}, "
                f"though the range is {d.lo}..{d.hi}; a model that runs at one size only is not shipped"
            )
        dims = list(inputs[d.input].shape)
        dims[d.axis] = ir.SymbolicDim(d.name)
        inputs[d.input].shape = ir.Shape(dims)
    stale = []
    for value in onnx_model.graph.outputs:
        dims = list(value.shape) if value.shape is not None else [None] * torch_probe[value.name].ndim
        for axis, name in output_axes.get(value.name, {}).items():
            if isinstance(dims[axis], int):
                stale.append(f"'{value.name}' dim {axis} as {dims[axis]}")
            dims[axis] = ir.SymbolicDim(name)
        value.shape = ir.Shape(dims)
    try:
        got = Runner(onnx_model, what=f"the {exporter}-exported model").run(_inputs(probe, seed=2))
    except OcrgraftError as exc:
        raise OcrgraftError(f"the {exporter} exporter baked the example size into the graph: {exc}") from exc
    for name, ref in torch_probe.items():
        if got[name].shape != ref.shape:
            raise OcrgraftError(
                f"the {exporter} exporter fixed a dim of output '{name}': at input "
                f"{'; '.join(fmt_dims(s) for s in probe.values())} ONNX Runtime gives "
                f"{fmt_dims(got[name].shape)}, torch {fmt_dims(ref.shape)}"
            )
    if not stale:
        return []
    return [
        f"the {exporter} exporter declared {', '.join(stale)} although it follows the input; "
        f"ONNX Runtime gives torch's shapes at {'; '.join(fmt_dims(s) for s in probe.values())}, "
        "so the declaration was made dynamic"
    ]


def output_dynamic_axes(
    model: nn.Module, outputs: list[str], example: dict, probe: dict, dyn: list[DynamicDim]
) -> tuple[dict[str, dict[int, str]], dict[str, np.ndarray]]:
    """Which output dims follow the input (they differ between the example and the probe in torch),
    named after the input dim they equal, else '<output>_<axis>'; plus torch's outputs at the probe."""
    at_ex = _run_torch(model, outputs, _inputs(example, seed=1))
    at_probe = _run_torch(model, outputs, _inputs(probe, seed=2))
    axes = {}
    for name in outputs:
        a, b = at_ex[name].shape, at_probe[name].shape
        named = {}
        for axis in range(len(a)):
            if a[axis] != b[axis]:
                same = [
                    d.name
                    for d in dyn
                    if example[d.input][d.axis] == a[axis] and probe[d.input][d.axis] == b[axis]
                ]
                named[axis] = same[0] if same else f"{name}_{axis}"
        axes[name] = named
    return axes, at_probe


def _run_torch(model: nn.Module, outputs: list[str], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    try:
        with torch.inference_mode():
            result = model(*(torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values()))
    except (RuntimeError, ValueError, IndexError) as exc:  # e.g. an input shape the layers cannot take
        at = ", ".join(f"{k}={fmt_dims(v.shape)}" for k, v in feeds.items())
        raise OcrgraftError(f"the model fails in torch at {at}: {_first_line(exc)}") from exc
    result = result if isinstance(result, (tuple, list)) else (result,)
    if len(result) != len(outputs):
        raise OcrgraftError(
            f"the model returns {len(result)} outputs but the recipe names {len(outputs)}: "
            f"{', '.join(outputs)}"
        )
    return {n: r.detach().numpy() for n, r in zip(outputs, result)}


# -- the frontend ---------------------------------------------------------------------------------


def load_source(
    recipe: Recipe,
    *,
    target: str = "ort",
    weights: str | Path | None = None,
    exporter: str | None = None,
    shapes: ShapeSet | None = None,
    trust_code: bool = False,
    progress=lambda message: None,
) -> Source:
    """Build, load, rewrite and export the recipe's torch model; `shapes` may widen the recipe's range.
    `progress` hears when the export (seconds to minutes) starts."""
    opts = recipe.options.get("torch", {})
    arch = recipe.source or recipe.name
    exporter = exporter or opts.get("exporter", "torchscript")
    if exporter not in EXPORTERS:
        raise OcrgraftError(f"unknown exporter '{exporter}' (known: {', '.join(EXPORTERS)})")
    model = models.build(arch, **opts.get("args", {}))
    notes = []
    if weights:
        loaded, jit = load_weights(model, weights, arch, trust_code)
        notes.append(f"weights: {loaded}")
        if jit is not None:
            notes.append(
                f"{Path(weights).name} is code (TorchScript) and was run because --trust-code was given"
            )
            notes += _compare_with_torchscript(model, jit, recipe, arch)
        elif "TorchScript" in loaded:
            notes.append(
                f"{Path(weights).name} is TorchScript, i.e. code: only its tensors were read and it was not "
                "run, so its own graph was not compared with the zoo model (--trust-code runs it)"
            )
    else:
        notes.append(
            f"no --weights given: '{arch}' has a fixed-seed random initialization (seed {models.SEED}); "
            "the conversion is checked, but the outputs mean nothing"
        )

    effective = shapes or recipe.shapes
    if not effective:
        raise OcrgraftError(f"recipe '{recipe.name}' declares no [inputs.*] shapes")
    outputs = list(opts.get("outputs", ["output"]))
    dyn = dynamic_dims(
        _union(recipe.shapes, shapes),
        list(opts.get("dim_names", ["batch", "channels", "height", "width"])),
        dict(opts.get("multiple_of", {})),
    )
    example = example_shapes(effective, dyn)
    progress(
        f"exporting {recipe.name} with the {exporter} exporter (and running it in torch as the reference)"
    )
    with busy("    export running", line=False):
        probe = probe_shapes(example, dyn)
        try:
            output_axes, torch_probe = output_dynamic_axes(model, outputs, example, probe, dyn)
        except OcrgraftError as exc:
            if not shapes:
                raise
            raise OcrgraftError(
                f"{exc} (--shapes {shapes.describe()}; the recipe's: {recipe.shapes.describe()})"
            ) from exc

        rewritten, rewrite_notes = apply_rewrites(model, target, exporter)
        opset = int(opts.get("opset", DEFAULT_OPSET))
        onnx_model = export_onnx(
            rewritten,
            exporter=exporter,
            opset=opset,
            example=example,
            dyn=dyn,
            outputs=outputs,
            output_axes=output_axes,
        )
    got_opset = onnx_model.opset_imports.get("", opset)
    notes.append(
        f"exported with the {exporter} exporter at opset {got_opset}, example input "
        f"{'; '.join(f'{k}={fmt_dims(s)}' for k, s in example.items())}; dynamic: "
        f"{', '.join(f'{d.input}.{d.axis} {d.name} {d.lo}..{d.hi}' for d in dyn) or 'none'}"
    )
    notes += rewrite_notes
    if exporter == "dynamo":
        if has_rnn(rewritten):
            notes.append(
                "the dynamo exporter's optimizer was off: it folds shapes from torch.export's static "
                "LSTM sequence length and so fixes the width; the pipeline's passes fold instead"
            )
        for node in onnx_model.graph:  # value annotations are redone by shape inference;
            for v in node.outputs:  # torch.export's can hold stale static sizes (LSTM)
                if v not in onnx_model.graph.outputs:
                    v.shape = None
    notes += check_dims(onnx_model, exporter, dyn, output_axes, torch_probe, probe)

    def reference(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return _run_torch(model, outputs, {k: feeds[k] for k in example})

    cls = type(model)
    return Source(
        name=recipe.name,
        framework="torch",
        model=onnx_model,
        reference=reference,
        location=f"zoo:{arch} ({cls.__module__}.{cls.__name__})"
        + (f", weights {Path(weights).name}" if weights else ", random init"),
        notes=notes,
    )


def _union(a: ShapeSet, b: ShapeSet | None) -> ShapeSet:
    """Every shape of the recipe and of --shapes: a dim is dynamic, and its range spans, over both."""
    if not b:
        return a
    return ShapeSet(
        {k: list(a.shapes.get(k, [])) + list(b.shapes.get(k, [])) for k in {**a.shapes, **b.shapes}}
    )


def _compare_with_torchscript(model: nn.Module, jit, recipe: Recipe, arch: str) -> list[str]:
    """The TorchScript file is the real source: the zoo model with its weights must compute the same."""
    shape = {k: (1,) + tuple(s[1:]) for k, s in recipe.shapes.opt().items()}
    feeds = {k: torch.from_numpy(v) for k, v in _inputs(shape, seed=3).items()}
    try:
        with torch.inference_mode():
            want = jit(*feeds.values())
    except Exception as exc:
        return [
            f"the TorchScript module could not run at {fmt_dims(next(iter(shape.values())))} "
            f"({_first_line(exc)}); its outputs were not compared with the zoo model"
        ]
    with torch.inference_mode():
        got = model(*feeds.values())
    want = want[0] if isinstance(want, (tuple, list)) else want
    got = got[0] if isinstance(got, (tuple, list)) else got
    if tuple(want.shape) != tuple(got.shape) or not torch.allclose(got, want, atol=1e-4, rtol=1e-3):
        err = (got - want).abs().max().item() if want.shape == got.shape else float("inf")
        raise OcrgraftError(
            f"the TorchScript file's weights load into '{arch}', but its own graph computes "
            f"something else (max abs err {err:.3g}): not the same architecture"
        )
    return [
        f"the TorchScript module and the zoo '{arch}' with its weights agree at "
        f"{fmt_dims(next(iter(shape.values())))} (atol 1e-4)"
    ]
