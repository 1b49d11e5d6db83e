"""Generic passes: each fires on its pattern, leaves other graphs alone, is idempotent and exact."""

import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

from ocrgraft import OcrgraftError, Pipeline, get_pass
from ocrgraft.core.modelio import load
from ocrgraft.passes import GENERIC_PASSES, list_passes

from conftest import DYN_SHAPES, make_dynamic_model

# pass -> (op type it removes from the crafted model, or None)
EXPECTED = {
    "eliminate-identity": "Identity",
    "lift-constants": "Constant",
    "remove-dead-nodes": "Neg",
}


def _ops(model: ir.Model) -> list[str]:
    return [n.op_type for n in model.graph]


def _plain_model() -> onnx.ModelProto:
    """No Identity, no Constant node, no dead code, nothing to fold: every generic pass must leave it
    alone."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sigmoid", ["r"], ["y"])],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        value_info=[helper.make_tensor_value_info("r", TensorProto.FLOAT, ["n", 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.mark.parametrize("name", GENERIC_PASSES)
def test_pass_is_exact_idempotent_and_fires_on_its_pattern(name):
    model = make_dynamic_model()
    result = Pipeline([name, name]).run(model, DYN_SHAPES)
    first, second = result.stages[1], result.stages[2]
    if name in EXPECTED:
        assert first.rewrites >= 1 and EXPECTED[name] not in _ops(result.model)
    assert first.verified in ("yes", "unchanged")
    assert second.rewrites == 0 and not second.changed, f"{name} is not idempotent"


@pytest.mark.parametrize("name", GENERIC_PASSES)
def test_pass_leaves_a_graph_without_its_pattern_untouched(name):
    model = ir.serde.deserialize_model(_plain_model())
    before = onnx.printer.to_text(ir.serde.serialize_model(model).graph)
    result = get_pass(name)(model)
    assert result.rewrites == 0 and not result.modified
    assert onnx.printer.to_text(ir.serde.serialize_model(model).graph) == before


def test_fold_constants_folds_constant_arithmetic_but_not_dynamic_shapes():
    result = Pipeline(["lift-constants", "fold-constants"]).run(make_dynamic_model(), DYN_SHAPES)
    ops = _ops(result.model)
    assert "Add" not in ops  # 1.5 + 0.5 folded
    assert "Shape" in ops and "Reshape" in ops  # batch and width stay computed at run time
    assert result.stages[2].verified == "yes"


def _duplicated_model() -> onnx.ModelProto:
    """Two copies of Shape(x) -> Gather(0) with their own equal constants, two equal Relus that are both
    graph outputs, and a Gather by a different index that must stay apart."""
    i64 = lambda name, v: helper.make_tensor(name, TensorProto.INT64, [], [v])  # noqa: E731
    nodes = [
        helper.make_node("Shape", ["x"], ["s1"]),
        helper.make_node("Shape", ["x"], ["s2"]),
        helper.make_node("Gather", ["s1", "zero_a"], ["n1"]),
        helper.make_node("Gather", ["s2", "zero_b"], ["n2"]),
        helper.make_node("Gather", ["s2", "one"], ["w"]),
        helper.make_node("Add", ["n1", "n2"], ["nn"]),
        helper.make_node("Add", ["nn", "w"], ["k"]),
        helper.make_node("Relu", ["x"], ["y1"]),
        helper.make_node("Relu", ["x"], ["y2"]),
    ]
    graph = helper.make_graph(
        nodes,
        "dups",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "w"])],
        [
            helper.make_tensor_value_info("y1", TensorProto.FLOAT, ["n", "w"]),
            helper.make_tensor_value_info("y2", TensorProto.FLOAT, ["n", "w"]),
            helper.make_tensor_value_info("k", TensorProto.INT64, []),
        ],
        [i64("zero_a", 0), i64("zero_b", 0), i64("one", 1)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_merge_duplicates_keeps_one_copy_and_every_output():
    result = Pipeline(["merge-duplicates", "merge-duplicates"]).run(_duplicated_model(), "x:1x3,2x5,4x9")
    ops = _ops(result.model)
    assert ops.count("Shape") == 1 and ops.count("Gather") == 2 and ops.count("Relu") == 1
    assert len(result.model.graph.initializers) == 2  # zero_a == zero_b, one stays
    assert [v.name for v in result.model.graph.outputs] == ["y1", "y2", "k"]
    assert result.stages[1].verified == "yes" and result.stages[2].rewrites == 0


def test_infer_shapes_replaces_a_stale_output_annotation():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "stale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 100])],
    )  # wrong: w is dynamic
    result = get_pass("infer-shapes")(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    assert [d if isinstance(d, int) else d.value for d in result.model.graph.outputs[0].shape] == ["n", "w"]
    assert result.rewrites == 1


def test_rename_and_fix_dims():
    model = ir.serde.deserialize_model(make_dynamic_model())
    assert get_pass("rename-dims(x.3=w)")(model).rewrites == 1
    assert model.graph.inputs[0].shape[3].value == "w"
    assert get_pass("rename-dims(x.3=w)")(model).rewrites == 0
    assert get_pass("fix-dims(x.0=1)")(model).rewrites == 1
    assert model.graph.inputs[0].shape[0] == 1
    assert model.graph.outputs[0].shape[0] == 1  # the same symbol in outputs follows
    assert get_pass("fix-dims(x.0=1)")(model).rewrites == 0


@pytest.mark.parametrize(
    "spec, message",
    [
        ("fix-dims(x.1=4)", "already fixed at 3"),
        ("fix-dims(x.0=zero)", "not a positive integer"),
        ("fix-dims(q.0=1)", "no input 'q'"),
        ("fix-dims(x.9=1)", "no axis 9"),
        ("rename-dims(x.1=c)", "only dynamic dims can be named"),
        ("fix-dim(x.0=1)", "did you mean 'fix-dims'"),
        ("eliminate-identity(k=1)", "has no argument k; it takes no arguments"),
        ("split-pool(kernel=9)", "has no argument kernel; it takes max_kernel=255"),
    ],
)
def test_pass_argument_errors_are_clear(spec, message):
    model = ir.serde.deserialize_model(make_dynamic_model())
    with pytest.raises(OcrgraftError, match=message):
        get_pass(spec)(model)


def test_generic_passes_on_the_real_ppocr_recognizer(ppocr_rec):
    """An external paddle2onnx export: outputs equal at three widths, both dims stay dynamic, idempotent."""
    model = load(ppocr_rec)
    result = Pipeline(list(GENERIC_PASSES), samples=1).run(model, "x:1x3x48x32,2x3x48x160,3x3x48x400")
    dims = list(result.model.graph.inputs[0].shape)
    assert not isinstance(dims[0], int) and not isinstance(dims[3], int)
    assert result.stages[-1].nodes < result.stages[0].nodes
    again = Pipeline(list(GENERIC_PASSES), verify=False).run(result.model)
    assert all(s.rewrites == 0 for s in again.stages[1:])


def test_every_registered_pass_has_a_doc_and_valid_kind():
    for cls in list_passes():
        assert cls.doc() and len(cls.doc()) < 160, cls.name
        assert cls.semantics in ("exact", "legalize", "changes")
