"""Frontend for an existing .onnx file: its reference outputs come from ONNX Runtime on the file as given."""

from __future__ import annotations

from pathlib import Path

from ocrgraft.core.modelio import load
from ocrgraft.core.runner import fit_ir_version
from ocrgraft.frontends import Source


def load_source(path: str | Path, name: str | None = None) -> Source:
    path = Path(path)
    model = load(path)  # parsed into memory; the file itself is never written to
    note = fit_ir_version(model)  # the pipeline would lower it too; here the report gets the note
    return Source(
        name=name or path.stem,
        framework="onnx",
        model=model,
        reference=None,
        location=str(path),
        notes=[note] if note else [],
    )
