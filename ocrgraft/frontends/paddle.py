"""Frontend for Paddle inference models (Paddle 3's inference.json or the older .pdmodel, each with
.pdiparams): paddle2onnx in a subprocess, Paddle's own inference as the reference.

paddle2onnx aborts the whole process (SIGABRT) on an unsupported operator without naming it, so it
runs in a child process, and the program's ops are checked against paddle2onnx's own list first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.modelio import load
from ocrgraft.core.safeload import load_arrays
from ocrgraft.frontends import Source

# GridSample appears at opset 16; below it paddle2onnx silently upgrades, and at opset 20 it writes
# GridSample attributes that opset 20 does not allow. 16 is also inside every target's range.
DEFAULT_OPSET = 16
# Paddle 3 program op names that paddle2onnx lists under their older names, and ops that are not
# computations. Used only to name the culprit when paddle2onnx aborts.
ALIASES = {
    "add": "elementwise_add",
    "subtract": "elementwise_sub",
    "multiply": "elementwise_mul",
    "divide": "elementwise_div",
    "maximum": "elementwise_max",
    "minimum": "elementwise_min",
    "floor_divide": "elementwise_floordiv",
    "remainder": "elementwise_mod",
    "elementwise_pow": "pow",
    "matmul": "matmul_v2",
    "flatten": "flatten_contiguous_range",
    "hardswish": "hard_swish",
    "hardsigmoid": "hard_sigmoid",
    "grid_sample": "grid_sampler",
    "expand": "expand_v2",
    "unsqueeze": "unsqueeze2",
    "topk": "top_k_v2",
    "argmax": "arg_max",
    "argmin": "arg_min",
    "mean": "reduce_mean",
    "max": "reduce_max",
    "min": "reduce_min",
    "prod": "reduce_prod",
    "max_pool2d": "pool2d",
    "avg_pool2d": "pool2d",
    "pool2d": "pool2d",
    "depthwise_conv2d": "depthwise_conv2d",
    "bilinear_interp": "bilinear_interp",
    "nearest_interp": "nearest_interp",
    "split_with_num": "split",
}
NOT_OPS = {"data", "fetch", "feed", "combine", "split", "parameter", "p", "yield", "builtin.parameter"}


def unsupported_ops(ops: set[str], supported: set[str]) -> list[str]:
    def known(op: str) -> bool:
        base = op.rstrip("_")  # in-place variants (batch_norm_) convert like the plain op
        return bool({op, base, ALIASES.get(op), ALIASES.get(base)} & supported)

    return sorted(op for op in ops - NOT_OPS if not known(op))


def find_model_files(model_dir: Path) -> tuple[Path, Path]:
    """The program file (.json preferred, else .pdmodel) and its .pdiparams in a model folder."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise OcrgraftError(f"no such Paddle model folder: {model_dir}")
    for pattern in ("*.json", "*.pdmodel"):
        for program in sorted(model_dir.glob(pattern)):
            params = program.with_suffix(".pdiparams")
            if params.exists():
                return program, params
    raise OcrgraftError(
        f"{model_dir} holds no Paddle inference model (inference.json or .pdmodel, with .pdiparams)"
    )


def convert_to_onnx(program: Path, params: Path, out: Path, opset: int = DEFAULT_OPSET) -> None:
    """Run paddle2onnx in a child process; an unsupported op becomes a clear error naming it."""
    env = dict(os.environ, POLYGRAPHY_AUTOINSTALL_DEPS="0", GLOG_minloglevel="2")
    proc = subprocess.run(
        [sys.executable, "-m", "ocrgraft.frontends.paddle", str(program), str(params), str(out), str(opset)],
        capture_output=True,
        text=True,
        env=env,
    )
    lines = proc.stdout.strip().splitlines()
    scan = json.loads(lines[0]) if lines and lines[0].startswith("{") else {}
    if proc.returncode != 0 or not out.exists():
        missing = scan.get("unsupported")
        if missing:
            raise OcrgraftError(
                f"paddle2onnx cannot convert {program.name}: "
                f"unsupported Paddle operator(s): {', '.join(missing)}"
            )
        tail = [
            line for line in (proc.stderr + proc.stdout).splitlines() if "ERROR" in line or "Error" in line
        ]
        raise OcrgraftError(
            f"paddle2onnx failed on {program.name} (exit {proc.returncode}): "
            f"{tail[-1].strip() if tail else 'no error message'}"
        )


def program_ops(program: Path) -> set[str]:
    """Operator names in a Paddle program file (PIR JSON or legacy ProgramDesc protobuf)."""
    if program.suffix == ".json":
        data = json.loads(program.read_text())
        ops = set()

        def walk(regions):
            for region in regions:
                for block in region.get("blocks", []):
                    for op in block.get("ops", []):
                        ops.add(op["#"].split(".", 1)[-1])
                        walk(op.get("regions", []))

        walk(data["program"]["regions"])
        return ops
    from paddle.base.proto import framework_pb2

    desc = framework_pb2.ProgramDesc.FromString(program.read_bytes())
    return {op.type for block in desc.blocks for op in block.ops}


def _worker(program: str, params: str, out: str, opset: str) -> int:
    """Child process: report the scan on stdout first (it survives an abort), then convert."""
    import paddle2onnx
    from paddle2onnx import paddle2onnx_cpp2py_export as p2o

    program = Path(program)
    supported = set(
        p2o.get_all_supported_operators_pir()
        if program.suffix == ".json"
        else p2o.get_all_supported_operators()
    )
    ops = program_ops(program)
    print(json.dumps({"ops": sorted(ops), "unsupported": unsupported_ops(ops, supported)}), flush=True)
    paddle2onnx.export(
        str(program),
        params,
        save_file=out,
        opset_version=int(opset),
        auto_upgrade_opset=False,
        enable_onnx_checker=True,
        optimize_tool="None",
    )
    return 0


class PaddlePredictor:
    """Paddle's own inference engine on the CPU: the reference outputs."""

    def __init__(self, program: Path, params: Path):
        import paddle.inference as pi

        config = pi.Config(str(program), str(params))
        config.disable_gpu()
        config.disable_glog_info()
        config.switch_ir_optim(False)  # the program as written, no fused rewrites
        self.predictor = pi.create_predictor(config)
        self.output_names = self.predictor.get_output_names()

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name in self.predictor.get_input_names():
            if name not in feeds:
                raise OcrgraftError(
                    f"Paddle model input '{name}' has no test data (inputs given: {', '.join(feeds)})"
                )
            self.predictor.get_input_handle(name).copy_from_cpu(np.ascontiguousarray(feeds[name]))
        self.predictor.run()
        return {n: self.predictor.get_output_handle(n).copy_to_cpu() for n in self.output_names}


def load_source(model_dir: str | Path, name: str | None = None, opset: int = DEFAULT_OPSET) -> Source:
    model_dir = Path(model_dir)
    program, params = find_model_files(model_dir)
    with tempfile.TemporaryDirectory(prefix="ocrgraft-p2o-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        convert_to_onnx(program, params, onnx_path, opset)
        model = load(onnx_path)
    predictor = PaddlePredictor(program, params)
    onnx_outputs = [v.name for v in model.graph.outputs]

    def reference(feeds):  # Paddle's output names may differ from the ONNX ones: match by position
        outs = predictor(feeds)
        return dict(zip(onnx_outputs, outs.values()))

    fmt = "inference.json (PIR)" if program.suffix == ".json" else ".pdmodel (legacy)"
    return Source(
        name=name or model_dir.name,
        framework="paddle",
        model=model,
        reference=reference,
        location=str(program),
        notes=[f"Paddle {fmt} converted with paddle2onnx at opset {opset}"],
    )


def load_recipe_source(recipe, weights: str | Path | None = None) -> Source:
    """A zoo recipe (`source = "zoo:<name>"`: built and saved by ocrgraft) or a model folder."""
    opset = int(recipe.options.get("paddle", {}).get("opset", DEFAULT_OPSET))
    if not recipe.source.startswith("zoo:"):
        if weights:
            raise OcrgraftError(
                "--weights applies to zoo models; a Paddle model folder carries its own .pdiparams"
            )
        return load_source(recipe.source, name=recipe.name, opset=opset)
    arrays = load_arrays(weights, "weights file") if weights else None  # a .pdparams is a pickle: read safely
    workdir = tempfile.TemporaryDirectory(prefix=f"ocrgraft-{recipe.name}-")
    cmd = [sys.executable, "-m", "ocrgraft.models.paddle_rec", recipe.source[4:], workdir.name]
    if weights:  # handed to the child as plain arrays
        np.savez(Path(workdir.name) / "weights.npz", **arrays)
        cmd += ["--weights", str(Path(workdir.name) / "weights.npz")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, GLOG_minloglevel="2"))
    if proc.returncode:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise OcrgraftError(f"building the Paddle model '{recipe.name}' failed: {last[0]}")
    source = load_source(workdir.name, name=recipe.name, opset=opset)
    source.workdir = workdir  # the Paddle files must outlive the reference predictor
    source.notes.insert(
        0,
        f"weights: {weights}"
        if weights
        else (
            "weights: none given, fixed-seed random initialization "
            "(the numbers are checked, not the accuracy)"
        ),
    )
    return source


if __name__ == "__main__":
    sys.exit(_worker(*sys.argv[1:5]))
