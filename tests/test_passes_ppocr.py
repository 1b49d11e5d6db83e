"""Every semantics-preserving pass, in one pipeline, on the real PP-OCRv4 models shipped in the rapidocr
wheel: outputs stay equal at every tested shape and every dynamic dimension stays dynamic."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import ocrgraft.passes as passes
from ocrgraft.converter.pipeline import Pipeline
from ocrgraft.core.modelio import load
from ocrgraft.passes import EXACT, list_passes

from conftest import EXACT_FAMILY as FAMILY

_SPEC = importlib.util.find_spec(
    "rapidocr_onnxruntime"
)  # located only: its own dependencies are not installed
MODELS = Path(_SPEC.origin).parent / "models" if _SPEC and _SPEC.origin else Path("/nonexistent")


def _dims(values) -> list[list[str]]:
    return [[str(d) for d in v.shape] for v in values]


def test_the_family_list_is_every_exact_pass_without_arguments_or_tolerance():
    exact = {
        c.name
        for c in list_passes()
        if c.semantics == EXACT and c.tolerance is None and c.__module__.startswith("ocrgraft.passes")
    }  # other tests register their own
    assert set(FAMILY) <= exact
    assert exact - set(FAMILY) - set(passes.GENERIC_PASSES) == {"convert-opset", "rename-dims", "fix-dims"}


@pytest.mark.parametrize(
    "name,shapes",
    [
        ("ch_PP-OCRv4_rec_infer.onnx", "x:1x3x48x32,1x3x48x320,2x3x48x640"),
        ("ch_PP-OCRv4_det_infer.onnx", "x:1x3x32x32,1x3x96x64,2x3x160x160"),
    ],
)
def test_all_exact_passes_keep_ppocr_outputs_and_dynamic_dims(name, shapes):
    path = MODELS / name
    if not path.exists():
        pytest.skip(f"{path} is not installed (make setup installs the rapidocr wheel)")
    model = load(path)
    inputs, outputs = _dims(model.graph.inputs), _dims(model.graph.outputs)
    result = Pipeline(list(passes.GENERIC_PASSES) + FAMILY, samples=1).run(model, shapes=shapes)
    assert all(s.verified in ("yes", "unchanged") for s in result.stages[1:])
    assert _dims(model.graph.inputs) == inputs and _dims(model.graph.outputs) == outputs
    assert all(not d.isdigit() for d in (inputs[0][0], inputs[0][3]))  # batch and width really are dynamic
