"""Vendor-only forms: topk-int32 for Ascend, and how the pipeline treats stages after one."""

import numpy as np
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

from ocrgraft import Pipeline, get_pass
from ocrgraft.targets import get_target


def topk_model(k=3):
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("TopK", ["r", "k"], ["v", "i"], axis=1)],
        "topk",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 10])],
        [
            helper.make_tensor_value_info("v", TensorProto.FLOAT, ["n", k]),
            helper.make_tensor_value_info("i", TensorProto.INT64, ["n", k]),
        ],
        [numpy_helper.from_array(np.array([k], np.int64), "k")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_topk_k_becomes_int32_once_and_ascend_accepts_it():
    model = ir.serde.deserialize_model(topk_model())
    assert not get_target("ascend").check_support(model).ok
    assert get_pass("topk-int32")(model).rewrites == 1
    topk = next(n for n in model.graph if n.op_type == "TopK")
    assert topk.inputs[1].const_value.numpy().dtype == np.int32
    assert get_pass("topk-int32")(model).rewrites == 0
    assert get_target("ascend").check_support(model).ok


def test_graph_without_topk_is_untouched():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
    )
    model = ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    assert get_pass("topk-int32")(model).rewrites == 0


def test_stages_after_a_vendor_form_are_not_claimed_verified():
    result = Pipeline(["lift-constants", "topk-int32", "infer-shapes"]).run(topk_model(), "x:1x10,3x10")
    verified = [s.verified for s in result.stages]
    assert verified[1] in ("yes", "unchanged")
    assert verified[2].startswith("not checked: a vendor-only form")
    assert verified[3].startswith(
        "not checked: ONNX Runtime cannot run the vendor-only form made at stage 02"
    )


def test_after_an_opt_in_changes_pass_stages_compare_with_it_not_the_source():
    graph = helper.make_graph(
        [
            helper.make_node("Resize", ["x", "", "scales"], ["r"], mode="nearest"),
            helper.make_node("Identity", ["r"], ["y"]),
        ],
        "up",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2, 8, 8])],
        [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    result = Pipeline(["resize-nearest-to-bilinear", "eliminate-identity"]).run(proto, "x:1x2x4x4,2x2x4x4")
    assert result.stages[1].rewrites == 1 and result.stages[1].verified.startswith(
        "not checked: changes the numbers"
    )
    assert (
        result.stages[2].verified == "yes"
        and result.stages[2].max_abs is None
        and result.stages[2].max_abs_prev == 0.0
    )


def test_a_run_time_k_is_left_and_explained():
    graph = helper.make_graph(
        [
            helper.make_node("Shape", ["x"], ["s"]),
            helper.make_node("Gather", ["s", "one"], ["k"]),
            helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1, name="top"),
        ],
        "topk",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 10])],
        [
            helper.make_tensor_value_info("v", TensorProto.FLOAT, ["n", None]),
            helper.make_tensor_value_info("i", TensorProto.INT64, ["n", None]),
        ],
        [numpy_helper.from_array(np.array([1], np.int64), "one")],
    )
    model = ir.serde.deserialize_model(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    )
    result = Pipeline(["topk-int32"], explain=True).run(model, "x:2x10")
    assert result.stages[1].rewrites == 0
    assert result.stages[1].explain == [
        "TopK at node 'top': its K 'k' is computed at run time, so it stays INT64 "
        "(TopKInt64K: condition failed)"
    ]
    done = ir.serde.deserialize_model(topk_model())
    get_pass("topk-int32")(done)
    again = Pipeline(["topk-int32"], explain=True, verify=False).run(done)
    assert again.stages[1].explain == [] and again.stages[1].rewrites == 0  # already INT32: nothing to say
