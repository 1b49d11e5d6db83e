"""ocrgraft: graph surgery and model conversion for OCR models, every stage verified.

import ocrgraft
model = ocrgraft.load("rec.onnx")
result = ocrgraft.Pipeline(["eliminate-identity", "fold-constants"]).run(
    model, shapes="x:1x3x48x32,1x3x48x320"
)
"""

import importlib

from ocrgraft.core import __version__  # noqa: F401

# Resolved on first use, so that `ocrgraft --help` (and a Ctrl-C while it starts) does not wait for
# onnx, onnxruntime and torch to import.
_EXPORTS = {
    "load": "ocrgraft.core.modelio",
    "save": "ocrgraft.core.modelio",
    "Pipeline": "ocrgraft.converter.pipeline",
    "PipelineResult": "ocrgraft.converter.pipeline",
    "ShapeSet": "ocrgraft.core.shapes",
    "OcrgraftError": "ocrgraft.core.errors",
    "VerificationError": "ocrgraft.core.errors",
    "Pass": "ocrgraft.passes",
    "PassResult": "ocrgraft.passes",
    "get_pass": "ocrgraft.passes",
    "list_passes": "ocrgraft.passes",
    "register": "ocrgraft.passes",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ocrgraft' has no attribute '{name}'")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
