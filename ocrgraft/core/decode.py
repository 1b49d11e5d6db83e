"""Reading model outputs the way users do (CTC text with a confidence, a thresholded text mask) and
the parity table: the same inputs through the framework, the exported ONNX and the final ONNX must read
the same.

Elementwise tolerances can pass while a near-tie flips an argmax; the table shows what a user would see.
Batches are decoded as they were run: LPRNet's outputs depend on the whole batch, so samples are only
compared within the same batch, never against the same image in another batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.recipe import CTC_SCORES, DECODER_KINDS, package_path

ROWS_PER_CASE = 2  # decoded samples listed per test input (all of its batch are compared)


@dataclass
class CTCDecoder:
    """Greedy CTC: best class per step, repeats merged, blanks dropped."""

    charset: str | list[str]  # one class per character, or per entry of a dictionary
    blank: int = 0
    layout: str = "NTC"  # where batch (N), time (T) and classes (C) sit in the output
    scores: str = "logits"  # logits | log_softmax | probs
    confidence: str = "mean"  # mean of the kept characters' probabilities, or product over all steps

    def probs(self, out: np.ndarray) -> np.ndarray:
        """[N, T, C] probabilities from the raw output."""
        if sorted(self.layout) != ["C", "N", "T"] or out.ndim != 3:
            raise OcrgraftError(
                f"CTC decoder: layout '{self.layout}' does not fit an output of shape {out.shape}"
            )
        x = np.transpose(out, [self.layout.index(a) for a in "NTC"]).astype(np.float64)
        if self.scores == "log_softmax":
            return np.exp(x)
        if self.scores == "logits":
            e = np.exp(x - x.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)
        if self.scores == "probs":
            return x
        raise OcrgraftError(f"CTC decoder: unknown scores '{self.scores}' (known: {', '.join(CTC_SCORES)})")

    def decode(self, out: np.ndarray) -> list[tuple[str, float]]:
        p = self.probs(out)
        classes = len(self.charset) + 1
        if p.shape[-1] != classes:
            raise OcrgraftError(
                f"CTC decoder: the charset has {len(self.charset)} characters + blank, "
                f"but the output has {p.shape[-1]} classes"
            )
        blank = self.blank % classes  # -1: the last class
        labels = list(self.charset)
        labels.insert(blank, "")
        best, best_p = p.argmax(-1), p.max(-1)
        result = []
        for idx, prob in zip(best, best_p):
            keep = [t for t in range(len(idx)) if idx[t] != blank and (t == 0 or idx[t] != idx[t - 1])]
            text = "".join(labels[idx[t]] for t in keep)
            if self.confidence == "product":
                conf = float(np.prod(prob))
            else:
                conf = float(np.mean(prob[keep])) if keep else 0.0
            result.append((text, conf))
        return result


@dataclass
class ProbMapDecoder:
    """A detector's probability map read as a text mask: pixels above the threshold."""

    threshold: float = 0.3


def read_dictionary(text: str, space: bool = False) -> list[str]:
    """A PaddleOCR character dictionary: one class per line, the CTC blank not listed (it is class 0);
    `space` appends the space class PaddleOCR adds with use_space_char."""
    chars = text.split("\n")
    chars = [c[:-1] if c.endswith("\r") else c for c in chars]
    if chars and chars[-1] == "":
        chars.pop()
    return chars + [" "] if space else chars


def resolve_charset(options: dict, metadata: dict[str, str] | None = None) -> dict:
    """The decoder options with `charset` read from `dict` (a file, or `metadata:<key>` of the model,
    where PaddleOCR exports carry it); the options as given when they name no dictionary."""
    source = options.get("dict")
    if not source:
        return options
    if str(source).startswith("metadata:"):
        key = str(source)[len("metadata:") :]
        if not metadata or key not in metadata:
            raise OcrgraftError(
                f"the decoder's dictionary is the model's metadata '{key}', which the model does not carry; "
                "give one with --dict FILE"
            )
        text = metadata[key]
    else:
        try:
            text = package_path(str(source), "the decoder's dictionary").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise OcrgraftError(f"--dict {source}: cannot be read ({exc})") from None
    chars = read_dictionary(text, bool(options.get("space", False)))
    if not chars:
        raise OcrgraftError(f"dictionary {source} is empty")
    return {**options, "charset": chars}


def decoder_from(options: dict):
    kind = options.get("kind", "ctc")
    if kind == "ctc":
        if not options.get("charset"):
            raise OcrgraftError(
                "a [decoder] of kind 'ctc' needs its characters: `charset`, or `dict` (a PaddleOCR "
                "dictionary file, or --dict FILE)"
            )
        return CTCDecoder(
            charset=options["charset"],
            blank=int(options.get("blank", 0)),
            layout=options.get("layout", "NTC"),
            scores=options.get("scores", "logits"),
            confidence=options.get("confidence", "mean"),
        )
    if kind == "probability-map":
        return ProbMapDecoder(threshold=float(options.get("threshold", 0.3)))
    raise OcrgraftError(f"unknown decoder kind '{kind}' (known: {', '.join(DECODER_KINDS)})")
