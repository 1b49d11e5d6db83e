"""ocrgraft: graph surgery and model conversion for OCR models, every stage verified.

    import ocrgraft
    model = ocrgraft.load("rec.onnx")
    result = ocrgraft.Pipeline(["eliminate-identity", "fold-constants"]).run(model, shapes="x:1x3x48x32,1x3x48x320")
"""

from ocrgraft.converter.modelio import load, save
from ocrgraft.converter.pipeline import Pipeline, PipelineResult
from ocrgraft.converter.shapes import ShapeSet
from ocrgraft.errors import OcrgraftError, VerificationError
from ocrgraft.passes import Pass, PassResult, get_pass, list_passes, register

__all__ = [
    "OcrgraftError", "Pass", "PassResult", "Pipeline", "PipelineResult", "ShapeSet",
    "VerificationError", "get_pass", "list_passes", "load", "register", "save",
]
__version__ = "0.1.0"
