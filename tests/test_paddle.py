"""Paddle frontend on real Paddle inference files that ocrgraft builds and saves itself:
both file formats, verification against Paddle's own inference, and paddle2onnx's abort on an
unsupported operator turned into one clear line."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest

from ocrgraft.converter.cli import main
from ocrgraft.core.modelio import load
from ocrgraft.core.runner import Runner
from ocrgraft.core.shapes import random_inputs
from ocrgraft.frontends.paddle import PaddlePredictor, find_model_files

pytest.importorskip("paddle", reason="PaddlePaddle is installed by `make test` (the paddle extra)")


def save_zoo(name, out_dir, legacy=False):
    cmd = [sys.executable, "-m", "ocrgraft.models.paddle_rec", name, str(out_dir)] + (
        ["--legacy"] if legacy else []
    )
    subprocess.run(cmd, check=True, capture_output=True)
    return out_dir


@pytest.fixture(scope="module")
def starnet_ascend(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    assert main(["convert", "starnet", "-t", "ascend", "--out", str(out)]) == 0
    return out / "starnet-ascend"


def test_starnet_to_ascend_has_no_gridsample_and_is_verified_against_paddle(starnet_ascend):
    report = json.loads((starnet_ascend / "report.json").read_text())
    assert report["all_verified"] and report["source"]["framework"] == "paddle"
    stage0 = report["stages"][0]
    assert stage0["verified"] == "yes"  # the paddle2onnx export itself, against Paddle
    assert {c["shapes"]["x"][0] for c in stage0["comparisons"]} == {1, 4, 16}
    assert any("decompose-gridsample" in s["name"] for s in report["stages"])
    final = onnx.load(starnet_ascend / "model.onnx")
    assert "GridSample" not in {n.op_type for n in final.graph.node}
    assert (starnet_ascend / "ascend" / "atc.sh").exists() and not report["build"]["built"]
    assert "random initialization" in " ".join(report["source"]["notes"])
    parity = report["parity"]
    assert parity["sources"][0] == "paddle" and parity["all_agree"] and parity["samples"] >= 3
    assert len({row["paddle"]["text"] for row in parity["rows"]}) > 1  # stand-in weights read varied text


def test_final_starnet_equals_paddle_at_three_batch_sizes(starnet_ascend, tmp_path):
    model_dir = save_zoo("starnet", tmp_path / "starnet")
    paddle_run = PaddlePredictor(*find_model_files(model_dir))
    final = load(starnet_ascend / "model.onnx")
    onnx_run = Runner(final)
    for batch in (1, 4, 16):
        feeds = random_inputs(list(final.graph.inputs), {"x": (batch, 3, 32, 100)}, seed=batch)
        want = next(iter(paddle_run(feeds).values()))
        got = next(iter(onnx_run.run(feeds).values()))
        assert got.shape == (batch, 25, 37)
        # the recipe's [verify] tolerance: the TPS grid's float32 summation order differs between the two
        np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-3)
        assert (got.argmax(-1) == want.argmax(-1)).mean() > 0.99


def test_pir_format_with_dynamic_batch_and_width(tmp_path, capsys):
    model_dir = save_zoo("paddle-crnn", tmp_path / "crnn")
    assert sorted(p.name for p in model_dir.iterdir()) == ["inference.json", "inference.pdiparams"]
    rc = main(
        [
            "convert",
            "--paddle",
            str(model_dir),
            "--out",
            str(tmp_path / "out"),
            "--shapes",
            "x:1x3x32x32,2x3x32x100,3x3x32x320",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    model = load(tmp_path / "out" / "crnn-ort" / "model.onnx")
    dims = list(model.graph.inputs[0].shape)
    assert not isinstance(dims[0], int) and not isinstance(dims[3], int)


def test_legacy_pdmodel_format(tmp_path, capsys):
    model_dir = save_zoo("paddle-small", tmp_path / "small", legacy=True)
    assert (model_dir / "inference.pdmodel").exists() and not (model_dir / "inference.json").exists()
    rc = main(
        [
            "convert",
            "--paddle",
            str(model_dir),
            "--out",
            str(tmp_path / "out"),
            "--shapes",
            "x:1x3x32x100,5x3x32x100",
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    report = json.loads((tmp_path / "out" / "small-ort" / "report.json").read_text())
    assert report["stages"][0]["verified"] == "yes" and ".pdmodel (legacy)" in report["source"]["notes"][0]


def test_unsupported_operator_is_named_and_nothing_is_written(tmp_path, capsys):
    script = tmp_path / "make_affine.py"
    script.write_text(
        textwrap.dedent("""
        import sys, paddle, paddle.nn as nn, paddle.nn.functional as F
        class Affine(nn.Layer):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(3 * 8 * 8, 6)
            def forward(self, x):
                theta = self.fc(x.reshape([x.shape[0], -1])).reshape([-1, 2, 3])
                return F.grid_sample(x, F.affine_grid(theta, [x.shape[0], 3, 8, 8]))
        spec = paddle.static.InputSpec([None, 3, 8, 8], "float32", "x")
        paddle.jit.save(
            paddle.jit.to_static(Affine(), input_spec=[spec], full_graph=True), sys.argv[1] + "/inference"
        )
    """)
    )
    subprocess.run([sys.executable, str(script), str(tmp_path / "affine")], check=True, capture_output=True)
    out = tmp_path / "out"
    rc = main(["convert", "--paddle", str(tmp_path / "affine"), "--out", str(out), "--shapes", "x:1x3x8x8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1  # the calling process survived paddle2onnx's abort
    assert err[-1] == (
        "ocrgraft: error: paddle2onnx cannot convert inference.json: "
        "unsupported Paddle operator(s): affine_grid"
    )
    assert not out.exists()


def test_not_a_paddle_model_folder(tmp_path, capsys):
    rc = main(["convert", "--paddle", str(tmp_path), "--out", str(tmp_path / "out")])
    assert rc == 1 and "holds no Paddle inference model" in capsys.readouterr().err
