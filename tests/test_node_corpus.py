"""The generic passes on ONNX's backend node-test corpus (tests/node_corpus.py): no silent change, no crash,
and the verifier's own random inputs are valid for nearly every case; plus the defects it found, in small."""

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common
import pytest
from onnx import TensorProto, helper

from ocrgraft import get_pass
from ocrgraft.core.modelio import to_bytes

import node_corpus as corpus

# case: what went wrong before the fix
KNOWN_BAD = {
    "test_scan_sum": "eliminate-identity listed one Scan body value twice: ORT returned uninitialised memory",
    "test_scan9_sum": "the same, Scan-9",
    "test_scan9_multi_state": "the same, two states",
    "test_scan9_scalar": "the same, a scalar state",
    "test_loop11": "Loop body outputs around an Identity",
    "test_affine_grid_2d_expanded": "eliminate-identity made an If branch return an outer-scope value",
    "test_affine_grid_2d_align_corners_expanded": "the same",
    "test_affine_grid_3d_expanded": "the same",
    "test_affine_grid_3d_align_corners_expanded": "the same",
    "test_split_to_sequence_1": "fold-constants crashed in onnxscript's SplitToSequence evaluator",
    "test_attention_4d_with_past_and_present_qk_matmul_bias_3d_mask_causal_expanded": (
        "the verifier refused a correct rewrite: -inf vs -inf gave abs err nan"
    ),
}
# A spread of other ops: control flow, sequences, strings, indices, axes, shapes, the expanded losses.
OTHERS = [
    "test_if",
    "test_if_seq",
    "test_if_opt",
    "test_loop13_seq",
    "test_sequence_map_add_2_sequences_expanded",
    "test_gather_0",
    "test_gather_elements_1",
    "test_gathernd_example_int32_batch_dim1",
    "test_scatter_elements_with_negative_indices",
    "test_scatternd",
    "test_top_k",
    "test_slice",
    "test_reshape_negative_dim",
    "test_expand_dim_changed",
    "test_split_variable_parts_1d_opset18",
    "test_squeeze",
    "test_unsqueeze_two_axes",
    "test_reduce_sum_keepdims_random",
    "test_cumsum_1d",
    "test_resize_upsample_scales_linear",
    "test_nllloss_NCd1_weight_ii_expanded",
    "test_sce_mean_weight_expanded",
    "test_constant_pad_axes",
    "test_reflect_pad",
    "test_clip_default_min",
    "test_tile",
    "test_constantofshape_int_zeros",
    "test_lstm_with_peepholes",
    "test_string_concat",
    "test_layer_normalization_2d_axis0_expanded",
    "test_attention_4d_causal_nonpad_batch_prefill",
    "test_tensorscatter",
    "test_dft_axis",
    "test_affine_grid_2d",
    "test_constant",
    "test_training_dropout",
]
# Cases the verifier's random inputs cannot serve: a sequence input (refused by name), and AffineGrid's
# expansion, whose size input a Gather takes apart (the sizes must match theta: give them as inputs).
NOT_DRAWN = {
    "test_loop13_seq",
    "test_sequence_map_add_2_sequences_expanded",
    "test_affine_grid_2d_expanded",
    "test_affine_grid_2d_align_corners_expanded",
    "test_affine_grid_3d_expanded",
    "test_affine_grid_3d_align_corners_expanded",
}


@pytest.fixture(scope="module")
def cases():
    return {c.name: c for c in corpus.load_cases()}


@pytest.mark.parametrize("name", [*KNOWN_BAD, *OTHERS])
def test_generic_passes_keep_the_case_outputs(cases, name):
    result = corpus.check_case(cases[name], verifier=True)
    why = KNOWN_BAD.get(name, "")
    assert result.status == "compared", f"{name} ({why}): {result.status}: {result.detail}"
    if name not in NOT_DRAWN:
        assert result.verifier == "compared", result.verifier


def test_whole_corpus_no_silent_change_no_crash():
    """~1900 cases, ~1400 of them run by ORT; about 30 s here. Tolerance: corpus.TOL."""
    results = corpus.run_corpus(verifier=True)
    counts = corpus.summary(results)
    bad = [f"{r.status} {r.name}: {r.detail}" for r in results if r.status in ("silent-change", "crash")]
    assert not bad, "\n".join(bad)
    assert counts["ort-runnable"] > 1300
    assert counts["compared"] >= 0.95 * counts["ort-runnable"], counts
    assert counts["verifier-compared"] >= 0.95 * counts["ort-runnable"], counts


def test_the_harness_sees_a_silent_change(cases):
    """onnx_ir's IdentityEliminationPass (what eliminate-identity wrapped) breaks test_scan_sum: the harness
    must say so, or its zero means nothing."""
    case = cases["test_scan_sum"]
    model = ir.serde.deserialize_model(case.model)
    common.IdentityEliminationPass()(model)
    feeds, _ = case.data_sets[0]
    want = corpus.ort_outputs(corpus.session(case.model.SerializeToString()), feeds)
    try:
        got = corpus.ort_outputs(corpus.session(to_bytes(model)), feeds)
    except Exception:  # noqa: BLE001  (ORT refusing the broken model is a change too)
        return
    assert any(corpus.differ(got[k], want[k]) for k in want)


def _model(nodes, inputs, outputs, opset=18) -> ir.Model:
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    return ir.serde.deserialize_model(proto)


def _run(model: ir.Model, feeds: dict) -> list:
    return corpus.session(to_bytes(model)).run(None, feeds)


def _vi(name, shape=(2, 3)):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def test_eliminate_identity_keeps_an_output_that_copies_another_output():
    """y = Relu(x), z = Identity(y), outputs (y, z): removing the Identity would list y twice."""
    model = _model(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Identity", ["y"], ["z"])],
        [_vi("x")],
        [_vi("y"), _vi("z")],
    )
    assert get_pass("eliminate-identity")(model).rewrites == 0
    assert [v.name for v in model.graph.outputs] == ["y", "z"]
    x = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
    y, z = _run(model, {"x": x})
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    np.testing.assert_array_equal(z, y)


def test_eliminate_identity_removes_a_copy_into_an_output_and_keeps_the_name():
    model = _model(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Identity", ["r"], ["y"]),
            helper.make_node("Identity", ["x"], ["x_copy"]),
        ],
        [_vi("x")],
        [_vi("y"), _vi("x_copy")],
    )
    assert get_pass("eliminate-identity")(model).rewrites == 1  # x -> x_copy stays: x is an input
    assert [v.name for v in model.graph.outputs] == ["y", "x_copy"]
    assert [n.op_type for n in model.graph] == ["Relu", "Identity"]


def test_eliminate_identity_keeps_a_branch_output_from_the_outer_scope():
    """An If branch `out = Identity(outer)` must stay: ORT refuses a branch returning an outer value."""
    then = helper.make_graph([helper.make_node("Identity", ["a"], ["t"])], "then", [], [_vi("t")])
    other = helper.make_graph([helper.make_node("Neg", ["a"], ["e"])], "else", [], [_vi("e")])
    model = _model(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other),
        ],
        [_vi("x"), helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [_vi("y")],
    )
    get_pass("eliminate-identity")(model)
    onnx.checker.check_model(ir.serde.serialize_model(model), full_check=True)
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(_run(model, {"x": x, "c": np.array(True)})[0], x)
