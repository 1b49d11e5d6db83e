"""A deliberately wrong pass, for tests only: it changes a weight, so verification must catch it."""

import onnx_ir as ir

from ocrgraft.passes import Pass, register


@register
class PerturbWeight(Pass):
    """Test only: add 0.01 to the first element of the largest float initializer."""

    name = "test-perturb-weight"

    def rewrite(self, model: ir.Model) -> int:
        inits = [
            v
            for v in model.graph.initializers.values()
            if v.const_value is not None and v.const_value.dtype == ir.DataType.FLOAT
        ]
        target = max(inits, key=lambda v: v.const_value.size)
        arr = target.const_value.numpy().copy()
        arr.flat[0] += 0.01
        target.const_value = ir.tensor(arr, name=target.name)
        return 1
