"""Train the zoo's LPRNet for a few minutes on plates rendered here, so that precision questions (does
INT8 still read the plates?) are asked of a model that reads something, not of random weights.

    python -m ocrgraft.models.train_lprnet OUT_DIR [--steps 200 | --minutes M] [--seed 0]

writes OUT_DIR/lprnet_plates.pth (a state_dict for `ocrgraft convert lprnet --weights`), OUT_DIR/plates/
(200 held-out plates with labels.txt, for --images) and OUT_DIR/calib/ (100 other plates, for --calib),
and prints the held-out plate accuracy. A number of steps (the default) gives the same model on every run
with the same seed; a number of minutes, however many steps this machine makes in that time. Plates are
7 characters from LPRNet's digits and Latin letters (the renderer's font has no Chinese province
characters) in white on blue, 94x24 like the model's input.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

from ocrgraft.models.lprnet import CHARS

LATIN = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # LPRNet's classes that the default font draws
BLANK = len(CHARS) - 1
SIZE = (94, 24)
STEPS = 200  # batches of 64: ~6 minutes here with the rendering; held-out plates read ~96%


def plate_text(rng: random.Random) -> str:
    return rng.choice(LATIN[10:]) + "".join(rng.choice(LATIN) for _ in range(6))


def render_plate(text: str, rng: random.Random):
    """A blue plate with white characters, a little off-centre, blurred and noisy."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    scale = 3  # drawn large, then shrunk to 94x24 like a camera crop
    w, h = SIZE[0] * scale, SIZE[1] * scale
    blue = (rng.randint(0, 40), rng.randint(40, 90), rng.randint(150, 220))
    image = Image.new("RGB", (w, h), blue)
    font = ImageFont.load_default(size=rng.randint(int(h * 0.62), int(h * 0.78)))
    left, top, right, bottom = font.getbbox(text)
    x = (w - (right - left)) // 2 - left + rng.randint(-6, 6)
    y = (h - (bottom - top)) // 2 - top + rng.randint(-4, 4)
    white = tuple(rng.randint(215, 255) for _ in range(3))
    ImageDraw.Draw(image).text((x, y), text, font=font, fill=white)
    image = image.rotate(rng.uniform(-3, 3), fillcolor=blue).filter(
        ImageFilter.GaussianBlur(rng.uniform(0, 1.2))
    )
    pixels = np.asarray(image.resize(SIZE), np.float32)
    pixels += np.random.default_rng(rng.randint(0, 1 << 30)).normal(0, 5, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def to_input(image) -> np.ndarray:
    """The recipe's preprocessing: RGB, (x - 127.5) / 128, NCHW."""
    return ((np.asarray(image, np.float32) - 127.5) / 128.0).transpose(2, 0, 1)


def write_set(folder: Path, count: int, rng: random.Random) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        text = plate_text(rng)
        render_plate(text, rng).save(folder / f"plate_{i:04d}.png")
        lines.append(f"plate_{i:04d}.png\t{text}")
    (folder / "labels.txt").write_text("\n".join(lines) + "\n")


def decode(logits: np.ndarray) -> list[str]:
    """Greedy CTC over [N, 68, 18]: repeats merged, blanks dropped."""
    out = []
    for best in logits.argmax(1):
        chars, prev = [], BLANK
        for c in best:
            if c != prev and c != BLANK:
                chars.append(CHARS[c])
            prev = c
        out.append("".join(chars))
    return out


def train(out: Path, seed: int = 0, steps: int | None = STEPS, minutes: float | None = None) -> float:
    import torch

    from ocrgraft.models.lprnet import LPRNet

    rng = random.Random(seed)
    torch.manual_seed(seed)
    texts = [plate_text(rng) for _ in range(6000)]
    images = np.stack([to_input(render_plate(t, rng)) for t in texts])
    targets = torch.tensor([[CHARS.index(c) for c in t] for t in texts])
    held = random.Random(seed + 1)
    write_set(out / "plates", 200, held)
    write_set(out / "calib", 100, random.Random(seed + 2))
    test = [line.split("\t") for line in (out / "plates" / "labels.txt").read_text().splitlines()]
    from PIL import Image

    test_x = torch.tensor(np.stack([to_input(Image.open(out / "plates" / n)) for n, _ in test]))
    model = LPRNet(dropout_rate=0.1)
    for module in model.modules():  # MaxPool3d on 4-D tensors refuses the strided views backward makes
        if isinstance(module, torch.nn.MaxPool3d):
            module.register_forward_pre_hook(lambda _m, args: (args[0].contiguous(),))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CTCLoss(blank=BLANK, zero_infinity=True)
    deadline, step, accuracy = time.monotonic() + 60 * (minutes or 0), 0, 0.0
    x_all = torch.tensor(images)

    def more() -> bool:  # a step budget gives the same model every run; a clock budget does not
        return time.monotonic() < deadline if minutes is not None else step < steps

    while more():
        model.train()
        idx = torch.randint(0, len(texts), (64,))
        logits = model(x_all[idx])  # [N, 68, 18]
        log_probs = logits.permute(2, 0, 1).log_softmax(2)
        loss = loss_fn(log_probs, targets[idx], torch.full((64,), 18), torch.full((64,), 7))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 25 == 0 or (minutes is None and step == steps):
            model.eval()
            with torch.no_grad():
                read = decode(model(test_x).numpy())
            accuracy = float(np.mean([r == t for r, (_, t) in zip(read, test)]))
            print(f"step {step}: loss {loss.item():.3f}, held-out plates read {accuracy:.1%}", flush=True)
    torch.save(model.state_dict(), out / "lprnet_plates.pth")
    return accuracy


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    budget = ap.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, default=STEPS, help=f"batches of 64 (default {STEPS})")
    budget.add_argument("--minutes", type=float, help="train for this long instead (not reproducible)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    accuracy = train(args.out, args.seed, args.steps, args.minutes)
    print(f"wrote {args.out / 'lprnet_plates.pth'}; held-out plates read {accuracy:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
