"""The README's Python example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "verified=yes" in out
    assert (tmp_path / "out" / "api-rec.onnx").exists()
    assert len(list((tmp_path / "out" / "api-stages").glob("*.onnx"))) == 4  # source + the 3 that changed it


def test_readme_names_the_two_commands():
    text = README.read_text()
    assert "make convert MODEL=" in text and "make test" in text
