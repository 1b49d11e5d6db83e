"""NVIDIA TensorRT: support check against the ONNX parser's documented op table, an emitted
build_engine.py (TensorRT Python API, one optimization profile per input) and trtexec command,
and a real build + comparison only where `tensorrt` imports and a CUDA GPU is present."""

from __future__ import annotations

import importlib.util
import json
import logging
import shlex
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import onnx

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.images import Preprocess, calibration_inputs
from ocrgraft.core.precision import check_keep_list, node_key
from ocrgraft.core.runner import Runner
from ocrgraft.core.shapes import fmt_dims
from ocrgraft.targets.base import Artifact, BuildContext, BuildResult, SupportCheck, Target, TargetOption
from ocrgraft.targets.tables import check_against_table, is_constant, load_table, table_versions

DEFAULT_VERSION = "10.1"
WORKSPACE_MIB = 4096
log = logging.getLogger("ocrgraft")
# What the engine computes in. The scripts use TensorRT 8.6 / 10.x's builder flags and its implicit INT8
# calibrator (deprecated from 10.1 in favour of explicit Q/DQ, removed with the flags in TensorRT 11).
DEVICE_PRECISION = {
    "fp32": "F32 (TensorRT builds in float32 unless a lower precision is allowed)",
    "fp16": "F16 where TensorRT finds it faster (BuilderFlag.FP16 / trtexec --fp16), F32 elsewhere",
    "int8": "INT8 where TensorRT finds it faster, F16/F32 elsewhere (BuilderFlag.INT8 + FP16 / trtexec "
    "--int8 --fp16 --calib), TensorRT's entropy calibrator",
}


def _kernel_rank(node) -> str | None:
    k = node.attributes.get("kernel_shape")
    if k is not None and len(k.as_ints()) not in (2, 3):
        return f"{len(k.as_ints())}-D pooling (only 2-D or 3-D)"
    return None


def _input_const(index: int, what: str):
    def check(node):
        if len(node.inputs) > index and not is_constant(node.inputs[index]):
            return f"{what} must be an initializer"
        return None

    return check


def _checks(version: str) -> dict:
    checks = {
        "Conv": _input_const(1, "weights W"),
        "ConvTranspose": _input_const(1, "weights W"),
        "Slice": _input_const(3, "axes"),
        "Squeeze": _input_const(1, "axes"),
        "Unsqueeze": _input_const(1, "axes"),
        "AveragePool": _kernel_rank,
        "MaxPool": lambda n: (
            "the Indices output is unsupported"
            if len(n.outputs) > 1 and n.outputs[1].uses()
            else _kernel_rank(n)
        ),
        "Resize": lambda n: (
            "cubic mode is unsupported"
            if n.attributes.get("mode") and n.attributes["mode"].as_string() == "cubic"
            else None
        ),
        "TopK": _input_const(1, "K"),
    }
    if version.startswith("10"):
        checks["GridSample"] = lambda n: (
            "input must be 4-D" if n.inputs[0].shape is not None and len(n.inputs[0].shape) != 4 else None
        )
    return checks


def tensorrt_available() -> str | None:
    """None when an engine can be built here, else the reason it cannot."""
    if importlib.util.find_spec("tensorrt") is None:
        return (
            "the `tensorrt` Python package is not installed "
            "(NVIDIA's libraries are not on PyPI for this machine)"
        )
    if (
        shutil.which("nvidia-smi") is None
        or subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode
    ):
        return "no CUDA GPU is visible (nvidia-smi finds none)"
    return None


class TensorRTTarget(Target):
    name = "trt"
    description = (
        "NVIDIA TensorRT 8.6 / 10.x: support check, build_engine.py + trtexec; "
        "builds where a GPU and TensorRT exist"
    )
    # GridSample spelled for the model's opset with explicit attributes; INT64 narrowed where exact
    passes = ("legalize-gridsample", "int64-to-int32")
    options = (
        TargetOption(
            "version",
            "TensorRT version whose op table applies",
            table_versions("tensorrt"),
            flag="--target-version",
        ),
        TargetOption(
            "quantize",
            "precision of the engine (F32 unless asked)",
            ("F32", "F16", "INT8"),
            refused=(("BF16", "the scripts target TensorRT 8.6 / 10.x's FP16 and INT8 builder flags"),),
        ),
        TargetOption("calib", "INT8: a folder of calibration images (through [preprocess]), .npy or .npz"),
        TargetOption("keep", "F16/INT8: a precision.json whose ONNX nodes stay F32", flag="--keep"),
        TargetOption("build", "build the engine where TensorRT and a GPU exist"),
    )

    def __init__(self, version: str | None = None):
        self.version = version or DEFAULT_VERSION
        load_table("tensorrt", self.version)  # an unknown version fails here, before any work

    def max_opset(self) -> int | None:
        opsets = load_table("tensorrt", self.version).opsets
        return opsets[1] if opsets else None

    def check_support(self, model) -> SupportCheck:
        return check_against_table(model, load_table("tensorrt", self.version), _checks(self.version))

    def build(self, ctx: BuildContext) -> BuildResult:
        opts = ctx.options
        precision = {"F32": "fp32", "F16": "fp16", "INT8": "int8"}[opts.get("quantize", "F32")]
        if opts.get("calib") and precision != "int8":
            raise OcrgraftError("--calib applies to INT8 engines; add --quantize INT8")
        profiles = self.profiles(ctx)
        calibration = self._calibration(ctx, profiles) if precision == "int8" else None
        keep = []
        if opts.get("keep"):
            if precision == "fp32":
                raise OcrgraftError("--keep applies to F16 and INT8 engines; this one is F32")
            model = onnx.load(str(ctx.model_path), load_external_data=False)
            keep = check_keep_list(opts["keep"], {node_key(n) for n in model.graph.node})
        trt_dir = ctx.out_dir / "trt"
        trt_dir.mkdir()
        config = {
            "onnx": "../model.onnx",
            "engine": "model.engine",
            "profiles": profiles,
            "fp16": precision in ("fp16", "int8"),
            "int8": precision == "int8",
            "workspace_mib": WORKSPACE_MIB,
            "tensorrt_version": self.version,
            "keep_fp32": keep,  # ONNX node names = TensorRT layer names from its ONNX parser
        }
        (trt_dir / "engine_config.json").write_text(json.dumps(config, indent=2) + "\n")
        script = resources.files("ocrgraft.targets") / "templates" / "build_engine.py"
        (trt_dir / "build_engine.py").write_text(script.read_text())
        self._save_check_data(ctx, trt_dir)
        command = self.trtexec_command(profiles, precision, keep)
        needs_cache = ""
        if calibration is not None:
            batches, where = calibration
            np.savez_compressed(trt_dir / "calib_inputs.npz", **_grouped(batches))
            needs_cache = (
                '[ -f calibration.cache ] || { echo "calibration.cache is missing: run python3 '
                'build_engine.py first (it calibrates on calib_inputs.npz and writes it)" >&2; exit 1; }\n'
            )
        (trt_dir / "trtexec.sh").write_text(
            "#!/usr/bin/env bash\n# The same build with NVIDIA's trtexec (TensorRT 8.6 / 10.x).\n"
            'set -euo pipefail\ncd "$(dirname "$0")"\n' + needs_cache + command + "\n"
        )
        (trt_dir / "trtexec.sh").chmod(0o755)
        artifacts = [
            "trt/build_engine.py",
            "trt/engine_config.json",
            "trt/trtexec.sh",
            "trt/check_inputs.npz",
            "trt/check_expected.npz",
        ]
        details = {
            "tensorrt_version": self.version,
            "precision": precision,
            "profiles": {k: [fmt_dims(s) for s in v] for k, v in profiles.items()},
        }
        report = {"device": DEVICE_PRECISION[precision], "verified": "F32: every stage in ONNX Runtime"}
        if keep:
            details["keep_fp32"] = f"{len(keep)} layer(s) from {opts['keep']}"
            report["device"] += f"; {len(keep)} layer(s) kept in F32 ({opts['keep']})"
        if calibration is not None:
            artifacts.append("trt/calib_inputs.npz")
            details["calibration"] = calibration[1]
            report["device"] += f"; calibrated on {calibration[1]}"
        if not opts.get("build"):
            return BuildResult(
                False,
                "no TensorRT engine built (scripts written; add --build where TensorRT and a "
                "GPU exist, or run trt/build_engine.py there)",
                command,
                artifacts,
                details,
                report | {"verified": report["verified"] + "; the engine was not built here"},
            )
        why = tensorrt_available()
        if why:
            return BuildResult(
                False,
                f"no TensorRT engine built: {why}; run trt/build_engine.py or trt/trtexec.sh on "
                "a machine with TensorRT and a GPU",
                command,
                artifacts,
                details,
                report | {"verified": report["verified"] + "; the engine was not built here"},
            )
        proc = subprocess.run(
            [sys.executable, str(trt_dir / "build_engine.py"), "--check"], capture_output=True, text=True
        )
        if proc.returncode:
            raise OcrgraftError(
                f"TensorRT build failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1]}"
            )
        errors = json.loads(proc.stdout.strip().splitlines()[-1])["max_abs_by_output"]
        details["max_abs_vs_onnxruntime"] = errors
        worst = max(errors.values())
        report["verified"] += (
            f"; the {precision.upper()} engine against ONNX Runtime: max abs err {worst:.3g}"
        )
        return BuildResult(
            True,
            f"built trt/model.engine; max abs error vs ONNX Runtime {worst:.3g}",
            command,
            artifacts + ["trt/model.engine"],
            details,
            report,
        )

    def next_steps(self, ctx: BuildContext, build: BuildResult) -> list[str]:
        int8 = build.details.get("precision") == "int8"
        steps = [
            f"On a machine with a CUDA GPU and TensorRT {self.version.split('.')[0]}.x (`pip install "
            "'tensorrt<11' polygraphy`): `python3 trt/build_engine.py --check` builds `trt/model.engine` "
            "and compares it with ONNX Runtime's outputs saved in `trt/check_expected.npz` (one JSON line "
            "of max abs errors)"
            + (", calibrating INT8 on `trt/calib_inputs.npz` into `trt/calibration.cache`" if int8 else ""),
            "or `bash trt/trtexec.sh` (NVIDIA's trtexec on PATH"
            + ("; after build_engine.py has written calibration.cache)" if int8 else ")"),
            "then `ocrgraft eval <this folder> --images DIR` there adds the engine to the accuracy table",
        ]
        return [] if build.built else steps

    def artifacts(self, out_dir: Path) -> list[Artifact]:
        """A built engine (trt/model.engine), run with polygraphy where TensorRT and a GPU exist; elsewhere
        the accuracy table lists it as not run, with the reason."""
        engine = out_dir / "trt" / "model.engine"
        if not engine.is_file():
            return []

        def run_many(feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
            why = tensorrt_available()
            if why:
                raise OcrgraftError(why)
            from polygraphy.backend.trt import EngineFromBytes, TrtRunner

            with TrtRunner(EngineFromBytes(engine.read_bytes())) as runner:
                return [{k: np.asarray(v) for k, v in runner.infer(f).items()} for f in feeds]

        return [Artifact("TensorRT engine", run_many)]

    @staticmethod
    def profiles(ctx: BuildContext) -> dict[str, list[list[int]]]:
        """min / opt / max per input, from the recipe's (or --shapes') range."""
        out = {}
        for name, shapes in ctx.shapes.shapes.items():
            lo, opt, hi = shapes[0], shapes[len(shapes) // 2], shapes[-1]
            out[name] = [list(lo), list(opt), list(hi)]
        return out

    @staticmethod
    def trtexec_command(profiles: dict, precision: str, keep: list[str] = ()) -> str:
        parts = [
            "trtexec",
            "--onnx=../model.onnx",
            "--saveEngine=model.engine",
            f"--memPoolSize=workspace:{WORKSPACE_MIB}M",
        ]
        for flag, idx in (("--minShapes", 0), ("--optShapes", 1), ("--maxShapes", 2)):
            parts.append(f"{flag}=" + ",".join(f"{k}:{fmt_dims(v[idx])}" for k, v in profiles.items()))
        if precision in ("fp16", "int8"):
            parts.append("--fp16")
        if precision == "int8":
            parts += ["--int8", "--calib=calibration.cache"]
        if keep:
            parts += [
                "--precisionConstraints=obey",
                "--layerPrecisions=" + ",".join(f"{n}:fp32" for n in keep),
                "--layerOutputTypes=" + ",".join(f"{n}:fp32" for n in keep),
            ]
        return " ".join(shlex.quote(p) for p in parts)

    @staticmethod
    def _calibration(ctx: BuildContext, profiles: dict) -> tuple[list[dict], str]:
        """INT8 calibration batches and where they came from: `--calib DIR` (images preprocessed at the
        profile's opt shape), else the test inputs, which are noise: a warning, and the report says so."""
        names = list(profiles)
        if ctx.options.get("calib"):
            opt = {k: tuple(v[1]) for k, v in profiles.items()}
            pre = None
            if ctx.settings.get("preprocess") is not None:
                ranges = {k: [tuple(s) for s in v] for k, v in profiles.items()}
                pre = Preprocess.from_recipe(ctx.settings["preprocess"], ranges)
                pre = pre.pinned(opt[pre.input])
            batches = calibration_inputs(ctx.options["calib"], pre, names)
            return batches, f"{len(batches)} inputs from {ctx.options['calib']}"
        log.warning(
            "trt INT8: calibrating on the %d generated test inputs (noise); give images with --calib DIR",
            len(ctx.cases),
        )
        return [c.feeds for c in ctx.cases], f"{len(ctx.cases)} generated test inputs (noise, not real data)"

    @staticmethod
    def _save_check_data(ctx: BuildContext, trt_dir) -> None:
        """The test inputs and ONNX Runtime's outputs of the final model, for build_engine.py --check."""
        runner = Runner(ctx.model_path.read_bytes(), what="the final model")
        inputs, expected = {}, {}
        for i, case in enumerate(ctx.cases):
            inputs.update({f"{i:02d}/{k}": v for k, v in case.feeds.items()})
            expected.update({f"{i:02d}/{k}": v for k, v in runner.run(case.feeds).items()})
        np.savez_compressed(trt_dir / "check_inputs.npz", **inputs)
        np.savez_compressed(trt_dir / "check_expected.npz", **expected)


def _grouped(batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Feeds as one .npz: '<batch index>/<input name>' keys, the form build_engine.py reads."""
    return {f"{i:03d}/{k}": v for i, feeds in enumerate(batches) for k, v in feeds.items()}
