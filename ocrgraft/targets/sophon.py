"""Sophgo Sophon BModels with TPU-MLIR, built here and run on TPU-MLIR's chip simulator.

The flow per batch size (one BModel each, as the LPRNet seed ships lprnet_fp32_1b / _4b):

    model_transform  model.onnx -> <name>_<b>b.mlir          (Top MLIR at fixed shapes, mean/scale recorded)
    run_calibration  <name>_<b>b.mlir -> cali table            (INT8 only: random inputs like the test inputs,
                                                                or the user's --calib folder)
    model_deploy     mlir -> <CHIP>/<name>_<q>_<b>b.bmodel     (F32 / F16 / BF16 / INT8)
    model_runner     the BModel on the cmodel simulator        (per comparison input)

TPU-MLIR's own checks (--test_input / --test_reference) are not used: its npz compare matches tensors
by name and reports PASSED with zero tensors compared when the names differ (the BModel names its
output `logits_Gemm` where ONNX says `logits`). ocrgraft compares the simulator's outputs with ONNX
Runtime itself, matched by name and count, and refuses to call a comparison of nothing a pass.

Recipe table (all keys optional):

    [sophon]
    batch = [1, 4]               # one BModel per batch size (default [1])
    shape = { x = [3, 24, 94] }  # dims after the batch, per input (default: the recipe's opt shape)
    chip = "bm1684x"             # bm1684x | bm1684 (the CLI's --chip wins)
    quantize = "F32"             # F32 | F16 | BF16 | INT8 (the CLI's --quantize wins)
    calibration = 8              # INT8: how many calibration inputs (made, or taken from --calib DIR)
    mean = [127.5, 127.5, 127.5] # TPU-MLIR's (x - mean) * scale on 0..255 pixels; default: from [preprocess]
    scale = [0.0078125, 0.0078125, 0.0078125]
    pixel_format = "rgb"         # rgb | bgr | gray; default: [preprocess] color
    int8_min_cosine = 0.98       # pass thresholds per precision: <f32|f16|bf16|int8>_min_cosine,
    int8_min_euclid = 0.85       # _min_euclid, _max_error (max abs error over max |reference|)
    int8_min_text = 0.9          # and _min_text: share of samples whose decoded text equals ONNX Runtime's
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from ocrgraft.core.compare import similarity, text_agreement
from ocrgraft.core.errors import OcrgraftError, VerificationError
from ocrgraft.core.images import IMAGE_SUFFIXES, PIXEL_SCALE, Preprocess, calibration_inputs
from ocrgraft.core.modelio import load
from ocrgraft.core.precision import PRECISION_FILE, read_keep_list
from ocrgraft.core.progress import say
from ocrgraft.core.runner import Runner
from ocrgraft.core.safeload import plain_arrays
from ocrgraft.core.shapes import fmt_dims, random_inputs
from ocrgraft.targets import tpu_mlir_env
from ocrgraft.targets.base import Artifact, BuildContext, BuildResult, SupportCheck, Target, TargetOption
from ocrgraft.targets.sophon_layers import LAYERS, bisect_bmodel
from ocrgraft.targets.sophon_search import nodes_with_layers, quantize_table, search
from ocrgraft.targets.sophon_simulator import simulate

# The ONNX op types TPU-MLIR 1.30.2 converts: the keys of OnnxConverter.onnxop_factory in
# tpu_mlir/python/transform/OnnxConverter.py of the `tpu-mlir==1.30.2` wheel (129 entries).
# model_transform stops with "Op not support:{...}" on any other op type; ocrgraft says so first.
# tests/test_sophon.py checks this table against the installed toolchain's converter.
TPU_MLIR_ONNX_OPS = frozenset(
    """
Abs Acos AdaptiveAvgPool Add And ArgMax ArgMin Atan Atanh AveragePool BatchNormalization Cast Ceil Clip
Concat ConcatVolume Constant ConstantOfShape Conv ConvBwd_Weight ConvTranspose Correlation Cos Cosh CumSum
DepthToSpace DequantizeLinear Div DivConst Dropout Einsum Elu Equal Erf Exp Expand Flatten Floor GELU GRU
Gather GatherElements GatherND Gemm GlobalAveragePool GlobalMaxPool Greater GreaterOrEqual GridSample
GroupNormalization HardSigmoid HardSwish Identity If InstanceNormalization LRN LSTM LayerNormalization
LeakyRelu Less LessOrEqual Log LogSoftmax Loop MatMul Max MaxPool MeanStdScale Min Mod Mul Neg Nms
NonMaxSuppression NonZero Not OneHot Or PRelu Pad PixelNormalization Pow QuantizeLinear RandomNormalLike
Range Reciprocal ReduceL1 ReduceL2 ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum Relu
Reshape Resize ReverseSequence RoiAlign Round Rsqrt ScatterElements ScatterND SelectiveScan Shape Sigmoid
Sign Sin Sinh Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh Tile TopK
Transpose Trilu Unsqueeze Upsample Where Xor
""".split()
)
TABLE = f"TPU-MLIR {tpu_mlir_env.TPU_MLIR_VERSION} ONNX converter ({len(TPU_MLIR_ONNX_OPS)} op types)"
MAX_OPSET = 19  # the toolchain's onnx 1.14.1 / onnxruntime 1.16.3 read up to opset 19, IR version 9
MAX_IR_VERSION = 9

# Precisions per chip. BM1684 has no half-precision units: an F16/BF16 deploy aborts in lowering
# ("Not Implemented", TopLowering.h), so ocrgraft refuses it up front.
CHIPS = {"bm1684x": ("F32", "F16", "BF16", "INT8"), "bm1684": ("F32", "INT8")}
FILE_TAG = {"F32": "fp32", "F16": "fp16", "BF16": "bf16", "INT8": "int8"}
# BM1684's INT8 pooling engine takes strides below 16 only (atomic_pooling_fix8b_gen_cmd.c asserts
# stride_h < 1<<4): the deploy aborts deep inside the code generator.
BM1684_INT8_MAX_POOL_STRIDE = 15

# How close the simulated BModel must be to ONNX Runtime, per precision; the recipe may override.
THRESHOLDS = {
    "F32": {"min_cosine": 0.99999, "min_euclid": 0.999, "max_error": 1e-4, "min_text": None},
    "F16": {"min_cosine": 0.999, "min_euclid": 0.97, "max_error": 1e-2, "min_text": None},
    "BF16": {"min_cosine": 0.995, "min_euclid": 0.9, "max_error": 5e-2, "min_text": None},
    "INT8": {"min_cosine": 0.95, "min_euclid": 0.7, "max_error": None, "min_text": None},
}
SAMPLES_PER_BATCH = 2
DEFAULT_MIN_AGREEMENT = 0.99  # INT8 precision search: share of images reading like the float model
SEARCH_IMAGES = 50  # at most, from a --calib folder (--images gives its own, --limit trims them)
BMODELS = "bmodels.json"  # in sophon/: what was built, at which shapes, for accuracy runs
PROFILE = "compiler_profile_0.txt"  # model_deploy's cycle count of the program it just compiled
CALIB_IMAGE_EXT = (*IMAGE_SUFFIXES, ".jfif")  # what TPU-MLIR reads as images


# ------------------------------------------------------------------------------------------ the plan


@dataclass
class Plan:
    """Everything the build does, decided (and checked) before any tool runs."""

    name: str
    chip: str
    quantize: str
    batches: list[int]
    shapes: dict[int, dict[str, tuple[int, ...]]]  # batch -> input -> full shape
    inputs: list[str]
    mean: list[float] | None = None
    scale: list[float] | None = None
    pixel_format: str | None = None
    calibration: int = 8
    calib_dir: Path | None = None
    thresholds: dict = field(default_factory=dict)
    quantize_table: str | None = None  # INT8: layers kept in F32 (file in the work folder)
    calib_images: bool = False  # --calib holds images, preprocessed by ocrgraft as the recipe says
    judged_on_images: bool = False  # INT8: the precision search reached its goal on real images

    @property
    def interpretable(self) -> bool:
        """Whether TPU-MLIR 1.30.2's interpreter runs this build's lowered program (the layer comparison
        and the precision search need it): not bm1684's INT8, on which it exits or crashes."""
        return not (self.chip == "bm1684" and self.quantize == "INT8")

    def mlir(self, b: int) -> str:
        return f"{self.name}_{b}b.mlir"

    def cali_table(self, b: int) -> str:
        return f"{self.name}_{b}b_cali_table"

    def calib_dataset(self, b: int) -> str:
        """Calibration inputs: the user's arrays as given; images ocrgraft preprocessed (calib_<b>b/)."""
        return str(self.calib_dir) if self.calib_dir and not self.calib_images else f"calib_{b}b"

    def bmodel(self, b: int) -> str:
        return f"{self.chip.upper()}/{self.name}_{FILE_TAG[self.quantize]}_{b}b.bmodel"

    def transform(self, b: int) -> list[str]:
        shapes = "[" + ",".join("[" + ",".join(map(str, self.shapes[b][n])) + "]" for n in self.inputs) + "]"
        args = [
            "model_transform",
            "--model_name",
            f"{self.name}_{b}b",
            "--model_def",
            "model.onnx",
            "--input_shapes",
            shapes,
        ]
        if self.mean is not None:
            args += [
                "--mean",
                ",".join(_num(v) for v in self.mean),
                "--scale",
                ",".join(_num(v) for v in self.scale),
            ]
        if self.pixel_format:
            args += ["--pixel_format", self.pixel_format]
        return args + ["--mlir", self.mlir(b)]

    def calibrate(self, b: int) -> list[str]:
        return [
            "run_calibration",
            self.mlir(b),
            "--dataset",
            self.calib_dataset(b),
            "--input_num",
            str(self.calibration),
            "-o",
            self.cali_table(b),
        ]

    def deploy(self, b: int) -> list[str]:
        args = ["model_deploy", "--mlir", self.mlir(b), "--quantize", self.quantize, "--chip", self.chip]
        if self.quantize == "INT8":
            args += ["--calibration_table", self.cali_table(b)]
            if self.quantize_table:
                args += ["--quantize_table", self.quantize_table]
        return args + ["--model", self.bmodel(b)]

    def info(self, b: int) -> list[str]:
        return ["model_tool", "--info", self.bmodel(b)]

    def run(self, b: int, i: int) -> list[str]:
        return [
            "model_runner",
            "--input",
            f"inputs/{self.name}_{b}b_{i}.npz",
            "--model",
            self.bmodel(b),
            "--output",
            f"outputs/{self.name}_{b}b_{i}.npz",
        ]

    def steps(self) -> list[list[str]]:
        """Every tool run, in order; paths are relative to the work folder `sophon/`."""
        out = []
        for b in self.batches:
            out.append(self.transform(b))
            if self.quantize == "INT8":
                out.append(self.calibrate(b))
            out += [self.deploy(b), self.info(b)] + [self.run(b, i) for i in range(SAMPLES_PER_BATCH)]
        return out

    def script(self, venv: Path) -> str:
        lines = [
            "#!/usr/bin/env bash",
            f"# {self.name}: Sophon {self.chip} {self.quantize} BModels with TPU-MLIR "
            f"{tpu_mlir_env.TPU_MLIR_VERSION}, as ocrgraft ran them.",
            "# Batch sizes: " + ", ".join(map(str, self.batches)) + ". Run from anywhere; paths are relative "
            "to the sophon/ folder next to this script.",
            "# model_runner runs each BModel on TPU-MLIR's cmodel simulator; ocrgraft compared its outputs "
            "(sophon/outputs/) with ONNX Runtime.",
            "set -euo pipefail",
            f'export PATH="${{TPU_MLIR_VENV:-{venv}}}/bin:$PATH"',
            'cd "$(dirname "$0")/sophon"',
            f"mkdir -p outputs {self.chip.upper()}",
        ]
        if self.quantize == "INT8":
            lines.append(
                "# calibration inputs: "
                + (
                    f"the folder {self.calib_dir}"
                    if self.calib_dir
                    else "calib_<b>b/*.npz, random inputs drawn like the recipe's test inputs"
                )
            )
        return "\n".join(lines) + "\n" + self.commands() + "\n"

    def commands(self) -> str:
        return "\n".join(shlex.join(argv) for argv in self.steps())


def _num(v: float) -> str:
    return f"{v:.8g}"


def _floats(value, what: str) -> list[float]:
    vals = value if isinstance(value, (list, tuple)) else [value]
    try:
        return [float(v) for v in vals]
    except (TypeError, ValueError):
        raise OcrgraftError(f"[sophon] {what} must be a number or a list of numbers, got {value!r}") from None


def make_plan(ctx: BuildContext) -> Plan:
    """Read the [sophon] table, the CLI options and the model into a checked Plan."""
    table = dict(ctx.settings.get("sophon", {}))
    known = {"batch", "shape", "chip", "quantize", "calibration", "mean", "scale", "pixel_format"}
    known |= {f"{q.lower()}_{k}" for q in THRESHOLDS for k in THRESHOLDS[q]}
    unknown = sorted(set(table) - known)
    if unknown:
        raise OcrgraftError(
            f"recipe '{ctx.name}': unknown key(s) in [sophon]: {', '.join(unknown)} (known: "
            "batch, shape, chip, quantize, calibration, mean, scale, pixel_format, "
            "<f32|f16|bf16|int8>_<min_cosine|min_euclid|max_error|min_text>)"
        )
    chip = str(ctx.options.get("chip") or table.get("chip") or "bm1684x").lower()
    if chip not in CHIPS:
        raise OcrgraftError(f"sophon: unknown chip '{chip}' (supported: {', '.join(CHIPS)})")
    quantize = str(ctx.options.get("quantize") or table.get("quantize") or "F32").upper()
    if quantize not in THRESHOLDS:
        raise OcrgraftError(f"sophon: unknown quantization '{quantize}' (supported: {', '.join(THRESHOLDS)})")
    if quantize not in CHIPS[chip]:
        raise OcrgraftError(
            f"sophon: {chip} has no {quantize}: BM1684 has no half-precision units "
            f"(TPU-MLIR aborts lowering with 'Not Implemented'); use {' or '.join(CHIPS[chip])}, "
            f"or --chip bm1684x for {quantize}"
        )

    model = onnx.load(str(ctx.model_path), load_external_data=False)
    init = {i.name for i in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in init]
    names = [i.name for i in graph_inputs]
    batches = table.get("batch", [1])
    if ctx.options.get("batch"):  # --batch 1,4 over the recipe's [sophon] batch
        batches = [int(b) for b in str(ctx.options["batch"]).split(",")]
    batches = batches if isinstance(batches, list) else [batches]
    if not batches or not all(isinstance(b, int) and b >= 1 for b in batches):
        raise OcrgraftError(
            f"[sophon] batch must be a positive integer or a list of them, got {table.get('batch')!r}"
        )
    batches = list(dict.fromkeys(batches))
    given = table.get("shape", {})
    unknown_inputs = sorted(set(given) - set(names))
    if unknown_inputs:
        raise OcrgraftError(
            f"[sophon] shape names input(s) {', '.join(unknown_inputs)}; the model's inputs are "
            f"{', '.join(names)}"
        )
    opt = ctx.shapes.opt() if ctx.shapes else {}
    shapes: dict[int, dict[str, tuple[int, ...]]] = {b: {} for b in batches}
    for vi in graph_inputs:
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        if vi.name in given:
            rest = tuple(given[vi.name]) if isinstance(given[vi.name], list) else ()
            if not rest or not all(isinstance(v, int) and v > 0 for v in rest):
                raise OcrgraftError(
                    f"[sophon] shape for '{vi.name}' must list the dims after the batch, e.g. "
                    f"[3, 24, 94]; got {given[vi.name]!r}"
                )
        elif vi.name in opt:
            rest = tuple(opt[vi.name][1:])
        elif dims and all(d is not None for d in dims[1:]):
            rest = tuple(dims[1:])
        else:
            raise OcrgraftError(
                f"sophon: input '{vi.name}' has open dims and no shape; add "
                f"[sophon] shape = {{ {vi.name} = [...] }} or --shapes"
            )
        if len(rest) + 1 != len(dims):
            raise OcrgraftError(
                f"[sophon] shape for '{vi.name}' gives {len(rest)} dims after the batch; the input "
                f"has rank {len(dims)}"
            )
        for i, (want, have) in enumerate(zip(rest, dims[1:]), 1):
            if have is not None and have != want:
                raise OcrgraftError(
                    f"sophon: input '{vi.name}' dim {i} is fixed at {have}, the shape gives {want}"
                )
        for b in batches:
            if dims and dims[0] is not None and dims[0] != b:
                raise OcrgraftError(
                    f"sophon: input '{vi.name}' has a fixed batch of {dims[0]}; [sophon] batch asks for {b}"
                )
            shapes[b][vi.name] = (b, *rest)

    mean, scale, fmt = _normalization(table, ctx.settings.get("preprocess"))
    calib_dir = None
    if ctx.options.get("calib"):
        if quantize != "INT8":
            raise OcrgraftError(
                f"--calib applies to INT8 builds; this build is {quantize} (add --quantize INT8)"
            )
        calib_dir = _check_calib_dir(Path(ctx.options["calib"]), mean is not None)
    if quantize != "INT8" and (ctx.options.get("min_agreement") or ctx.options.get("keep")):
        raise OcrgraftError(f"--min-agreement and --keep apply to INT8 builds; this build is {quantize}")
    calibration = table.get("calibration", 8)
    if not isinstance(calibration, int) or calibration < 1:
        raise OcrgraftError(f"[sophon] calibration must be a positive integer, got {calibration!r}")
    calib_images = False
    if calib_dir is not None:  # every input the user gave (run_calibration would pick `calibration` of them)
        calibration = _calib_count(calib_dir)
        calib_images = ctx.settings.get("preprocess") is not None and any(
            p.suffix.lower() in CALIB_IMAGE_EXT for p in calib_dir.rglob("*")
        )
    thresholds = dict(THRESHOLDS[quantize])
    for k in thresholds:
        key = f"{quantize.lower()}_{k}"
        if key in table:
            thresholds[k] = _floats(table[key], key)[0]
    return Plan(
        name=re.sub(r"[^A-Za-z0-9_]+", "_", ctx.name),
        chip=chip,
        quantize=quantize,
        batches=batches,
        shapes=shapes,
        inputs=names,
        mean=mean,
        scale=scale,
        pixel_format=fmt,
        calibration=calibration,
        calib_dir=calib_dir,
        thresholds=thresholds,
        calib_images=calib_images,
    )


def _normalization(
    table: dict, pre: dict | None
) -> tuple[list[float] | None, list[float] | None, str | None]:
    """TPU-MLIR's (pixel - mean) * scale, from [sophon] or derived from [preprocess]'s (x/s - mean) / std."""
    formats = {"rgb": "rgb", "bgr": "bgr", "gray": "gray", "grey": "gray"}
    fmt = table.get("pixel_format") or (pre or {}).get("color")
    if fmt is not None and str(fmt).lower() not in formats:
        raise OcrgraftError(f"sophon: pixel format '{fmt}' is not one of rgb, bgr, gray")
    fmt = formats[str(fmt).lower()] if fmt else None
    if "mean" in table or "scale" in table:
        if "mean" not in table or "scale" not in table:
            raise OcrgraftError(
                "[sophon] needs both mean and scale (or neither, to derive them from [preprocess])"
            )
        mean, scale = _floats(table["mean"], "mean"), _floats(table["scale"], "scale")
    elif pre and "mean" in pre and "std" in pre:
        s = float(pre.get("scale", PIXEL_SCALE))  # the same default as the images' own preprocessing
        mean = [m * s for m in _floats(pre["mean"], "preprocess mean")]
        std = _floats(pre["std"], "preprocess std")
        if any(v == 0 for v in std):
            raise OcrgraftError("[preprocess] std must not be 0")
        scale = [1.0 / (v * s) for v in std]
    else:
        return None, None, fmt
    n = max(len(mean), len(scale))
    if len(mean) not in (1, n) or len(scale) not in (1, n):
        raise OcrgraftError(f"sophon: mean ({len(mean)} values) and scale ({len(scale)} values) disagree")
    return mean * (n // len(mean)), scale * (n // len(scale)), fmt


def _calib_count(path: Path) -> int:
    return sum(
        1 for p in path.rglob("*") if p.is_file() and p.suffix.lower() in CALIB_IMAGE_EXT + (".npy", ".npz")
    )


def _check_calib_dir(path: Path, has_norm: bool) -> Path:
    if not path.is_dir():
        raise OcrgraftError(f"--calib {path}: not a folder (give a folder of images, .npy or .npz inputs)")
    files = [p for p in path.rglob("*") if p.is_file()]
    kinds = {
        "image" if p.suffix.lower() in CALIB_IMAGE_EXT else p.suffix.lower()[1:]
        for p in files
        if p.suffix.lower() in CALIB_IMAGE_EXT + (".npy", ".npz")
    }
    if not kinds:
        raise OcrgraftError(f"--calib {path}: no images (.jpg/.png/.bmp), .npy or .npz files in it")
    if len(kinds) > 1:
        raise OcrgraftError(
            f"--calib {path}: mixes {', '.join(sorted(kinds))}; TPU-MLIR takes one kind per folder"
        )
    for f in files:  # TPU-MLIR np.loads these itself: an object array (a pickle) would run code there
        if f.suffix.lower() in (".npy", ".npz"):
            plain_arrays(f, "--calib")
    if kinds == {"image"} and not has_norm:
        raise OcrgraftError(
            f"--calib {path} holds images, but the recipe gives no normalization ([preprocess] mean/std "
            "or [sophon] mean/scale) to turn pixels into model inputs"
        )
    return path.resolve()


# ------------------------------------------------------------------------------------------ checks


def op_support(model: ir.Model) -> list[str]:
    """Ops (and opsets) TPU-MLIR's ONNX converter does not take, one 'Op: why' each."""
    bad: dict[str, str] = {}
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        if node.domain not in ("", "ai.onnx"):
            bad.setdefault(
                f"{node.domain}::{node.op_type}", "custom-domain op; TPU-MLIR converts standard ONNX ops only"
            )
        elif node.op_type not in TPU_MLIR_ONNX_OPS:
            bad.setdefault(
                node.op_type,
                "not in TPU-MLIR's ONNX op table (model_transform would stop with 'Op not support')",
            )
    opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 0))
    if opset > MAX_OPSET:
        bad[f"opset {opset}"] = (
            f"newer than TPU-MLIR's onnx 1.14 reads (<= {MAX_OPSET}); add "
            f"convert-opset(opset={MAX_OPSET}) to the passes"
        )
    return [f"{op}: {why}" for op, why in sorted(bad.items())]


def chip_limits(model_path: Path, plan: Plan) -> list[str]:
    """Known per-chip/precision limits that TPU-MLIR only reports deep in code generation."""
    problems = []
    if plan.chip == "bm1684" and plan.quantize == "INT8":
        model = onnx.load(str(model_path), load_external_data=False)
        for node in model.graph.node:
            if node.op_type in ("MaxPool", "AveragePool"):
                strides = next((list(a.ints) for a in node.attribute if a.name == "strides"), [])
                if any(s > BM1684_INT8_MAX_POOL_STRIDE for s in strides):
                    problems.append(
                        f"{node.op_type} '{node.name}' strides {strides}: BM1684's INT8 pooling takes "
                        f"strides up to {BM1684_INT8_MAX_POOL_STRIDE} (use F32 or bm1684x)"
                    )
    return problems


# ------------------------------------------------------------------------------------------ comparing


@dataclass
class OutputMatch:
    onnx: str
    bmodel: str
    by: str  # "name", "prefix" or "position"


def match_outputs(onnx_names: list[str], bmodel_names: list[str]) -> list[OutputMatch]:
    """Pair every ONNX output with a BModel output. TPU-MLIR names outputs '<onnx name>_<op type>'; a pair by
    position is used only when the counts agree. Fails rather than compare fewer outputs than ONNX has."""
    if not onnx_names:
        raise OcrgraftError("sophon: the ONNX model has no outputs to compare")
    if len(onnx_names) != len(bmodel_names):
        raise VerificationError(
            f"sophon: the BModel has {len(bmodel_names)} output(s) ({', '.join(bmodel_names)}), "
            f"ONNX has {len(onnx_names)} ({', '.join(onnx_names)})"
        )
    pairs, used = [], set()
    for name in onnx_names:
        if name in bmodel_names and name not in used:
            pairs.append(OutputMatch(name, name, "name"))
        else:
            cands = [
                b for b in bmodel_names if b.startswith(name + "_") and b not in used and b not in onnx_names
            ]
            if len(cands) != 1:
                break
            pairs.append(OutputMatch(name, cands[0], "prefix"))
        used.add(pairs[-1].bmodel)
    else:
        return pairs
    return [OutputMatch(o, b, "position") for o, b in zip(onnx_names, bmodel_names)]


# ------------------------------------------------------------------------------------------ the target


class SophonTarget(Target):
    name = "sophon"
    description = (
        f"Sophgo Sophon BModel (bm1684x, bm1684) with TPU-MLIR {tpu_mlir_env.TPU_MLIR_VERSION}, "
        "built here and run on its chip simulator"
    )
    passes = ("maxpool3d-to-2d", "legalize-gridsample")
    options = (
        TargetOption("chip", "the Sophon chip", tuple(CHIPS)),
        TargetOption(
            "batch",
            "BModel batch sizes, comma-separated (default: the recipe's)",
            pattern=r"[1-9]\d*(,[1-9]\d*)*",
        ),
        TargetOption("quantize", "precision of the BModel", tuple(THRESHOLDS)),
        TargetOption("calib", "INT8: a folder of calibration images, .npy or .npz inputs"),
        TargetOption(
            "min_agreement",
            "INT8 with images: the share reading like the float model that the precision search keeps",
            pattern=r"0|1|0?\.\d+|1\.0*",
            flag="--min-agreement",
        ),
        TargetOption("keep", "INT8: a precision.json whose ONNX nodes stay F32", flag="--keep"),
    )

    def max_opset(self) -> int | None:
        return MAX_OPSET

    def check_support(self, model: ir.Model) -> SupportCheck:
        return SupportCheck(table=TABLE, unsupported=op_support(model))

    def build(self, ctx: BuildContext) -> BuildResult:
        t0 = time.perf_counter()
        plan = make_plan(ctx)
        limits = chip_limits(ctx.model_path, plan)
        if limits:
            raise OcrgraftError(f"target sophon ({plan.chip} {plan.quantize}): " + "; ".join(limits))
        self.precision_note: str | None = None
        work = ctx.out_dir / "sophon"
        (work / "logs").mkdir(parents=True, exist_ok=True)
        for sub in ("inputs", "outputs", plan.chip.upper()):
            (work / sub).mkdir(exist_ok=True)
        _tool_model(ctx.model_path, work / "model.onnx")
        home = tpu_mlir_env.default_home()
        script = ctx.out_dir / "build_bmodel.sh"
        script.write_text(plan.script(home / "venv"))
        script.chmod(0o755)
        tc = tpu_mlir_env.ensure(progress=say)
        failed = ctx.out_dir.parent / f"{ctx.name}-sophon.failed"
        try:
            details = self._run(ctx, plan, tc, work)
        except OcrgraftError as exc:
            _keep_logs(work, script, failed)
            msg = str(exc).replace(str(work), str(failed))
            if str(failed) not in msg:
                msg += f" (logs kept in {failed})"
            raise type(exc)(msg) from exc
        shutil.rmtree(failed, ignore_errors=True)
        built = [
            {"file": plan.bmodel(b), "batch": b, "chip": plan.chip, "quantize": plan.quantize}
            | {"shapes": {k: list(v) for k, v in plan.shapes[b].items()}, "outputs": details["onnx_outputs"]}
            for b in plan.batches
        ]
        (work / BMODELS).write_text(json.dumps(built, indent=1) + "\n")  # for accuracy runs, later too
        details["seconds"] = round(time.perf_counter() - t0, 1)
        details["script"] = "build_bmodel.sh"
        if plan.quantize_table:  # found during the run: the script deploys with it too
            script.write_text(plan.script(home / "venv"))
        if self.precision_note:
            details["precision_search"] = self.precision_note
        artifacts = [f"sophon/{plan.bmodel(b)}" for b in plan.batches] + ["build_bmodel.sh"]
        command = (
            "# in sophon/, with TPU-MLIR's tools on PATH (build_bmodel.sh does both)\n" + plan.commands()
        )
        verified = (
            f"F32: every stage in ONNX Runtime; the {plan.quantize} BModels on TPU-MLIR's {plan.chip} "
            f"simulator against ONNX Runtime (cosine >= {details['min_cosine']:.6f})"
        )
        device = plan.quantize + (
            f", calibrated on {details['calibration']}" if details["calibration"] else ""
        )
        if self.precision_note:
            device += f"; {self.precision_note}"
            if (ctx.out_dir / PRECISION_FILE).exists():
                artifacts.append(PRECISION_FILE)
        return BuildResult(
            built=True,
            summary=details.pop("summary"),
            command=command,
            artifacts=artifacts,
            details=details,
            precision={"device": device, "verified": verified},
        )

    def next_steps(self, ctx: BuildContext, build: BuildResult) -> list[str]:
        bmodels = [a for a in build.artifacts if a.endswith(".bmodel")]
        return [
            "The BModels were built and run on TPU-MLIR's chip simulator here. On a Sophon device or PCIe "
            "card with libsophon: `bmrt_test --bmodel "
            + (bmodels[0] if bmodels else "<file>.bmodel")
            + "` loads and times it on the chip; `bash build_bmodel.sh` rebuilds every BModel with "
            "TPU-MLIR on PATH"
        ]

    def artifacts(self, out_dir: Path) -> list[Artifact]:
        """The smallest-batch BModel of a finished build, run on TPU-MLIR's chip simulator (one
        share of inputs per process, as many at once as there are cores, or Ray tasks in a matrix)."""
        work = out_dir / "sophon"
        try:
            built = json.loads((work / BMODELS).read_text())
        except (OSError, ValueError):
            return []
        entry = min(built, key=lambda e: e["batch"])
        tc = tpu_mlir_env.ensure(progress=say)
        shapes = {k: tuple(v) for k, v in entry["shapes"].items()}
        label = (
            f"BModel {entry['chip']} {entry['quantize']} (simulator, {fmt_dims(next(iter(shapes.values())))})"
        )

        def run_many(feeds: list[dict]) -> list[dict]:
            return _simulate_many(tc, work, entry, feeds, note=lambda where: setattr(artifact, "ran", where))

        artifact = Artifact(label, run_many, shapes)
        return [artifact]

    # -- the tool runs and the comparison ------------------------------------------------------

    def _run(self, ctx: BuildContext, plan: Plan, tc: tpu_mlir_env.Toolchain, work: Path) -> dict:
        reference = Runner(ctx.model_path.read_bytes(), what="the final model")
        onnx_outputs = reference.output_names
        decoder = _decoder(ctx.settings.get("decoder"))
        dec_name = (ctx.settings.get("decoder") or {}).get("output") or onnx_outputs[0]
        rows, timings = [], {}
        for b in plan.batches:
            t = time.perf_counter()
            say(
                f"target sophon: batch {b}: model_transform, "
                + ("run_calibration, " if plan.quantize == "INT8" else "")
                + f"model_deploy {plan.chip} {plan.quantize}"
            )
            tc.run(
                plan.transform(b),
                cwd=work,
                log=work / "logs" / f"transform_{b}b.log",
                what=f"model_transform (batch {b})",
            )
            if plan.quantize == "INT8":
                if plan.calib_images:
                    self._calibration_from_images(ctx, plan, b, work)
                elif not plan.calib_dir:
                    say(
                        f"warning: sophon INT8: calibrating on {plan.calibration} generated inputs (noise); "
                        "give real images with --calib DIR"
                    )
                    self._calibration_inputs(ctx, plan, b, work)
                tc.run(
                    plan.calibrate(b),
                    cwd=work,
                    log=work / "logs" / f"calibrate_{b}b.log",
                    what=f"run_calibration (batch {b})",
                )
                if b == plan.batches[0]:
                    self._keep_in_float(ctx, plan, tc, work, b, onnx_outputs)
            cost = _deploy(
                tc, plan, b, work, "deploy", f"model_deploy {plan.chip} {plan.quantize} (batch {b})"
            )
            if not (work / plan.bmodel(b)).is_file():
                raise OcrgraftError(f"model_deploy reported success but wrote no {plan.bmodel(b)}")
            info = tc.run(
                plan.info(b), cwd=work, log=work / "logs" / f"info_{b}b.log", what="model_tool --info"
            )
            chip = re.search(r"^chip: (\S+)", info, re.M)
            if not chip or chip.group(1).lower() != plan.chip:
                raise OcrgraftError(
                    f"{plan.bmodel(b)} is not a {plan.chip} BModel (model_tool --info says chip "
                    f"{chip.group(1) if chip else '?'})"
                )
            compile_s = time.perf_counter() - t
            say(
                f"target sophon: batch {b}: compiled in {compile_s:.0f}s; "
                f"running {SAMPLES_PER_BATCH} inputs on the {plan.chip} simulator"
            )
            t = time.perf_counter()
            for i, feeds in enumerate(self._comparison_inputs(ctx, plan, b)):
                np.savez(work / "inputs" / f"{plan.name}_{b}b_{i}.npz", **feeds)
                tc.run(
                    plan.run(b, i),
                    cwd=work,
                    log=work / "logs" / f"simulate_{b}b_{i}.log",
                    what=f"model_runner on the {plan.chip} simulator (batch {b})",
                )
                with np.load(work / "outputs" / f"{plan.name}_{b}b_{i}.npz") as z:
                    got = {k: z[k] for k in z.files}
                ref = reference.run(feeds)
                pairs = match_outputs(onnx_outputs, list(got))
                for m in pairs:
                    g, r = got[m.bmodel], ref[m.onnx]
                    if g.size != r.size:
                        raise VerificationError(
                            f"sophon: BModel output '{m.bmodel}' has shape {fmt_dims(g.shape)}, "
                            f"ONNX output '{m.onnx}' {fmt_dims(r.shape)}"
                        )
                    g = g.reshape(r.shape)
                    sim = similarity(g, r)
                    row = {
                        "bmodel": plan.bmodel(b),
                        "input": i,
                        "output": m.onnx,
                        "bmodel_output": m.bmodel,
                        "matched_by": m.by,
                        "shape": list(r.shape),
                        **sim,
                    }
                    if decoder is not None and m.onnx == dec_name:
                        row.update(text_agreement(decoder, g, r))
                    rows.append(row)
            timings[f"{b}b"] = {
                "compile_s": round(compile_s, 1),
                "simulate_s": round(time.perf_counter() - t, 1),
                "estimated_ms": cost["ms"],
                "mb": cost["mb"],
            }
        if not rows:
            raise VerificationError("sophon: no BModel output was compared with ONNX Runtime")
        (work / "comparison.json").write_text(json.dumps(rows, indent=1) + "\n")
        try:
            return self._judge(plan, rows, timings) | {"onnx_outputs": onnx_outputs}
        except VerificationError as exc:
            raise VerificationError(f"{exc}; {self._locate(plan, rows, tc, work, ctx.model_path)}") from exc

    def _keep_in_float(
        self, ctx: BuildContext, plan: Plan, tc, work: Path, b: int, outputs: list[str]
    ) -> None:
        """INT8: the layers to keep in F32, from --keep or, with real images and a decoder, from the
        precision search (sophon_search); written as the quantize table every batch's deploy reads."""
        table = work / f"{plan.name}_qtable"

        def write_table(nodes: list[str]) -> list[str]:
            """The quantize table for these ONNX nodes; returns the nodes TPU-MLIR fused away."""
            layers, fused = quantize_table(nodes, work / plan.mlir(b), ctx.model_path)
            table.write_text("".join(f"{layer} F32\n" for layer in layers))
            plan.quantize_table = table.name if layers else None
            return fused

        given = None
        goal = float(ctx.options.get("min_agreement") or DEFAULT_MIN_AGREEMENT)
        images = self._search_images(ctx, plan)
        decoder = ctx.settings.get("decoder")
        if ctx.options.get("keep"):
            given = read_keep_list(Path(ctx.options["keep"]))
            fused = write_table(given)
            self.precision_note = f"{len(given) - len(fused)} node(s) kept in F32 from {ctx.options['keep']}"
            if fused:
                self.precision_note += f" ({len(fused)} fused into the next layer: {', '.join(fused)})"
            if not images or not decoder:
                return  # judged on the random test inputs by the precision's thresholds
        elif goal <= 0 or not images or not decoder:
            if goal > 0 and not images:
                self.precision_note = "no precision search: no real images (--images, or images in --calib)"
            return
        if not plan.interpretable:
            self.precision_note = (
                (self.precision_note + "; " if self.precision_note else "")
                + f"no precision search on {plan.chip}: TPU-MLIR's interpreter does not run its INT8 "
                "programs (it runs bm1684x's); judged on the test inputs"
            )
            return
        shape = plan.shapes[b]
        ranges = {k: [tuple(v) for v in vs] for k, vs in ctx.shapes.shapes.items()}
        pre = Preprocess.from_recipe(ctx.settings.get("preprocess"), ranges)
        pinned = pre.pinned(shape[pre.input])
        feeds = [{pre.input: np.repeat(pinned(path), b, axis=0)} for path in images]
        entry = {"batch": b, "chip": plan.chip, "outputs": outputs}

        costs: dict[tuple, dict] = {}  # by keep-list: the BModel each attempt compiled

        def deploy(nodes: list[str]) -> Path:
            write_table(nodes)
            costs[tuple(nodes)] = _deploy(
                tc, plan, b, work, "search_deploy", "model_deploy (precision search)"
            )
            return next(work.glob(f"{plan.name}_{b}b_{plan.chip}_*_final.mlir"))

        def run_program(program: Path, batch: list[dict]) -> list[dict]:
            return _simulate_many(tc, work, entry | {"file": program.name}, batch)

        def dump_layers(program: Path, batch: list[dict]) -> list[dict]:
            return [_dump(tc, work, program, f, i) for i, f in enumerate(batch)]

        found = search(
            feeds=feeds,
            model_path=ctx.model_path,
            decoder_options=decoder,
            output=decoder.get("output"),
            goal=goal,
            layers=nodes_with_layers(work / plan.mlir(b), ctx.model_path),
            deploy=deploy,
            run_program=run_program,
            dump_layers=dump_layers,
            progress=say,
            given=given,
        )
        write_table([k.node for k in found.keep])
        plan.judged_on_images = found.reached
        if given is not None:
            self.precision_note += f"; {found.describe()}"
            return
        cost = {
            "every layer INT8": costs.get(()),
            "kept in F32": costs.get(tuple(k.node for k in found.keep)),
        }
        record = found.to_json(plan.chip) | {"cost": cost, "cost_batch": b}
        (ctx.out_dir / PRECISION_FILE).write_text(json.dumps(record, indent=1) + "\n")
        self.precision_note = found.describe() + _cost_text(cost, b)
        if not found.reached:
            say(f"warning: sophon INT8: {found.describe()}")

    @staticmethod
    def _search_images(ctx: BuildContext, plan: Plan) -> list[Path]:
        """The real images the search measures on: --images, else the images of --calib."""
        if ctx.images:
            return list(ctx.images)
        if plan.calib_dir:
            found = sorted(p for p in plan.calib_dir.rglob("*") if p.suffix.lower() in CALIB_IMAGE_EXT)
            return found[:SEARCH_IMAGES]
        return []

    @staticmethod
    def _locate(plan: Plan, rows: list[dict], tc, work: Path, model_path: Path) -> str:
        """Layer by layer on the worst input: where the BModel's program first parts from ONNX
        (sophon/layers/divergence.md)."""
        if not plan.interpretable:
            return (
                "no layer-by-layer comparison on bm1684 INT8: TPU-MLIR's interpreter does not run its INT8 "
                "programs (it runs bm1684x's)"
            )
        worst = min(rows, key=lambda r: r["cosine"])
        b = next(b for b in plan.batches if plan.bmodel(b) == worst["bmodel"])
        say(f"target sophon: comparing {plan.bmodel(b)}'s layers with ONNX Runtime")
        try:
            found = bisect_bmodel(
                tc,
                work,
                f"{plan.name}_{b}b_{plan.chip}",
                f"inputs/{plan.name}_{b}b_{worst['input']}.npz",
                model_path,
                plan.thresholds,
            )
        except OcrgraftError as exc:
            return f"the layer-by-layer comparison could not run: {exc}"
        text = f"{plan.bmodel(b)}: {found.describe(plan.quantize)}"
        (work / LAYERS / "divergence.md").write_text(text + "\n")
        return text

    @staticmethod
    def _judge(plan: Plan, rows: list[dict], timings: dict) -> dict:
        """Pass or fail the comparison rows against the precision's thresholds; the details for the report."""
        th = plan.thresholds
        worst = min(rows, key=lambda r: r["cosine"])
        low_cos, low_euc = worst["cosine"], min(r["euclid"] for r in rows)
        high_err, high_abs = max(r["max_error"] for r in rows), max(r["max_abs"] for r in rows)
        same, total = _texts(rows)
        steps = [r["steps_same"] for r in rows if "steps_same" in r]
        problems = []
        if low_cos < th["min_cosine"]:
            problems.append(f"cosine {low_cos:.6f} < {th['min_cosine']}")
        if low_euc < th["min_euclid"]:
            problems.append(f"euclidean similarity {low_euc:.6f} < {th['min_euclid']}")
        if th["max_error"] is not None and high_err > th["max_error"]:
            problems.append(f"max error {high_err:.3g} of the largest reference value > {th['max_error']:g}")
        if th["min_text"] is not None and total and same / total < th["min_text"]:
            problems.append(f"decoded text agrees on {same}/{total} samples < {th['min_text']:.0%}")
        where = (
            f"{worst['bmodel']} input {worst['input']} output '{worst['output']}' "
            f"[{','.join(map(str, worst['worst_index']))}] = {worst['got']:.6g} "
            f"(ONNX Runtime {worst['expected']:.6g})"
        )
        unjudged = None
        if problems and plan.judged_on_images:  # INT8 thresholds are about real images, not noise
            unjudged = (
                f"on the random test inputs {'; '.join(problems)} (not judged: this INT8 build was judged "
                "on real images by the precision search)"
            )
        elif problems:
            raise VerificationError(
                f"sophon {plan.chip} {plan.quantize}: the simulated BModel differs from ONNX "
                f"Runtime: {'; '.join(problems)}; worst at {where}"
            )
        n_inputs = len({(r["bmodel"], r["input"]) for r in rows})
        summary = (
            f"built {len(plan.batches)} {plan.chip} {plan.quantize} BModel(s) (batch "
            f"{', '.join(map(str, plan.batches))}) with TPU-MLIR {tpu_mlir_env.TPU_MLIR_VERSION}; run on the "
            f"simulator and compared with ONNX Runtime on {n_inputs} inputs ({len(rows)} output tensors): "
            f"cosine >= {low_cos:.6f}, euclidean >= {low_euc:.6f}, max abs err {high_abs:.3g}"
            + (f"; decoded text {same}/{total} same" if total else "")
            + (f"; {unjudged}" if unjudged else "")
        )
        shapes = "; ".join(
            f"batch {b}: " + ", ".join(f"{k}={fmt_dims(v)}" for k, v in plan.shapes[b].items())
            for b in plan.batches
        )
        norm = "none given"
        if plan.mean is not None:
            norm = (
                f"(pixel - mean) * scale, mean {[float(_num(v)) for v in plan.mean]}, scale "
                f"{[float(_num(v)) for v in plan.scale]}, {plan.pixel_format or 'unspecified'} pixels"
            )
        calibration = None
        if plan.quantize == "INT8":
            calibration = (
                f"{_calib_count(plan.calib_dir)} {'images' if plan.calib_images else 'inputs'} from "
                f"{plan.calib_dir}"
                if plan.calib_dir
                else (
                    f"{plan.calibration} generated inputs per batch size (noise, not real data), drawn like "
                    "the test inputs (other seeds than the compared ones)"
                )
            )
        return {
            "summary": summary,
            "chip": plan.chip,
            "quantize": plan.quantize,
            "input_shapes": shapes,
            "normalization": norm,
            "calibration": calibration,
            "thresholds": {k: v for k, v in th.items() if v is not None},
            "outputs_compared": len(rows),
            "min_cosine": low_cos,
            "min_euclid": low_euc,
            "max_abs_err": high_abs,
            "max_error_relative": high_err,
            "text_agreement": f"{same}/{total}" if total else "no text decoder",
            "step_agreement": (
                f"{min(steps):.1%} of CTC steps (worst input) pick the same class"
                if steps
                else "no text decoder"
            ),
            "worst": where,
            "bmodels": {
                f"sophon/{plan.bmodel(b)}": _bmodel_line(
                    [r for r in rows if r["bmodel"] == plan.bmodel(b)], timings[f"{b}b"]
                )
                for b in plan.batches
            },
            "comparisons": "sophon/comparison.json",
            "toolchain": f"TPU-MLIR {tpu_mlir_env.TPU_MLIR_VERSION} in {tpu_mlir_env.default_home()}",
            # the first batch's BModel, one run on the chip as TPU-MLIR's cycle count estimates it (a number
            # for the matrix table, which would otherwise parse it out of the bmodels line)
            "estimated_latency_ms": timings[f"{plan.batches[0]}b"].get("estimated_ms"),
            "bmodel_size": ", ".join(  # what keeping layers in F32 costs shows here too
                f"{plan.bmodel(b)} {timings[f'{b}b']['mb']:.2f} MB"
                for b in plan.batches
                if timings[f"{b}b"].get("mb")
            ),
        }

    @staticmethod
    def _comparison_inputs(ctx: BuildContext, plan: Plan, b: int) -> list[dict[str, np.ndarray]]:
        """The pipeline's test inputs at this BModel's shapes, topped up with random ones drawn the same
        way."""
        shapes = plan.shapes[b]
        found = [
            c.feeds for c in ctx.cases if all(tuple(c.shapes.get(k, ())) == v for k, v in shapes.items())
        ]
        model_inputs = list(load(ctx.model_path).graph.inputs)
        seed = 7000 + 10 * b
        while len(found) < SAMPLES_PER_BATCH:
            found.append(random_inputs(model_inputs, shapes, seed=seed + len(found)))
        return found[:SAMPLES_PER_BATCH]

    @staticmethod
    def _calibration_from_images(ctx: BuildContext, plan: Plan, b: int, work: Path) -> None:
        """--calib images through the recipe's [preprocess] at this BModel's shape, b to an input: the
        same reading of pixels as every check and the accuracy table (TPU-MLIR's own image loader would
        stretch them instead)."""
        ranges = {k: [tuple(v) for v in vs] for k, vs in ctx.shapes.shapes.items()}
        pre = Preprocess.from_recipe(ctx.settings.get("preprocess"), ranges)
        pinned = pre.pinned(plan.shapes[b][pre.input])
        batches = calibration_inputs(plan.calib_dir, pinned, [pre.input])
        folder = work / plan.calib_dataset(b)
        folder.mkdir(exist_ok=True)
        for i in range(0, len(batches), b):
            group = [f[pre.input] for f in (batches[i : i + b] * b)[:b]]  # the last one filled up
            np.savez(folder / f"{i // b:04d}.npz", **{pre.input: np.concatenate(group, axis=0)})
        plan.calibration = -(-len(batches) // b)

    @staticmethod
    def _calibration_inputs(ctx: BuildContext, plan: Plan, b: int, work: Path) -> None:
        folder = work / plan.calib_dataset(b)
        folder.mkdir(exist_ok=True)
        model_inputs = list(load(ctx.model_path).graph.inputs)
        for i in range(plan.calibration):  # other seeds than the comparison inputs
            np.savez(
                folder / f"{i:03d}.npz",
                **random_inputs(model_inputs, plan.shapes[b], seed=9000 + 100 * b + i),
            )


def _dump(tc, work: Path, program: Path, feeds: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    """Every layer of a final.mlir on one input, by TPU-MLIR's layer names."""
    (work / LAYERS).mkdir(exist_ok=True)
    np.savez(work / LAYERS / f"search_in_{i}.npz", **feeds)
    out = f"{LAYERS}/search_out_{i}.npz"
    argv = ["model_runner", "--input", f"{LAYERS}/search_in_{i}.npz", "--model", program.name]
    tc.run(
        [*argv, "--dump_all_tensors", "--output", out],
        cwd=work,
        log=work / "logs" / f"search_layers_{i}.log",
        what=f"model_runner --dump_all_tensors on {program.name}",
    )
    with np.load(work / out) as z:
        return {k: z[k] for k in z.files}


def _simulate_many(
    tc, work: Path, entry: dict, feeds: list[dict[str, np.ndarray]], note=lambda where: None
) -> list[dict]:
    """Every input through the program (sophon_simulator: this machine's cores, or Ray tasks inside a
    matrix cell); outputs by ONNX output name. `note` hears where they ran."""
    batch = entry["batch"]  # a decoder reads the first sample of a filled batch
    inputs = [{k: np.repeat(v, batch // v.shape[0], axis=0) for k, v in f.items()} for f in feeds]
    raw, where = simulate(tc, work, entry["file"], entry["chip"], inputs)
    note(where)
    return [{m.onnx: got[m.bmodel] for m in match_outputs(entry["outputs"], list(got))} for got in raw]


def _texts(rows: list[dict]) -> tuple[int, int]:
    return sum(r.get("text_same", 0) for r in rows), sum(r.get("text_total", 0) for r in rows)


def _bmodel_line(rows: list[dict], timing: dict) -> str:
    """One BModel's comparison in a line of the report."""
    outputs = sorted({f"{r['output']} (as {r['bmodel_output']}, by {r['matched_by']})" for r in rows})
    same, total = _texts(rows)
    return (
        f"{len({r['input'] for r in rows})} inputs, outputs {', '.join(outputs)}: "
        f"cosine {min(r['cosine'] for r in rows):.6f}, euclidean {min(r['euclid'] for r in rows):.6f}, "
        f"max abs err {max(r['max_abs'] for r in rows):.3g}"
        + (f", text same {same}/{total}" if total else "")
        + f"; compile {timing['compile_s']}s, simulate {timing['simulate_s']}s"
        + (
            f"; {timing['estimated_ms']:.3f} ms per run as TPU-MLIR estimates it"
            if timing.get("estimated_ms")  # none where model_deploy writes no cycle count (bm1684)
            else ""
        )
    )


def _cost_text(cost: dict, b: int) -> str:
    """What the kept layers cost, from the two BModels the search compiled (batch b)."""
    before, after = cost["every layer INT8"], cost["kept in F32"]
    if not before or not after or before == after:
        return ""
    parts = [f"BModel {before['mb']:.2f} -> {after['mb']:.2f} MB"]
    if before["ms"] and after["ms"]:
        parts.append(f"{before['ms']:.3f} -> {after['ms']:.3f} ms per run as TPU-MLIR estimates it")
    return f"; cost of the kept layers (batch {b}): " + ", ".join(parts)


def _deploy(tc, plan: Plan, b: int, work: Path, log: str, what: str) -> dict:
    """model_deploy, and what its BModel costs: its size (MB) and TPU-MLIR's compile-time estimate of one
    run on the chip (ms, from the cycle count model_deploy writes; no chip here to time it on)."""
    profile = work / PROFILE
    profile.unlink(missing_ok=True)
    tc.run(plan.deploy(b), cwd=work, log=work / "logs" / f"{log}_{b}b.log", what=what)
    bmodel = work / plan.bmodel(b)
    found = (
        re.search(r"runtime: ([\d.]+)ms", profile.read_text(errors="replace")) if profile.is_file() else None
    )
    return {
        "mb": round(bmodel.stat().st_size / 1e6, 3) if bmodel.is_file() else None,
        "ms": float(found.group(1)) if found else None,
    }


def _decoder(options: dict | None):
    if not options or options.get("kind", "ctc") != "ctc":
        return None
    from ocrgraft.core.decode import decoder_from

    return decoder_from(options)


def _tool_model(src: Path, dst: Path) -> None:
    """The final model as TPU-MLIR's onnx 1.14 reads it: IR version <= 9 (the opset was checked already)."""
    model = onnx.load(str(src))
    if model.ir_version <= MAX_IR_VERSION:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    onnx.save(model, str(dst))


def _keep_logs(work: Path, script: Path, dest: Path) -> None:
    """A failed build's folder is discarded; keep its logs and script next to where the output would be."""
    shutil.rmtree(dest, ignore_errors=True)
    try:
        if (work / "logs").is_dir():
            shutil.copytree(work / "logs", dest / "logs")
        dest.mkdir(parents=True, exist_ok=True)
        for f in (script, work / "comparison.json", work / LAYERS / "divergence.md"):
            if f.exists():
                shutil.copy2(f, dest / f.name)
    except OSError:
        pass
