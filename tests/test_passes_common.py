"""Helpers shared by the pass-family tests (crafted graphs, ORT runs, idempotence), and tests of them."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

from ocrgraft.converter.pipeline import Pipeline
from ocrgraft.core.compare import Tolerance
from ocrgraft.core.modelio import to_ir, to_proto
from ocrgraft.core.runner import Runner
from ocrgraft.passes import get_pass, list_passes
from ocrgraft.passes._edit import Editor, remove_unused

FLOAT = TensorProto.FLOAT
DEFAULT_TOLERANCE = Tolerance(atol=1e-5, rtol=1e-5)


def graph_model(nodes, inputs, outputs, inits=(), opset=11, ir_version=None) -> ir.Model:
    """An onnx_ir model from onnx.helper parts; inputs/outputs are (name, shape) or (name, shape,
    elem_type)."""

    def info(spec):
        name, shape, *elem = spec
        return helper.make_tensor_value_info(name, elem[0] if elem else FLOAT, shape)

    inits = [i if isinstance(i, TensorProto) else onnx.numpy_helper.from_array(i[1], i[0]) for i in inits]
    graph = helper.make_graph(nodes, "g", [info(i) for i in inputs], [info(o) for o in outputs], inits)
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(
        graph, opset_imports=opsets, ir_version=ir_version or helper.find_min_ir_version_for(opsets)
    )
    return to_ir(proto)


def export_torch(module, example, opset=11, **kwargs) -> ir.Model:
    """A TorchScript-exporter (dynamo=False) ONNX export of a small torch module, in memory."""
    import io
    import warnings

    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), example, buf, opset_version=opset, dynamo=False, **kwargs)
    return to_ir(onnx.load_from_string(buf.getvalue()))


def ops(model) -> Counter:
    return Counter(n.op_type for n in ir.traversal.RecursiveGraphIterator(to_ir(model).graph))


def run(model, feeds) -> dict[str, np.ndarray]:
    return Runner(model if isinstance(model, ir.Model) else to_ir(model)).run(feeds)


def rand(*shape, seed=0, scale=1.0) -> np.ndarray:
    """Random non-zero float32 values in ±[0.05, 1] * scale."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.05, 1.0, shape) * np.where(rng.random(shape) < 0.5, -1, 1) * scale).astype(
        np.float32
    )


def apply(spec, model) -> int:
    return get_pass(spec)(model).rewrites


def canonical(model) -> bytes:
    """The serialized model with initializers and annotations in name order (shape inference reorders
    them)."""
    proto = to_proto(model)
    for field in (proto.graph.initializer, proto.graph.value_info):
        items = sorted(field, key=lambda t: t.name)
        del field[:]
        field.extend(items)
    return proto.SerializeToString()


def assert_idempotent(spec, model) -> None:
    """A second run of the pass changes nothing and reports no rewrites."""
    before = canonical(model)
    assert apply(spec, model) == 0
    assert canonical(model) == before


def assert_untouched(spec, model) -> None:
    """A model without the pattern: no rewrites, nothing changed."""
    assert_idempotent(spec, model)


def verify(model, passes, shapes, tol=DEFAULT_TOLERANCE):
    """Run passes through the Pipeline, which checks every exact stage in ONNX Runtime at each shape."""
    result = Pipeline(passes, tolerance=tol, samples=2).run(model, shapes=shapes)
    for stage in result.stages[1:]:
        assert stage.verified in ("yes", "unchanged"), (stage.name, stage.verified)
    assert any(s.verified == "yes" for s in result.stages[1:]), "no pass changed the model"
    return result


# -- tests of the shared helpers and the registry entries -------------------------------------------


def test_every_pass_is_registered_documented_and_scoped():
    names = {c.name for c in list_passes()}
    for name in (
        "pool-to-reduce",
        "maxpool3d-to-2d",
        "split-pool",
        "adaptive-avgpool-to-pool",
        "decompose-gridsample",
        "legalize-gridsample",
        "reshape-gemm-to-matmul",
        "fold-reshape-shapes",
        "drop-zero-rnn-state",
        "fold-flip-rnn",
        "squeeze-after-concat",
        "merge-duplicates",
        "int64-to-int32",
        "to-fp16",
        "convert-opset",
        "resize-nearest-to-bilinear",
    ):
        assert name in names, name
    for cls in list_passes():
        if cls.__module__.startswith("ocrgraft.passes"):  # other tests register their own
            assert cls.doc() and len(cls.doc()) < 200, cls.name


def test_editor_replace_keeps_output_name_and_remove_unused_clears_chain():
    model = graph_model(
        [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Neg", ["a"], ["y"])],
        [("x", [2, 3])],
        [("y", [2, 3])],
    )
    edit = Editor(model, "t")
    neg = model.graph.node(1)
    edit.at(neg)
    new = edit.op("Abs", [model.graph.inputs[0]])
    edit.replace(neg.outputs[0], new)
    assert remove_unused(model.graph, [neg]) == 2  # Neg and the Relu that only fed it
    assert [v.name for v in model.graph.outputs] == ["y"]
    x = rand(2, 3)
    np.testing.assert_array_equal(run(model, {"x": x})["y"], np.abs(x))


def test_bad_pass_arguments_are_refused():
    from ocrgraft.core.errors import OcrgraftError

    with pytest.raises(OcrgraftError):
        get_pass("split-pool(max_kernel=0)")
