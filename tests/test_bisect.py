"""A stage that changes the numbers is bisected to the first diverging tensor, and a failed conversion
keeps `<out>.failed/` with the stages so far, the failing pair and what to try."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import helper, numpy_helper

from ocrgraft.converter.convert import convert
from ocrgraft.converter.pipeline import Pipeline
from ocrgraft.core.bisect import first_divergence
from ocrgraft.core.compare import Tolerance
from ocrgraft.core.errors import VerificationError
from ocrgraft.core.modelio import to_bytes, to_ir
from ocrgraft.passes import Pass

SHAPES = "x:1x3x8x12,2x3x8x20"


def conv_chain(depth: int = 4) -> onnx.ModelProto:
    """x -> (Conv -> Relu) x depth, 3 channels, random weights."""
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i in range(depth):
        w = numpy_helper.from_array(rng.uniform(-0.5, 0.5, (3, 3, 3, 3)).astype(np.float32), f"w{i}")
        inits.append(w)
        nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"))
        prev = f"r{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 3, 8, "w"])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 3, 8, "w"])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


class BreakConv(Pass):
    """A wrong pass: nudges one weight of the named Conv."""

    name = "break-conv"

    def __init__(self, node: str = "conv2"):
        super().__init__()
        self.node = node

    def rewrite(self, model: ir.Model) -> int:
        conv = next(n for n in model.graph if n.name == self.node)
        w = conv.inputs[1]
        array = w.const_value.numpy().copy()
        array.flat[0] += 0.25
        w.const_value = ir.tensor(array, name=w.name)
        return 1


@pytest.mark.parametrize("node", ["conv1", "conv3"])
def test_a_wrong_pass_is_traced_to_the_node_it_broke(node):
    with pytest.raises(VerificationError) as err:
        Pipeline(["eliminate-identity", BreakConv(node)]).run(conv_chain(), SHAPES)
    where = err.value.divergence
    assert where is not None and where.node == node and where.op == "Conv"
    assert where.tensor == f"c{node[-1]}" and float(where.error.split()[-1]) > 1e-3
    assert f"first diverging tensor 'c{node[-1]}'" in str(err.value) and f"node '{node}' (Conv;" in str(
        err.value
    )
    assert "[1x3x8x12]" in where.describe()  # the inputs' shapes at the failing case


def test_equal_graphs_have_no_divergence():
    model = to_ir(conv_chain())
    feeds = {"x": np.random.default_rng(1).uniform(0.05, 1, (1, 3, 8, 12)).astype(np.float32)}
    assert first_divergence(to_bytes(model), to_bytes(model), feeds, Tolerance()) is None


def test_a_failed_conversion_keeps_the_stages_the_pair_and_what_to_try(tmp_path):
    source = tmp_path / "chain.onnx"
    onnx.save(conv_chain(), source)
    with pytest.raises(VerificationError) as err:
        convert(
            onnx=source,
            out=tmp_path / "out",
            passes=["eliminate-identity", "fold-constants", BreakConv("conv2")],
            shapes=SHAPES,
            progress=lambda m: None,
        )
    failed = tmp_path / "out" / "chain-ort.failed"
    assert str(failed) in str(err.value)
    assert not (tmp_path / "out" / "chain-ort").exists()  # no half-written result
    assert (failed / "pair" / "before.onnx").is_file() and (failed / "pair" / "after.onnx").is_file()
    assert (failed / "stages" / "03_break-conv.onnx").is_file()
    text = (failed / "failure.md").read_text()
    assert "Stage 03 'break-conv'" in text and "from node `conv2` (Conv" in text
    assert "--passes eliminate-identity,fold-constants" in text and "--atol" in text
    # the pair really differs where the report says
    before, after = (to_ir(onnx.load(failed / "pair" / n)) for n in ("before.onnx", "after.onnx"))
    feeds = {"x": np.random.default_rng(2).uniform(0.05, 1, (1, 3, 8, 12)).astype(np.float32)}
    assert first_divergence(to_bytes(before), to_bytes(after), feeds, Tolerance()).node == "conv2"
