"""Zoo weights saved the ways users have them, for the PyTorch frontend tests."""

import functools

import numpy as np
import torch

from ocrgraft import models

FORMS = ["state_dict", "checkpoint", "dataparallel", "torchscript"]


def sample(name, batch=1, seed=0):
    shape = (batch,) + models.ZOO[name][2]
    return torch.from_numpy(np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32))


@functools.cache
def trained(name):
    """Stands in for trained weights: the zoo architecture from another seed than the default init
    (built once per session; never modified)."""
    return models.build(name, seed=1)


def save_weights(model, name, form, path):
    """torch.save(state_dict), a training checkpoint, a DataParallel-wrapped one (the plate seed),
    torch.jit.trace (the LPRNet seed), or (MMOCR's detectors only) an MMOCR 0.x checkpoint."""
    state = model.state_dict()
    if form == "state_dict":
        torch.save(state, path)
    elif form == "checkpoint":
        torch.save({"epoch": 3, "net": state, "best_acc": 0.9}, path)
    elif form == "dataparallel":
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    elif form == "mmocr-0.x":  # an MMOCR 0.x checkpoint: meta + state_dict, the head under bbox_head.*
        renamed = {k.replace("det_head.", "bbox_head.", 1): v for k, v in state.items()}
        torch.save({"meta": {"mmocr_version": "0.6.3", "epoch": 600}, "state_dict": renamed}, path)
    else:
        torch.jit.trace(model, sample(name), check_trace=False).save(str(path))
    return path
