#!/usr/bin/env python3
"""Build a TensorRT engine from the final ONNX with one optimization profile per input, using the
TensorRT Python API; then (optional, --check) run it on the saved test inputs and compare with the
ONNX Runtime outputs saved next to this script. Settings come from engine_config.json beside it.
For INT8 it calibrates on calib_inputs.npz with TensorRT's entropy calibrator and writes
calibration.cache, which trtexec.sh reads (--calib). Written for TensorRT 8.6 / 10.x: TensorRT 11
removed the precision builder flags and implicit calibrators.

    python build_engine.py            # build model.engine
    python build_engine.py --check    # build, run, compare; prints one JSON line with the errors
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import tensorrt as trt

HERE = Path(__file__).resolve().parent


def build(cfg: dict) -> bytes:
    if int(trt.__version__.split(".")[0]) >= 11 and (cfg["fp16"] or cfg["int8"]):
        sys.exit(
            f"TensorRT {trt.__version__} has no FP16/INT8 builder flags (removed in 11); these scripts "
            "target TensorRT 8.6 / 10.x"
        )
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if int(trt.__version__.split(".")[0]) < 10:  # explicit batch is the only mode from TensorRT 10 on
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    onnx_path = HERE / cfg["onnx"]
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        sys.exit(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg["workspace_mib"] << 20)
    if cfg["fp16"]:
        config.set_flag(trt.BuilderFlag.FP16)
    if cfg["int8"]:
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator(cfg)
    keep = set(cfg.get("keep_fp32", []))
    if keep:  # the keep-list (precision.json): these layers compute and write float32
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.name in keep:
                layer.precision = trt.float32
                for k in range(layer.num_outputs):
                    layer.set_output_type(k, trt.float32)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in cfg["profiles"].items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    if cfg["int8"]:
        config.set_calibration_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        sys.exit("TensorRT failed to build the engine (see the log above)")
    return bytes(engine)


def calibrator(cfg: dict):
    """INT8 calibration on calib_inputs.npz (polygraphy manages the device buffers); an existing
    calibration.cache is read instead of calibrating again."""
    from polygraphy.backend.trt import Calibrator

    data = np.load(HERE / "calib_inputs.npz")
    groups = sorted({k.split("/")[0] for k in data.files})
    batches = [{k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(g + "/")} for g in groups]
    return Calibrator(batches, cache=str(HERE / "calibration.cache"))


def check(engine_bytes: bytes) -> dict:
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    inputs, expected = np.load(HERE / "check_inputs.npz"), np.load(HERE / "check_expected.npz")
    worst = {}
    with TrtRunner(EngineFromBytes(engine_bytes)) as runner:
        for group in sorted({k.split("/")[0] for k in inputs.files}):
            feeds = {k.split("/", 1)[1]: inputs[k] for k in inputs.files if k.startswith(group + "/")}
            outputs = runner.infer(feeds)
            for key in (k for k in expected.files if k.startswith(group + "/")):
                name = key.split("/", 1)[1]
                got = np.asarray(outputs[name])
                err = float(np.abs(got.astype(np.float64) - expected[key]).max())
                worst[name] = max(worst.get(name, 0.0), err)
    return {"max_abs_by_output": worst}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="run the engine on the saved inputs and compare")
    args = ap.parse_args()
    cfg = json.loads((HERE / "engine_config.json").read_text())
    engine = build(cfg)
    (HERE / cfg["engine"]).write_bytes(engine)
    print(f"wrote {HERE / cfg['engine']} ({len(engine)} bytes), TensorRT {trt.__version__}", file=sys.stderr)
    if args.check:
        print(json.dumps(check(engine)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
