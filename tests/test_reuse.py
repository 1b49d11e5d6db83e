"""A stage's check runs only what changed: value keys, the plan, and that the proof is the same."""

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from ocrgraft import Pipeline, VerificationError
from ocrgraft.core.compare import Tolerance, compare_outputs
from ocrgraft.core.modelio import to_ir
from ocrgraft.core.reuse import TensorKeys, layout, plan
from ocrgraft.core.runner import Runner
from ocrgraft.passes.base import Pass

SHAPES = "x:1x3x8x16,2x3x8x40,4x3x8x96"


def make_model(scale: float = 2.0) -> onnx.ModelProto:
    """x[N,3,8,W] -> Conv -> Relu -> Conv -> Relu (the costly part) -> Transpose -> Mul(scale) -> Add -> y."""
    rng = np.random.default_rng(3)
    inits = [
        numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(size=(8, 8, 3, 3)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.array(scale, np.float32), "scale"),
        numpy_helper.from_array(rng.normal(size=(8,)).astype(np.float32), "bias"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["feat"]),
        helper.make_node("Transpose", ["feat"], ["t"], perm=[0, 2, 3, 1]),
        helper.make_node("Mul", ["t", "scale"], ["m"]),
        helper.make_node("Add", ["m", "bias"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


class DoubleByAdd(Pass):
    """Test only: Mul(t, 2) -> Add(t, t), an exact rewrite of the head."""

    name = "test-double-by-add"

    def rewrite(self, model: ir.Model) -> int:
        mul = next(n for n in model.graph if n.op_type == "Mul")
        t = mul.inputs[0]
        add = ir.node("Add", [t, t], name="double")
        model.graph.insert_before(mul, add)
        mul.outputs[0].replace_all_uses_with(add.outputs[0])
        add.outputs[0].name = "m2"
        model.graph.remove(mul, safe=True)
        return 1


class SkewHead(Pass):
    """Test only: the head's bias moved by 1e-3 in one element: wrong, and only in the head."""

    name = "test-skew-head"

    def rewrite(self, model: ir.Model) -> int:
        bias = model.graph.initializers["bias"]
        arr = bias.const_value.numpy().copy()
        arr[5] += 1e-3
        bias.const_value = ir.tensor(arr, name="bias")
        return 1


def test_a_head_rewrite_runs_only_the_head_and_gets_the_whole_models_numbers():
    result = Pipeline([DoubleByAdd()]).run(make_model(), SHAPES)
    stage = result.stages[1]
    assert stage.verified == "yes"
    assert stage.ran.startswith("ran 2 of 7 nodes; the rest as stage 00 computed it"), stage.ran
    whole = Runner(result.model)
    for case in result.cases:  # what the part gave is what the whole stage gives
        diffs = compare_outputs(whole.run(case.feeds), result.final_outputs[case.title], Tolerance(1e-6, 0))
        assert all(d.ok for d in diffs), case.title


def test_a_wrong_head_is_caught_from_the_kept_tensors_and_later_stages_are_not_left(tmp_path):
    skewed = to_ir(make_model())
    SkewHead()(skewed)
    keys = TensorKeys()
    assert plan([layout(to_ir(make_model()), keys), layout(skewed, keys)])[1].part == {"y"}  # only the Add
    with pytest.raises(VerificationError, match="stage 01 'test-skew-head' changed the outputs"):
        Pipeline([SkewHead(), DoubleByAdd()], stages_dir=tmp_path, floor_multiple=None).run(
            make_model(), SHAPES
        )
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == ["00_source.onnx", "01_test-skew-head.onnx"]


def test_a_stage_computing_the_same_runs_no_node():
    """lift-constants turns a Constant node into an initializer: the same tensor, the same keys."""
    model = make_model()
    mul = model.graph.node[5]
    model.graph.node.insert(5, helper.make_node("Constant", [], ["k"], value=model.graph.initializer[2]))
    mul.input[1] = "k"
    del model.graph.initializer[2]
    result = Pipeline(["lift-constants"]).run(model, SHAPES)
    assert result.stages[1].ran == "ran no node: the same computation as stage 00"
    assert result.stages[1].verified == "yes"


def _keys(proto: onnx.ModelProto) -> dict[str, bytes]:
    return layout(to_ir(proto), TensorKeys()).keys


def test_value_keys_follow_the_computation_not_the_names():
    base = _keys(make_model())
    renamed = make_model()
    for node in renamed.graph.node:
        node.output[:] = [f"{o}_x" if o != "y" else o for o in node.output]
        node.input[:] = [f"{i}_x" if i in ("c1", "r1", "c2", "feat", "t", "m") else i for i in node.input]
    assert _keys(renamed)["feat_x"] == base["feat"] and _keys(renamed)["y"] == base["y"]

    other_scale = _keys(make_model(scale=2.5))
    assert other_scale["feat"] == base["feat"] and other_scale["m"] != base["m"]

    pads = make_model()
    pads.graph.node[2].attribute[0].ints[:] = [0, 1, 0, 1]  # the second Conv's pads
    assert _keys(pads)["r1"] == base["r1"] and _keys(pads)["c2"] != base["c2"]

    opset = make_model()
    opset.opset_import[0].version = 14  # an operator's meaning can change between opsets
    assert _keys(opset)["c1"] != base["c1"]


def test_a_graph_with_a_subgraph_runs_whole_at_every_stage():
    """An If's branches read outer tensors by name: no keys for such a graph; every check runs it whole."""
    model = make_model()
    out = helper.make_tensor_value_info("b", TensorProto.FLOAT, None)
    branch = helper.make_graph([helper.make_node("Identity", ["y"], ["b"])], "branch", [], [out])
    cond = numpy_helper.from_array(np.array(True), "cond")
    model.graph.initializer.append(cond)
    model.graph.node.append(helper.make_node("If", ["cond"], ["z"], then_branch=branch, else_branch=branch))
    model.graph.output[0].name = "z"
    assert layout(to_ir(model), TensorKeys()) is None
    result = Pipeline([DoubleByAdd()]).run(model, SHAPES)
    assert result.stages[1].verified == "yes" and result.stages[1].ran == ""
