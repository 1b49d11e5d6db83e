"""The PyTorch frontend: weights in every checkpoint form users have (and clear one-line errors for the
wrong ones), torch-level rewrites per target, and the exporter traps caught instead of shipped."""

import re

import numpy as np
import pytest
import torch

from ocrgraft import models
from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.runner import Runner
from ocrgraft.frontends import torch as frontend
from ocrgraft.frontends.torch import DynamicDim, apply_rewrites, check_dims, export_onnx, load_weights
from ocrgraft.models.crnn import BidirectionalLSTM

from conftest import cli_error
from zoo_weights import FORMS, sample, save_weights, trained

ZOO = list(models.ZOO)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", ZOO)
def test_weights_load_in_every_form(tmp_path, name, form):
    weights = trained(name)
    path = save_weights(weights, name, form, tmp_path / "w.pt")
    model = models.build(name)
    loaded, jit = load_weights(model, path, name)
    assert jit is None  # a TorchScript file is read as tensors, never run, unless trust_code
    assert {
        "state_dict": "(state_dict,",
        "checkpoint": "checkpoint['net']",
        "dataparallel": "'module.' prefix removed",
        "torchscript": "tensors read without running its code",
    }[form] in loaded
    for k, v in weights.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    with torch.inference_mode():  # a model with several outputs (PANet's maps) returns a tuple
        got, want = model(sample(name, 2)), weights(sample(name, 2))
        for g, w in zip(*(o if isinstance(o, tuple) else (o,) for o in (got, want)), strict=True):
            assert torch.equal(g, w)


def test_unknown_model_is_one_line(capsys):
    err = cli_error(capsys, "convert", "crn", "--out", "unused")
    assert "unknown model 'crn'" in err and "crnn" in err


def test_weights_for_another_architecture_list_the_keys(tmp_path, capsys):
    path = save_weights(models.build("dtrb"), "dtrb", "state_dict", tmp_path / "dtrb.pth")
    err = cli_error(capsys, "convert", "crnn", "--weights", path, "--out", tmp_path / "out")
    assert "do not fit zoo architecture 'crnn'" in err
    assert "missing: cnn.conv0.weight" in err and "unexpected: FeatureExtraction.ConvNet.0.weight" in err
    assert not (tmp_path / "out").exists()


def test_weights_with_other_shapes_name_them(tmp_path):
    torch.save(models.build("crnn", nclass=40).state_dict(), tmp_path / "w.pth")  # a 39-character alphabet
    with pytest.raises(
        OcrgraftError, match=r"2 shape mismatch \(file vs model\): rnn.1.embedding.weight 40x512 vs 37x512"
    ):
        load_weights(models.build("crnn"), tmp_path / "w.pth", "crnn")


@pytest.mark.parametrize(
    "content,match",
    [
        (b"not a checkpoint\n", "is not a PyTorch checkpoint"),
        ("onnx", "is not a PyTorch checkpoint .*--onnx FILE"),
        ("module", "holds pickled Python objects"),
        ("nodict", "a dict without a state_dict: .* found keys: epoch, optimizer"),
        ("missing", "weights file not found"),
    ],
)
def test_bad_weights_files_are_one_line_errors(tmp_path, capsys, content, match):
    path = tmp_path / "w.pth"
    if content == "onnx":
        path = tmp_path / "model.onnx"
        path.write_bytes(b"\x08\x07\x12\x07pytorch")
    elif content == "module":
        torch.save(models.build("lprnet"), path)
    elif content == "nodict":
        torch.save({"epoch": 1, "optimizer": {"lr": 0.1}}, path)
    elif content != "missing":
        path.write_bytes(content)
    err = cli_error(capsys, "convert", "lprnet", "--weights", path, "--out", tmp_path / "out")
    assert re.search(match, err), err


def test_weights_only_apply_to_torch_models(tmp_path, capsys):
    err = cli_error(
        capsys, "convert", "ppocrv4-rec", "--weights", tmp_path / "w.pth", "--out", tmp_path / "out"
    )
    assert "apply to PyTorch models" in err


@pytest.mark.parametrize(
    "name,target,exporter,rewrite",
    [
        ("dtrb", "ort", "torchscript", "AdaptivePoolAsMean"),
        ("lprnet", "sophon", "dynamo", "MaxPool3dAs2d"),
        ("crnn", "ort", "dynamo", "LinearOnSequence"),
    ],
)
def test_torch_rewrites_are_exact(name, target, exporter, rewrite):
    model = models.build(name)
    rewritten, notes = apply_rewrites(model, target, exporter)
    assert any(type(m).__name__ == rewrite for m in rewritten.modules())
    assert not any(type(m).__name__ == rewrite for m in model.modules()), "the reference model was changed"
    assert notes
    x = sample(name, 3)
    with torch.inference_mode():
        np.testing.assert_allclose(rewritten(x).numpy(), model(x).numpy(), atol=1e-5, rtol=1e-5)


def test_rewrites_stay_with_their_targets():
    lpr = models.build("lprnet")
    assert apply_rewrites(lpr, "ort", "dynamo")[1] == []
    assert any("maxpool3d-as-2d" in n for n in apply_rewrites(lpr, "trt", "dynamo")[1])
    assert any("linear-on-sequence" in n for n in apply_rewrites(models.build("crnn"), "ort", "dynamo")[1])
    assert apply_rewrites(models.build("crnn"), "ort", "torchscript")[1] == []


def test_maxpool3d_rewrite_exports_without_3d_pooling():
    """For Sophon: LPRNet's MaxPool3d become 2-D pools only, and ONNX Runtime still matches torch."""
    model = models.build("lprnet")
    rewritten, _ = apply_rewrites(model, "sophon", "dynamo")
    dyn = [DynamicDim("x", 0, "batch", 1, 8)]
    onnx_model = export_onnx(
        rewritten,
        exporter="dynamo",
        opset=18,
        example={"x": (2, 3, 24, 94)},
        dyn=dyn,
        outputs=["logits"],
        output_axes={},
    )
    pools = [n for n in onnx_model.graph if n.op_type == "MaxPool"]
    assert pools and all(len(n.attributes["kernel_shape"].value) == 2 for n in pools)
    x = sample("lprnet", 3)
    with torch.inference_mode():
        want = model(x).numpy()
    np.testing.assert_allclose(Runner(onnx_model).run({"x": x.numpy()})["logits"], want, atol=1e-4, rtol=1e-4)


def test_exporter_fixing_the_batch_is_an_error():
    """With an example batch of 1, the torch.export-based exporter fixes DTRB's batch (its LSTM state is
    sized from it), silently; the frontend exports with batch >= 2, and refuses a fixed dim."""
    model, _ = apply_rewrites(models.build("dtrb"), "ort", "dynamo")
    dyn = [DynamicDim("x", 0, "batch", 1, 8), DynamicDim("x", 3, "width", 64, 256, 4)]
    onnx_model = export_onnx(
        model,
        exporter="dynamo",
        opset=18,
        example={"x": (1, 3, 32, 100)},
        dyn=dyn,
        outputs=["logits"],
        output_axes={},
    )
    with pytest.raises(
        OcrgraftError, match=r"fixed input 'x' dim 0 \(batch\) at 1, though the range is 1..8"
    ):
        check_dims(onnx_model, "dynamo", dyn, {}, {}, {"x": (3, 3, 32, 64)})


class TinyCRNN(torch.nn.Module):
    """CRNN's head in miniature: conv to height 1, then the zoo's sequence-first BiLSTM with
    view(T*b, h) -> Linear -> view(T, b, -1)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 8, (8, 4), (8, 4))  # height 8 -> 1, width W -> W/4
        self.rnn = BidirectionalLSTM(8, 8, 5)

    def forward(self, x):
        return self.rnn(self.conv(x).squeeze(2).permute(2, 0, 1))


def test_exporter_baking_the_width_is_an_error():
    """Exported by torch.export without the rewrites, the example's sequence length ends up in a
    Reshape: the input still looks dynamic, so this is caught by running a second width, not shipped.
    (With the rewrites, the zoo's crnn converts with this exporter: tests/test_zoo.py.)"""
    model = TinyCRNN().eval()
    dyn = [DynamicDim("x", 0, "batch", 1, 8), DynamicDim("x", 3, "width", 16, 160, 4)]
    example, probe = {"x": (2, 1, 8, 40)}, {"x": (3, 1, 8, 16)}
    axes, want = frontend.output_dynamic_axes(model, ["y"], example, probe, dyn)
    onnx_model = export_onnx(
        model, exporter="dynamo", opset=18, example=example, dyn=dyn, outputs=["y"], output_axes=axes
    )
    assert not isinstance(onnx_model.graph.inputs[0].shape[3], int)
    with pytest.raises(OcrgraftError, match="the dynamo exporter (baked the example size|fixed a dim)"):
        check_dims(onnx_model, "dynamo", dyn, axes, want, probe)


def test_lprnet_outputs_depend_on_the_batch():
    """Why LPRNet is only ever compared batch against batch: the same image reads differently in
    another batch (the seed's note on its batch-wide mean)."""
    model = models.build("lprnet")
    x = sample("lprnet", 4, seed=3)
    with torch.inference_mode():
        alone, together = model(x[:1]), model(x)[:1]
    assert not torch.allclose(alone, together, atol=1e-3)
