"""The model zoo: OCR architectures from the seeds, in plain PyTorch, parameter names as in the
originals so their checkpoints load. `build(name)` gives an eval-mode model with a fixed-seed
stand-in initialization (until --weights gives real ones)."""

from __future__ import annotations

import difflib
import importlib

from ocrgraft.core.errors import OcrgraftError

# zoo name -> (module, class, one input's C x H x W for calibrating BatchNorm statistics, output layer)
ZOO = {
    "crnn": ("ocrgraft.models.crnn", "CRNN", (1, 32, 100), "rnn.1.embedding"),
    "dtrb": ("ocrgraft.models.dtrb", "DTRB", (3, 32, 100), "Prediction"),
    "lprnet": ("ocrgraft.models.lprnet", "LPRNet", (3, 24, 94), "container.0"),
    "mmocr-crnn": ("ocrgraft.models.mmocr_crnn", "MMOCRCRNN", (1, 32, 100), "decoder.decoder.1.embedding"),
    "dbnet": ("ocrgraft.models.dbnet", "DBNet", (3, 128, 128), "det_head.binarize.6"),
    "psenet": ("ocrgraft.models.psenet", "PSENet", (3, 256, 256), "det_head.conv2"),
    "panet": ("ocrgraft.models.panet", "PANet", (3, 256, 256), "det_head.conv2"),
}
SEED = 0
# Probability-map heads whose stand-in logits are centred on the calibration batch: a random head on
# post-ReLU features is far off zero (PANet's text logits near -15), a map with no text pixels at all,
# and a threshold check on it would test nothing.
CENTRED_HEADS = {"psenet", "panet"}


def build(name: str, seed: int = SEED, **kwargs):
    """The architecture `name` with a stand-in random initialization from `seed`, in eval mode."""
    import torch

    if name not in ZOO:
        near = difflib.get_close_matches(name, ZOO, n=1)
        hint = f"did you mean '{near[0]}'? " if near else ""
        raise OcrgraftError(f"unknown zoo architecture '{name}' ({hint}known: {', '.join(ZOO)})")
    module, cls, sample, head = ZOO[name]
    with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
        torch.manual_seed(seed)
        model = getattr(importlib.import_module(module), cls)(**kwargs)
        _stand_in_init(
            model,
            sample,
            model.get_submodule(head),
            torch.Generator().manual_seed(seed),
            name in CENTRED_HEADS,
        )
    return model.eval()


def _stand_in_init(model, sample: tuple[int, ...], head, gen, centre: bool = False) -> None:
    """Random weights that behave like trained ones where conversion checks look:
    - He-normal convs / linears and unit-variance LSTM weights: activations neither vanish nor blow up;
    - BatchNorm statistics measured on a random batch, as training would, with random affine terms:
      BN folding is exercised and activations stay normalized (so float32 round-off stays small);
    - the output layer scaled up, so predictions are confident: text parity on near-ties would be noise."""
    import torch
    from torch import nn

    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.ConvTranspose2d)):
                fan_in = (
                    m.weight[0].numel()
                    if not isinstance(m, nn.ConvTranspose2d)
                    else m.weight.shape[0] * m.weight[0, 0].numel()
                )
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.01)
            elif isinstance(m, nn.LSTM):
                for pname, p in m.named_parameters():
                    p.copy_(
                        torch.randn(p.shape, generator=gen)
                        * ((1.0 / p.shape[1]) ** 0.5 if pname.startswith("weight") else 0.01)
                    )
        for m in norms:
            m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration pass
        model.train()(torch.rand((4,) + tuple(sample), generator=gen) * 2 - 1)
        for m in norms:
            m.momentum = 0.1
            m.num_batches_tracked.zero_()
        head.weight.mul_(4.0)
        if centre:
            seen = []
            hook = head.register_forward_hook(lambda _m, _i, out: seen.append(out))
            model.eval()(torch.rand((4,) + tuple(sample), generator=gen) * 2 - 1)
            hook.remove()
            head.bias.sub_(seen[0].mean(dim=(0, 2, 3)))
