"""The verifier's own inputs: valid random inputs for indices, axes and shapes, rank-0 inputs, user-given
inputs, sequences refused by name, and no stage called verified when nothing was compared."""

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ocrgraft import OcrgraftError, Pipeline
from ocrgraft.core.compare import FP32, diff_arrays
from ocrgraft.core.modelio import to_bytes
from ocrgraft.core.shapes import ShapeSet, random_inputs

F, I64 = TensorProto.FLOAT, TensorProto.INT64


def _model(nodes, inputs, outputs, initializers=(), opset=18) -> ir.Model:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    return ir.serde.deserialize_model(proto)


def _vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def test_equal_infinities_are_equal():
    inf = np.array([-np.inf, np.inf, 1.0, np.nan], np.float32)
    d = diff_arrays("y", inf, inf.copy(), FP32)
    assert d.ok and d.max_abs == 0.0
    assert not diff_arrays("y", np.array([np.inf]), np.array([-np.inf]), FP32).ok
    assert not diff_arrays("y", np.array([np.inf]), np.array([3e38]), FP32).ok
    assert not diff_arrays("y", np.array([np.nan]), np.array([1.0]), FP32).ok


def test_strings_compare_equal_or_not():
    words = np.array(["a", "b"], dtype=object)
    assert diff_arrays("s", words, words.copy(), FP32).ok
    other = np.array(["a", "c"], dtype=object)
    assert "string at [1] differs" in diff_arrays("s", words, other, FP32).describe()


def test_a_correct_rewrite_with_infinite_outputs_is_verified():
    """Log(0) = -inf everywhere: eliminate-identity changes nothing but is refused if -inf != -inf."""
    model = _model(
        [
            helper.make_node("Mul", ["x", "zero"], ["z"]),
            helper.make_node("Log", ["z"], ["l"]),
            helper.make_node("Identity", ["l"], ["y"]),
        ],
        [_vi("x", F, [2, 3])],
        [_vi("y", F, [2, 3])],
        [numpy_helper.from_array(np.float32(0), "zero")],
    )
    assert Pipeline(["eliminate-identity"]).run(model).stages[1].verified == "yes"


def test_rank0_inputs_are_arrays_and_run():
    model = _model(
        [helper.make_node("Add", ["x", "s"], ["y"])], [_vi("x", F, [2]), _vi("s", F, [])], [_vi("y", F, [2])]
    )
    feeds = random_inputs(list(model.graph.inputs), {"x": (2,), "s": ()}, seed=0)
    assert isinstance(feeds["s"], np.ndarray) and feeds["s"].shape == () and feeds["s"].dtype == np.float32
    assert Pipeline(["infer-shapes"]).run(model).stages[0].verified == "reference"


def _index_model() -> ir.Model:
    """Integer inputs each op reads as indices, a count, axes, slice bounds or a shape, at fixed shapes."""
    nodes = [
        helper.make_node("Gather", ["data", "idx"], ["g"], axis=1),
        helper.make_node("GatherElements", ["data", "eidx"], ["ge"], axis=0),
        helper.make_node("GatherND", ["data", "nidx"], ["gn"]),
        helper.make_node("TopK", ["data", "k"], ["tv", "ti"], axis=1),
        helper.make_node("ReduceSum", ["cube", "axes"], ["rs"]),
        helper.make_node("Slice", ["data", "starts", "ends", "sax"], ["sl"]),
        helper.make_node("Reshape", ["cube", "shape"], ["rh"]),
        helper.make_node("OneHot", ["hot", "depth", "onoff"], ["oh"]),
        helper.make_node("Unsqueeze", ["target", "one"], ["t1"]),  # target reaches GatherElements
        helper.make_node("GatherElements", ["data", "t1"], ["loss"], axis=1),  # through an Unsqueeze
    ]
    inputs = [
        _vi("data", F, [4, 7]),
        _vi("cube", F, [2, 3, 4]),
        _vi("idx", I64, [5]),
        _vi("eidx", I64, [3, 7]),
        _vi("nidx", I64, [6, 2]),
        _vi("k", I64, [1]),
        _vi("axes", I64, [2]),
        _vi("starts", I64, [1]),
        _vi("ends", I64, [1]),
        _vi("sax", I64, [1]),
        _vi("shape", I64, [2]),
        _vi("hot", I64, [5]),
        _vi("target", I64, [4]),
    ]
    outputs = [_vi(n, F, None) for n in ("g", "ge", "gn", "tv", "rs", "sl", "rh", "oh", "loss")]
    inits = [
        numpy_helper.from_array(np.array(6, np.int64), "depth"),
        numpy_helper.from_array(np.array([0, 1], np.float32), "onoff"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
    ]
    return _model(nodes, inputs, outputs, inits)


def test_index_axes_and_shape_inputs_are_drawn_valid():
    model = _index_model()
    shapes = {v.name: tuple(v.shape.numpy()) for v in model.graph.inputs}
    session = ort.InferenceSession(to_bytes(model), providers=["CPUExecutionProvider"])
    for seed in range(20):
        f = random_inputs(list(model.graph.inputs), shapes, seed=seed)
        assert f["idx"].min() >= 0 and f["idx"].max() < 7 and f["eidx"].max() < 4
        assert (f["nidx"][:, 0] < 4).all() and (f["nidx"][:, 1] < 7).all()
        assert 1 <= f["k"][0] <= 7 and f["hot"].max() < 6 and f["target"].max() < 7
        assert len(set(f["axes"])) == 2 and f["axes"].max() < 3
        assert 0 <= f["starts"][0] < f["ends"][0] <= (4, 7)[f["sax"][0]]  # a non-empty slice
        assert np.prod(f["shape"]) == 24
        outs = session.run(None, f)  # ORT accepts every draw
        assert all(o.size for o in outs)


def test_the_pipeline_verifies_a_model_whose_ints_are_indices():
    result = Pipeline(["eliminate-identity", "infer-shapes"], samples=2).run(_index_model())
    assert result.stages[0].verified == "reference" and len(result.cases) == 2


def test_sequence_inputs_are_refused_by_name_or_fed_when_given():
    seq = helper.make_tensor_sequence_value_info("seq", F, [3])

    def model():
        return _model(
            [helper.make_node("SequenceLength", ["seq"], ["n"]), helper.make_node("Identity", ["n"], ["y"])],
            [seq],
            [_vi("y", I64, [])],
        )

    with pytest.raises(OcrgraftError, match="input 'seq' is a Sequence"):
        Pipeline(["eliminate-identity"]).run(model())
    given = [np.ones(3, np.float32), np.zeros(3, np.float32)]
    result = Pipeline(["eliminate-identity"], inputs={"seq": given}).run(model())
    assert [c.label for c in result.cases] == ["given"] and result.cases[0].expected["y"] == 2
    assert result.stages[1].verified == "yes"


def test_optional_tensor_inputs_are_fed_as_tensors():
    opt = helper.make_value_info("o", helper.make_optional_type_proto(helper.make_tensor_type_proto(F, [2])))
    model = _model(
        [helper.make_node("OptionalGetElement", ["o"], ["e"]), helper.make_node("Identity", ["e"], ["y"])],
        [opt],
        [_vi("y", F, [2])],
    )
    result = Pipeline(["eliminate-identity"]).run(model, ShapeSet({"o": [(2,)]}))
    assert result.stages[1].verified == "yes" and result.cases[0].feeds["o"].shape == (2,)


def _gather_model() -> ir.Model:
    return _model(
        [helper.make_node("Gather", ["x", "i"], ["g"], axis=0), helper.make_node("Identity", ["g"], ["y"])],
        [_vi("x", F, ["n", 3]), _vi("i", I64, ["m"])],
        [_vi("y", F, ["m", 3])],
    )


def test_given_inputs_are_fixed_in_every_case_and_need_no_shapes():
    idx = np.array([1, 0, 1], np.int64)
    result = Pipeline(["eliminate-identity"], inputs={"i": idx}).run(_gather_model(), "x:2x3,4x3")
    assert [c.label for c in result.cases] == ["s0#1", "s0#2", "s1#1", "s1#2"]
    assert all(np.array_equal(c.feeds["i"], idx) and c.shapes["i"] == (3,) for c in result.cases)
    assert result.stages[1].verified == "yes"


def test_every_input_given_is_the_only_case():
    feeds = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "i": np.array([1, 1], np.int64)}
    result = Pipeline(["eliminate-identity"], inputs=feeds).run(_gather_model())
    assert [c.label for c in result.cases] == ["given"]
    np.testing.assert_array_equal(result.cases[0].expected["y"], feeds["x"][[1, 1]])
    assert result.stages[1].verified == "yes"
    with pytest.raises(OcrgraftError, match="test inputs given for nope"):
        Pipeline(["eliminate-identity"], inputs={**feeds, "nope": feeds["x"]}).run(_gather_model())


def test_a_stage_is_not_verified_when_every_output_is_empty():
    def model():
        return _model(
            [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Identity", ["r"], ["y"])],
            [_vi("x", F, ["n", 3])],
            [_vi("y", F, ["n", 3])],
        )

    result = Pipeline(["eliminate-identity"]).run(model(), ShapeSet({"x": [(0, 3)]}))
    assert result.stages[1].changed
    assert result.stages[1].verified == "not checked: every output was empty at the test shapes"
    again = Pipeline(["eliminate-identity"]).run(model(), ShapeSet({"x": [(0, 3), (2, 3)]}))
    assert again.stages[1].verified == "yes"  # one case with elements is enough


def test_a_model_without_inputs_is_checked_once():
    ones = numpy_helper.from_array(np.ones(2, np.float32))
    nodes = [
        helper.make_node("Constant", [], ["c"], value=ones),
        helper.make_node("Neg", ["c"], ["n"]),
        helper.make_node("Identity", ["n"], ["y"]),
    ]
    model = _model(nodes, [], [_vi("y", F, [2])])
    result = Pipeline(["eliminate-identity"]).run(model)
    assert len(result.cases) == 1 and result.stages[1].verified == "yes"
