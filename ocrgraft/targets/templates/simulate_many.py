"""Run one BModel on TPU-MLIR's chip simulator (or a lowered `*_final.mlir` in its interpreter, seconds
faster per input) for many inputs in one process, with TPU-MLIR's Python:

    python simulate_many.py MODEL.bmodel|MODEL_final.mlir OUT_DIR IN.npz...

writes OUT_DIR/<name of IN.npz> per input, as model_runner would. model_runner starts Python and the
runtime again for every input (about 10 s here); this pays for that once.
"""

import os
import sys

import numpy as np
import tpu_mlir  # noqa: F401  (sets PATH / LD_LIBRARY_PATH for the runtime, which only a new process reads)

if os.environ.get("OCRGRAFT_SIMULATE_MANY") != "1":
    os.environ["OCRGRAFT_SIMULATE_MANY"] = "1"
    os.execv(sys.executable, [sys.executable, *sys.argv])

from tpu_mlir.python.tools.model_runner import final_mlir_inference, model_inference  # noqa: E402

model, out_dir, *inputs = sys.argv[1:]
for path in inputs:
    with np.load(path) as z:
        feeds = {k: z[k] for k in z.files}
    if model.endswith("final.mlir"):
        outputs = final_mlir_inference(feeds, model, dump_all=False)
    else:
        outputs = model_inference(feeds, model, dump_all=False)
    np.savez(os.path.join(out_dir, os.path.basename(path)), **outputs)
    print(f"simulated {path}", flush=True)
