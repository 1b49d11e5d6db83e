"""`pip install ocrgraft` is light: a non-editable install into a fresh virtual environment, without
PyTorch or Paddle, converts an ONNX file, and a PyTorch zoo model says how to install what it needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnx

from conftest import DYN_SHAPES, make_dynamic_model

ROOT = Path(__file__).resolve().parents[1]


def test_a_plain_install_without_torch_converts_an_onnx_file(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python, tool = venv / "bin" / "python", venv / "bin" / "ocrgraft"
    pip = [str(python), "-m", "pip", "install", "--quiet", "-c", str(ROOT / "constraints.txt")]
    installed = subprocess.run([*pip, str(ROOT)], capture_output=True, text=True, timeout=1200)
    assert installed.returncode == 0, installed.stderr[-2000:]
    for framework in ("torch", "paddle", "onnx_graphsurgeon"):  # none of them came with it
        check = subprocess.run([str(python), "-c", f"import {framework}"], capture_output=True, cwd=tmp_path)
        assert check.returncode != 0, framework
    editable = subprocess.run(
        [str(python), "-c", "import ocrgraft; print(ocrgraft.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert str(venv) in editable.stdout  # the installed copy, not this checkout

    onnx.save(make_dynamic_model(), tmp_path / "dyn.onnx")
    argv = [str(tool), "convert", "--onnx", "dyn.onnx", "--shapes", DYN_SHAPES, "--out", "out"]
    run = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "every stage verified" in run.stdout and (tmp_path / "out" / "dyn-ort" / "model.onnx").is_file()

    zoo = subprocess.run(
        [str(tool), "convert", "crnn", "--out", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert zoo.returncode == 1 and zoo.stderr.count("\n") == 1
    assert (
        "model 'crnn' (torch) needs PyTorch, which is not installed (torch): pip install 'ocrgraft[torch]'"
        in (zoo.stderr)
    )
