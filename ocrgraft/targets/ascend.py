"""Huawei Ascend: support check against ATC's documented ONNX op list and limits, the `atc` command
(shape ranges or gears, --soc_version) written as a script, run only where `atc` is on PATH."""

from __future__ import annotations

import logging
import re
import shlex
import shutil
import subprocess

import onnx
import onnx_ir as ir

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.precision import check_keep_list, node_key
from ocrgraft.core.shapes import fmt_dims
from ocrgraft.targets.base import BuildContext, BuildResult, SupportCheck, Target, TargetOption
from ocrgraft.targets.tables import check_against_table, load_table, table_versions

DEFAULT_VERSION = "8.0"
log = logging.getLogger("ocrgraft")
DEFAULT_SOC = {"5.0.4": "Ascend710", "8.0": "Ascend310P3"}  # the same chip (Atlas 300I Pro) by each name
MAX_POOL_KERNEL = 255  # auto-optimizer knowledge 13: the AvgPool kernel limit of the device

# ATC's precision flag per CANN generation: --precision_mode_v2 from CANN 7.0 on (default fp16),
# --precision_mode before it (default force_fp16). Either way a model built without the flag computes in
# float16 on the device wherever an operator has a float16 kernel.
PRECISION_FLAGS = {
    "v2": {"F32": "--precision_mode_v2=origin", "F16": "--precision_mode_v2=fp16"},
    "v1": {"F32": "--precision_mode=force_fp32", "F16": "--precision_mode=force_fp16"},
}
ATC_DEFAULT = {"v2": "--precision_mode_v2 defaults to fp16", "v1": "--precision_mode defaults to force_fp16"}


# The SoC families each CANN version's ATC names (--soc_version); the 310P was called Ascend710 in CANN 5.
_910 = ("Ascend910", "Ascend910A", "Ascend910B", "Ascend910ProA", "Ascend910ProB", "Ascend910PremiumA")
SOC_FAMILIES = {
    "5.0.4": ("Ascend310", "Ascend710", *_910),
    "8.0": ("Ascend310", "Ascend310P", "Ascend310B", *_910, "Ascend910_93"),
}
# SoCs whose ATC takes no shape range: dynamic dims only as gears.
GEARS_ONLY = ("Ascend310",)


def check_soc(soc: str, version: str) -> None:
    families = SOC_FAMILIES.get(version, ())
    if families and not any(re.fullmatch(rf"{re.escape(f)}\d*", soc) for f in families):
        renamed = " (CANN 5 calls the 310P Ascend710)" if version.startswith("5") and "310P" in soc else ""
        raise OcrgraftError(
            f"--soc {soc}: not a SoC of CANN {version}'s ATC (families: {', '.join(families)}){renamed}"
        )


def precision_generation(version: str) -> str:
    return "v2" if int(version.split(".")[0]) >= 7 else "v1"


def _avgpool_kernel(node) -> str | None:
    k = node.attributes.get("kernel_shape")
    if k is not None and max(k.as_ints()) > MAX_POOL_KERNEL:
        return f"kernel {list(k.as_ints())} exceeds {MAX_POOL_KERNEL} (add split-pool)"
    return None


def _topk_k(node) -> str | None:
    k = node.inputs[1] if len(node.inputs) > 1 else None
    if k is not None and k.dtype == ir.DataType.INT64:
        return "K is int64; the device takes int32 (add topk-int32)"
    return None


def shape_flags(
    shapes: dict[str, list[tuple[int, ...]]], mode: str, version: str = DEFAULT_VERSION
) -> list[str]:
    """ATC's input shapes: a range as CANN 7.0+ writes it (`--input_shape="x:1~16,1,32,32~6400"`) or as
    CANN 5/6 did (`--input_shape_range="x:[1~16,1,32,32~6400]"`, deprecated later), or fixed gears
    (--input_shape with -1 plus --dynamic_batch_size / --dynamic_image_size / --dynamic_dims)."""
    brackets = mode == "range" and precision_generation(version) == "v1"
    ranges, dynamic = [], {}
    for name, options in shapes.items():
        lo, hi = options[0], options[-1]
        dims = []
        for i, (a, b) in enumerate(zip(lo, hi)):
            if a == b:
                dims.append(str(a))
            else:
                dims.append(f"{a}~{b}" if mode == "range" else "-1")
                dynamic.setdefault(name, []).append(i)
        ranges.append(f"{name}:[{','.join(dims)}]" if brackets else f"{name}:{','.join(dims)}")
    flags = [f"--input_shape{'_range' if brackets else ''}={';'.join(ranges)}"]
    if mode == "range" or not dynamic:
        return flags
    gears = [
        {n: s[min(i, len(s) - 1)] for n, s in shapes.items()}
        for i in range(max(len(s) for s in shapes.values()))
    ]
    axes = [(n, i) for n, idx in dynamic.items() for i in idx]
    if axes and all(i == 0 for _, i in axes):
        flags.append("--dynamic_batch_size=" + ",".join(str(g[axes[0][0]][0]) for g in gears))
    elif len(axes) == 2 and len(dynamic) == 1 and [i for _, i in axes] == [2, 3]:
        name = axes[0][0]
        flags.append("--dynamic_image_size=" + ";".join(f"{g[name][2]},{g[name][3]}" for g in gears))
    else:
        flags.append("--dynamic_dims=" + ";".join(",".join(str(g[n][i]) for n, i in axes) for g in gears))
    return flags


class AscendTarget(Target):
    name = "ascend"
    description = (
        "Huawei Ascend ATC (.om): support check, atc command with shape ranges or gears; "
        "builds where atc exists"
    )
    # The hand-written fix.py / opt_onnx.py edits of the Ascend write-ups, as general passes: shape
    # computations for view->Linear->view, zero LSTM states and flip->LSTM->flip folded away; GridSample
    # decomposed (older CANN has none); pooling kernels split below the 255 limit.
    # (The generic clean-ups already fold reshape targets and drop zero RNN states.)
    passes = (
        "reshape-gemm-to-matmul",
        "fold-flip-rnn",
        "squeeze-after-concat",
        "decompose-gridsample",
        "pool-to-reduce",
        "split-pool",
        "int64-to-int32",
        "topk-int32",
    )
    options = (
        TargetOption(
            "version",
            "CANN version whose op table applies",
            table_versions("ascend"),
            flag="--target-version",
        ),
        TargetOption(
            "soc",
            "atc --soc_version, e.g. Ascend310P3, Ascend310, Ascend910B1",
            pattern=r"Ascend\d{3}[A-Za-z0-9_]*",
        ),
        TargetOption("keep", "F16: a precision.json whose ONNX nodes ATC keeps in float32", flag="--keep"),
        TargetOption("gears", "dynamic dims as ATC gears (one per test shape) instead of a shape range"),
        TargetOption(
            "quantize",
            "precision ATC compiles for (default: ATC's own, float16)",
            ("F32", "F16"),
            refused=(
                ("INT8", "ATC's INT8 takes a model quantized by Huawei's AMCT, which ocrgraft does not make"),
                ("BF16", "ATC's bfloat16 is for training chips (Atlas A2); inference SoCs compute in fp16"),
            ),
        ),
    )

    def __init__(self, version: str | None = None):
        self.version = version or DEFAULT_VERSION
        load_table("ascend", self.version)

    def next_steps(self, ctx: BuildContext, build: BuildResult) -> list[str]:
        steps = (
            []
            if build.built
            else [
                f"With the CANN {self.version} toolkit (`atc` on PATH, its set_env.sh sourced): "
                f"`bash ascend/atc.sh` writes `ascend/om/{ctx.name}.om` for {build.details['soc_version']}"
            ]
        )
        return steps + [
            "On the Ascend device: run the .om on the verified test inputs, e.g. with Huawei's ais_bench "
            f"(`python3 -m ais_bench --model ascend/om/{ctx.name}.om`), and compare with `model.onnx` in "
            "ONNX Runtime: nothing here ran it"
        ]

    @staticmethod
    def keep_dtype(ctx: BuildContext, asked: str | None, gen: str) -> list[str]:
        """--keep precision.json as ATC's --keep_dtype file (one operator name per line, kept in its
        original precision, float32); not with F32, which keeps every operator already."""
        if not ctx.options.get("keep"):
            return []
        if asked == "F32":
            raise OcrgraftError("--keep applies to F16 builds (ATC's default); --quantize F32 keeps every op")
        model = onnx.load(str(ctx.model_path), load_external_data=False)
        nodes = check_keep_list(ctx.options["keep"], {node_key(n) for n in model.graph.node})
        (ctx.out_dir / "ascend" / "keep_dtype.cfg").write_text("".join(f"{n}\n" for n in nodes))
        return nodes

    def max_opset(self) -> int | None:
        opsets = load_table("ascend", self.version).opsets
        return opsets[1] if opsets else None

    def check_support(self, model) -> SupportCheck:
        return check_against_table(
            model, load_table("ascend", self.version), {"AveragePool": _avgpool_kernel, "TopK": _topk_k}
        )

    def build(self, ctx: BuildContext) -> BuildResult:
        settings = dict(ctx.settings.get("ascend", {}))
        soc = ctx.options.get("soc") or settings.get("soc", DEFAULT_SOC.get(self.version, "Ascend310P3"))
        check_soc(soc, self.version)
        mode = "gears" if ctx.options.get("gears") else settings.get("dynamic", "range")
        if mode not in ("range", "gears"):
            raise OcrgraftError(f"recipe [ascend] dynamic = '{mode}': expected 'range' or 'gears'")
        shapes = ctx.shapes.shapes
        switched = None
        if mode == "range" and soc in GEARS_ONLY and any(len(set(v)) > 1 for v in shapes.values()):
            mode, switched = (
                "gears",
                f"{soc} takes no shape range: the dynamic dims are gears (one per shape)",
            )
            log.warning("ascend: %s", switched)
        input_format = "NCHW" if all(len(s[0]) == 4 for s in shapes.values()) else "ND"
        name = ctx.name
        gen = precision_generation(self.version)
        asked = ctx.options.get("quantize")
        precision = [PRECISION_FLAGS[gen][asked]] if asked else []
        device = (
            f"{asked} ({precision[0]})"
            if asked
            else f"F16 wherever an operator has a float16 kernel: ATC's default ({ATC_DEFAULT[gen]}; "
            "--quantize F32 keeps float32)"
        )
        parts = [
            "atc",
            "--framework=5",
            "--model=../model.onnx",
            f"--output=om/{name}",
            f"--input_format={input_format}",
            *shape_flags(shapes, mode, self.version),
            f"--soc_version={soc}",
            *precision,
            "--log=error",
        ]
        ascend_dir = ctx.out_dir / "ascend"
        ascend_dir.mkdir()
        keep = self.keep_dtype(ctx, asked, gen)
        if keep:
            parts.insert(-1, "--keep_dtype=keep_dtype.cfg")
            device += f"; {len(keep)} operator(s) kept in float32 (--keep_dtype, from {ctx.options['keep']})"
        command = " ".join(shlex.quote(p) for p in parts)
        script = ascend_dir / "atc.sh"
        script.write_text(
            "#!/usr/bin/env bash\n# Build the Ascend offline model (.om) with ATC from the CANN toolkit.\n"
            'set -euo pipefail\ncd "$(dirname "$0")"\nmkdir -p om\n' + command + "\n"
        )
        script.chmod(0o755)
        details = {
            "soc_version": soc,
            "cann_op_table": self.version,
            "dynamic": mode + (f" ({switched})" if switched else ""),
            "shapes": {k: [fmt_dims(s) for s in v] for k, v in shapes.items()},
            "precision_flag": precision[0] if precision else f"none: {ATC_DEFAULT[gen]}",
        }
        verified = "F32: every stage in ONNX Runtime"
        report = {
            "device": device,
            "verified": verified
            + ("" if asked == "F32" else "; the device's float16 is not simulated here (no Ascend device)"),
        }
        if shutil.which("atc") is None:
            return BuildResult(
                False,
                "no .om built: `atc` (Huawei CANN toolkit) is not on PATH here; run ascend/atc.sh "
                "where CANN is installed",
                command,
                ["ascend/atc.sh"] + (["ascend/keep_dtype.cfg"] if keep else []),
                details,
                report,
            )
        proc = subprocess.run(["bash", str(script)], capture_output=True, text=True)
        (ascend_dir / "atc.log").write_text(proc.stdout + proc.stderr)
        om = ascend_dir / "om" / f"{name}.om"
        if proc.returncode or not om.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise OcrgraftError(f"atc failed (exit {proc.returncode}): {tail[0]} (full log: ascend/atc.log)")
        return BuildResult(
            True,
            f"built ascend/om/{name}.om with atc for {soc} (not run: needs an Ascend device)",
            command,
            ["ascend/atc.sh", f"ascend/om/{name}.om", "ascend/atc.log"],
            details,
            report,
        )
