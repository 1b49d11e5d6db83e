"""CTC greedy decoding as the seeds' post-processing does it: best class per step, repeats merged,
blanks dropped, for each output layout and blank position the zoo uses."""

import numpy as np
import pytest

from ocrgraft.core.decode import CTCDecoder, decoder_from
from ocrgraft.core.errors import OcrgraftError


def one_hot_logits(labels, classes, high=8.0):
    """[T, C] logits whose argmax per step is `labels`."""
    x = np.zeros((len(labels), classes), np.float32)
    x[np.arange(len(labels)), labels] = high
    return x


def test_blank_first_merges_repeats_and_drops_blanks():
    dec = CTCDecoder(charset="abc", blank=0, layout="NTC", scores="logits")
    steps = [1, 1, 0, 1, 2, 2, 0, 0, 3]  # a a - a b b - - c
    ((text, conf),) = dec.decode(one_hot_logits(steps, 4)[None])
    assert text == "aabc"
    assert 0.99 < conf <= 1.0


def test_blank_last_as_lprnet_and_channel_major_layout():
    dec = CTCDecoder(charset="xyz", blank=3, layout="NCT", scores="logits")
    steps = [3, 0, 0, 3, 0, 1, 3, 2]  # - x x - x y - z
    out = one_hot_logits(steps, 4).T[None]  # [N, C, T]
    assert dec.decode(out)[0][0] == "xxyz"


def test_sequence_first_log_probabilities_per_batch_item():
    dec = CTCDecoder(charset="ab", blank=0, layout="TNC", scores="log_softmax")
    a = one_hot_logits([1, 0, 2], 3)
    b = one_hot_logits([2, 2, 2], 3)
    logp = np.stack([a, b], axis=1)  # [T, N, C]
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    assert [t for t, _ in dec.decode(logp)] == ["ab", "b"]


def test_confidence_mean_of_kept_vs_product_over_steps():
    probs = np.full((1, 3, 3), 0.1, np.float32)
    probs[0, 0, 1], probs[0, 1, 0], probs[0, 2, 2] = 0.8, 0.6, 0.5  # a, blank, b
    mean = CTCDecoder("ab", 0, "NTC", "probs", "mean").decode(probs)[0]
    prod = CTCDecoder("ab", 0, "NTC", "probs", "product").decode(probs)[0]
    assert mean == ("ab", pytest.approx(0.65))
    assert prod == ("ab", pytest.approx(0.8 * 0.6 * 0.5))


def test_charset_that_does_not_fit_the_output_is_named():
    dec = decoder_from({"kind": "ctc", "charset": "abc", "layout": "NTC"})
    with pytest.raises(OcrgraftError, match="3 characters \\+ blank, but the output has 7 classes"):
        dec.decode(np.zeros((1, 4, 7), np.float32))


def test_unknown_decoder_kind():
    with pytest.raises(OcrgraftError, match="unknown decoder kind 'beam'"):
        decoder_from({"kind": "beam"})


def test_text_agreement_counts_samples_and_steps():
    from ocrgraft.core.compare import text_agreement

    dec = CTCDecoder(charset="abc", blank=0, layout="NTC", scores="logits")
    ref = np.stack([one_hot_logits([1, 0, 2, 2], 4), one_hot_logits([3, 3, 0, 1], 4)])
    got = ref.copy()
    got[1, 3] = one_hot_logits([2], 4)[0]  # the second sample's last step reads b instead of a
    same = text_agreement(dec, ref.copy(), ref)
    assert same == {"text_same": 2, "text_total": 2, "steps_same": 1.0, "texts": ["ab", "ca"]}
    diff = text_agreement(dec, got, ref)
    assert diff["text_same"] == 1 and diff["steps_same"] == pytest.approx(7 / 8) and diff["texts"][1] == "cb"


def test_parity_table_lists_every_sample_that_reads_differently():
    """Beyond the first rows of a batch only the disagreeing samples are listed, but each of them is."""
    from types import SimpleNamespace

    from ocrgraft.converter.parity import _text_parity
    from ocrgraft.core.decode import ROWS_PER_CASE

    dec = CTCDecoder(charset="abc", blank=0, layout="NTC", scores="logits")
    batch = ROWS_PER_CASE + 3
    ref = np.stack([one_hot_logits([1, 0, 2], 4)] * batch)
    got = ref.copy()
    got[batch - 1, 2] = one_hot_logits([3], 4)[0]  # the last sample reads "ac" instead of "ab"
    case = SimpleNamespace(title="max#1 (x=5x3x32x100)")
    table = _text_parity(dec, [case], [{"torch": ref, "final ONNX": got}], ["torch", "final ONNX"])
    assert (table["agree"], table["samples"]) == (batch - 1, batch)
    assert [r["index"] for r in table["rows"]] == [*range(ROWS_PER_CASE), batch - 1]
    assert table["rows"][-1]["final ONNX"]["text"] == "ac" and not table["rows"][-1]["agree"]
