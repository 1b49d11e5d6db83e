"""Running a model in ONNX Runtime on the CPU; its errors become one-line OcrgraftErrors."""

from __future__ import annotations

import functools
import os
import re
import time

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.modelio import to_bytes


class Runner:
    """An ONNX Runtime CPU session on an in-memory model; errors become one-line OcrgraftErrors."""

    def __init__(
        self, model: ir.Model | bytes, what: str = "model", threads: int | None = None, optimize: bool = True
    ):
        self.what = what
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if not optimize:  # the model's float32 noise floor is how far ONNX Runtime's own rewrites move it
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        threads = threads or int(os.environ.get("OCRGRAFT_THREADS") or 0)  # a matrix cell's share of cores
        if threads:
            opts.intra_op_num_threads = threads
        try:
            data = model if isinstance(model, bytes) else to_bytes(model)
            self.session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            custom = re.search(r"([\w.]+:\w+)\(-?\d+\) is not a registered function/op", str(exc))
            if custom:  # a custom op: nothing can be checked, and ONNX Runtime's words do not say why
                raise OcrgraftError(
                    f"ONNX Runtime cannot load {what}: it has no operator {custom.group(1)} (a custom op), "
                    "so it cannot be run or checked here; `ocrgraft apply --no-verify` rewrites a model "
                    "unchecked"
                ) from exc
            raise OcrgraftError(f"ONNX Runtime cannot load {what}: {_short(exc)}") from exc
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            outs = self.session.run(None, feeds)
        except Exception as exc:
            shapes = ", ".join(f"{k}={'x'.join(map(str, v.shape))}" for k, v in feeds.items())
            raise OcrgraftError(f"ONNX Runtime failed to run {self.what} at {shapes}: {_short(exc)}") from exc
        return dict(zip(self.output_names, outs))

    def latency_ms(self, feeds: dict[str, np.ndarray], repeats: int = 20, warmup: int = 3) -> float:
        """Median wall time of repeated runs on the same inputs."""
        for _ in range(warmup):
            self.session.run(None, feeds)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            self.session.run(None, feeds)
            times.append((time.perf_counter() - t) * 1e3)
        return float(np.median(times))


def fit_ir_version(model: ir.Model) -> str | None:
    """Lower the model's IR version to the newest ONNX Runtime reads, when the file's is newer but one
    the onnx package knows; a note saying so, else None. The newest onnx writes an IR version a release
    ahead of ONNX Runtime's (onnx 1.23: 14, ONNX Runtime 1.31: 13), in files that use nothing of it."""
    newest = _newest_ir_version()
    if newest is None or not newest < model.ir_version <= onnx.IR_VERSION:  # one onnx does not know: left
        return None
    note = (
        f"ir_version {model.ir_version} lowered to {newest}, the newest ONNX Runtime {ort.__version__} "
        "reads (the graph is unchanged)"
    )
    model.ir_version = newest
    return note


@functools.cache
def _newest_ir_version() -> int | None:
    """The newest IR version ONNX Runtime loads (None: at least onnx's own), from loading a one-node model."""
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph(
        [node], "probe", [value("x", onnx.TensorProto.FLOAT, [1])], [value("y", onnx.TensorProto.FLOAT, [1])]
    )
    probe = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    probe.ir_version = onnx.IR_VERSION
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        found = re.search(r"max supported IR version: (\d+)", str(exc))
        return int(found.group(1)) if found else None
    return None


def _short(exc: BaseException) -> str:
    """ONNX Runtime's message without the C++ source line and function signature it carries."""
    text = re.sub(r"/[\w./-]+\.(?:cc|cpp|h):\d+ [\w:~<>]+\([^)]*\)\s*", " ", " ".join(str(exc).split()))
    return text[:400] or type(exc).__name__
