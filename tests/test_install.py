"""`pip install ocrgraft` is light: a non-editable install into a fresh virtual environment, without
PyTorch or Paddle, converts an ONNX file, and a zoo model says how to install what it needs; that
command, run as written, converts a Paddle model."""

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

    for model, says in (
        (
            "crnn",
            "model 'crnn' (torch) needs PyTorch, which is not installed (torch): "
            "pip install 'ocrgraft[torch]'",
        ),
        ("starnet", "pip install 'ocrgraft[paddle]' && pip install --no-deps paddle2onnx==2.1.0"),
    ):
        zoo = subprocess.run(
            [str(tool), "convert", model, "--out", "out"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert zoo.returncode == 1 and zoo.stderr.count("\n") == 1 and says in zoo.stderr


def test_the_paddle_extra_installs_as_the_error_says_and_converts_starnet(tmp_path):
    """The command the error names, run as written in a fresh venv: Paddle arrives, our onnx is not
    downgraded by paddle2onnx's pin, and the PaddleOCR StarNet zoo model converts."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python, tool = venv / "bin" / "python", venv / "bin" / "ocrgraft"
    pip = [str(python), "-m", "pip", "install", "--quiet", "-c", str(ROOT / "constraints.txt")]
    for args in ([f"{ROOT}[paddle]"], ["--no-deps", "paddle2onnx==2.1.0"]):
        installed = subprocess.run([*pip, *args], capture_output=True, text=True, timeout=1800)
        assert installed.returncode == 0, installed.stderr[-2000:]
    version = subprocess.run(
        [str(python), "-c", "import onnx; print(onnx.__version__)"], capture_output=True, text=True
    )
    assert version.stdout.strip() == onnx.__version__  # the constraints' onnx, not paddle2onnx's old pin
    run = subprocess.run(
        [str(tool), "-q", "convert", "starnet", "--out", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "every stage verified" in run.stdout
