"""Export-like graphs of any size for the scale benchmark.

Each residual block is what exporters leave around a Conv layer: Conv -> BatchNormalization -> Relu ->
Add (the skip), then an Identity and a view that flattens with a target computed at run time
(Shape -> Gather -> Unsqueeze -> Concat -> Reshape) and a Reshape back to the saved Shape. Batch and
width stay dynamic; 12 nodes per block.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NODES_PER_BLOCK = 12
CHANNELS, HEIGHT = 4, 4
INPUT = "x"
SHAPES = {
    "a": (1, CHANNELS, HEIGHT, 16),
    "b": (3, CHANNELS, HEIGHT, 40),
}  # the two test shapes (batch, width differ)


def residual_graph(nodes: int, seed: int = 0) -> onnx.ModelProto:
    """About `nodes` nodes: nodes // 12 residual blocks on x[batch, 4, 4, width]."""
    rng = np.random.default_rng(seed)
    c = CHANNELS
    inits = [
        numpy_helper.from_array(np.array([0], np.int64), "axes0"),
        numpy_helper.from_array(np.array([c, -1], np.int64), "c_rest"),
    ]
    out, x = [], INPUT
    for b in range(max(1, nodes // NODES_PER_BLOCK)):
        p = f"blk{b}"
        weights = {
            "w": rng.normal(0, 0.3, (c, c, 3, 3)),
            "b": rng.normal(0, 0.1, c),
            "scale": rng.uniform(0.5, 1.5, c) * 1e-3,
            "bias": rng.normal(0, 1e-3, c),  # small, so 4000 skips
            "mean": rng.normal(0, 0.1, c),
            "var": rng.uniform(0.5, 1.5, c),  # stay finite
        }
        inits += [numpy_helper.from_array(v.astype(np.float32), f"{p}.{k}") for k, v in weights.items()]
        out += [
            helper.make_node("Conv", [x, f"{p}.w", f"{p}.b"], [f"{p}/conv"], pads=[1, 1, 1, 1]),
            helper.make_node(
                "BatchNormalization",
                [f"{p}/conv", f"{p}.scale", f"{p}.bias", f"{p}.mean", f"{p}.var"],
                [f"{p}/bn"],
                epsilon=1e-5,
            ),
            helper.make_node("Relu", [f"{p}/bn"], [f"{p}/relu"]),
            helper.make_node("Add", [f"{p}/relu", x], [f"{p}/add"]),
            helper.make_node("Identity", [f"{p}/add"], [f"{p}/id"]),
            helper.make_node("Shape", [f"{p}/id"], [f"{p}/shape"]),
            helper.make_node(
                "Constant", [], [f"{p}/zero"], value=numpy_helper.from_array(np.array(0, np.int64))
            ),
            helper.make_node("Gather", [f"{p}/shape", f"{p}/zero"], [f"{p}/n"], axis=0),
            helper.make_node("Unsqueeze", [f"{p}/n", "axes0"], [f"{p}/n1"]),
            helper.make_node("Concat", [f"{p}/n1", "c_rest"], [f"{p}/target"], axis=0),
            helper.make_node("Reshape", [f"{p}/id", f"{p}/target"], [f"{p}/flat"]),
            helper.make_node("Reshape", [f"{p}/flat", f"{p}/shape"], [f"{p}/out"]),
        ]
        x = f"{p}/out"
    out.append(helper.make_node("Identity", [x], ["y"]))
    graph = helper.make_graph(
        out,
        "residual",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", CHANNELS, HEIGHT, "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", CHANNELS, HEIGHT, "width"])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def feeds(shape_name: str, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {INPUT: rng.uniform(-1, 1, SHAPES[shape_name]).astype(np.float32)}
