"""Sentence and stream batches, and the Penn Treebank stream convention. Pure numpy."""

from __future__ import annotations

import numpy as np
import pytest

from rnn_theano.data.batching import SentenceBatches, StreamBatches, padded_length
from rnn_theano.data.corpus import load_sentences
from rnn_theano.errors import UserError
from rnn_theano.data.stream import EOS, UNK, build_stream_vocabulary, encode_stream
from rnn_theano.data.vocab import Vocabulary


@pytest.fixture(scope="module")
def sentences() -> list[list[str]]:
    rng = np.random.default_rng(0)
    words = ["a", "b", "c", "d", "e"]
    return [list(rng.choice(words, size=rng.integers(1, 9))) for _ in range(23)]


@pytest.fixture(scope="module")
def batches(sentences) -> SentenceBatches:
    vocab = Vocabulary.build(sentences, size=6)
    return SentenceBatches.from_sentences(sentences, vocab, batch_size=4, seed=7)


def _rows(batch):
    """Each column of a batch as its (x, y) pair, padding cut off."""
    n = batch.mask.sum(axis=0).astype(int)
    return [(tuple(batch.x[:k, b]), tuple(batch.y[:k, b])) for b, k in enumerate(n)]


def test_sentence_batches_hold_every_pair_once_per_epoch(batches: SentenceBatches) -> None:
    expected = sorted((tuple(s[:-1]), tuple(s[1:])) for s in batches.sequences)
    for k in (0, 1):
        epoch = list(batches.epoch(k))
        assert len(epoch) == len(batches) == 6
        assert sorted(r for b in epoch for r in _rows(b)) == expected
        assert sum(b.mask.sum() for b in epoch) == batches.n_tokens
    assert sorted(r for b in batches for r in _rows(b)) == expected


def test_sentence_batches_are_padded_and_masked(batches: SentenceBatches) -> None:
    for batch in batches.epoch(0):
        assert batch.x.dtype == batch.y.dtype == np.int32 and batch.mask.dtype == np.float32
        assert batch.x.shape == batch.y.shape == batch.mask.shape
        T = batch.x.shape[0]
        assert batch.mask[T - 1].any()  # no all-padding step
        n = batch.mask.sum(axis=0).astype(int)
        for b, k in enumerate(n):
            assert batch.mask[:k, b].all() and not batch.mask[k:, b].any()  # right-padded
            assert batch.x[0, b] == batch.x[0, 0]  # every row starts at SENTENCE_START


def test_sentence_batches_are_deterministic_and_reshuffled(batches: SentenceBatches) -> None:
    def fingerprint(k):
        return [b.x.tobytes() for b in batches.epoch(k)]

    assert fingerprint(0) == fingerprint(0)  # a fresh iterator each call, same batches
    assert fingerprint(0) != fingerprint(1)
    same_seed = SentenceBatches(batches.sequences, 4, seed=7)
    assert [b.x.tobytes() for b in same_seed.epoch(1)] == fingerprint(1)


def test_bucketing_keeps_lengths_together(batches: SentenceBatches) -> None:
    # Sorted by length before cutting: a batch's lengths span a small range.
    spans = [np.ptp(b.mask.sum(axis=0)) for b in batches]
    assert max(spans) <= 2


def test_pad_multiple_rounds_lengths(sentences) -> None:
    vocab = Vocabulary.build(sentences, size=6)
    padded = SentenceBatches.from_sentences(sentences, vocab, batch_size=4, pad_multiple=4)
    for b in padded.epoch(0):
        longest = int(b.mask.sum(axis=0).max())
        assert b.x.shape[0] == padded_length(longest, 4)


def test_short_lengths_pad_to_a_power_of_two_and_long_ones_to_the_multiple() -> None:
    assert [padded_length(n, 8) for n in range(1, 19)] == [1, 2, 4, 4] + [8] * 4 + [16] * 8 \
        + [24] * 2
    assert [padded_length(n, 1) for n in range(1, 5)] == [1, 2, 3, 4]


def test_stream_windows_cover_the_columns() -> None:
    ids = np.arange(23, dtype=np.int32)
    stream = StreamBatches(ids, batch_size=3, bptt_len=3)  # columns of 7, tail of 2 dropped
    windows = list(stream)
    assert len(windows) == len(stream) == 2
    assert [w.x.shape for w in windows] == [(3, 3), (3, 3)]
    np.testing.assert_array_equal(np.concatenate([w.x for w in windows])[:, 1], np.arange(7, 13))
    np.testing.assert_array_equal(np.concatenate([w.y for w in windows])[:, 1], np.arange(8, 14))
    assert stream.n_tokens == sum(w.mask.sum() for w in windows) == 18
    assert [w.x.tobytes() for w in stream.epoch(3)] == [w.x.tobytes() for w in windows]
    last = list(StreamBatches(ids, batch_size=3, bptt_len=4))[-1]
    assert last.x.shape == (2, 3)  # the last window is shorter


def test_bad_sizes_are_user_errors() -> None:
    with pytest.raises(UserError, match="--batch-size"):
        StreamBatches(np.arange(10), batch_size=0, bptt_len=5)
    with pytest.raises(UserError, match="too short"):
        StreamBatches(np.arange(3), batch_size=2, bptt_len=5)
    with pytest.raises(UserError, match="stream vocabulary"):
        encode_stream([["a"]], Vocabulary(("UNKNOWN_TOKEN", "a")))


def test_stream_vocabulary_of_a_tiny_corpus() -> None:
    vocab = build_stream_vocabulary([["b", "a", "b"], ["c", UNK]])
    assert vocab.words == (UNK, EOS, "b", "a", "c")  # ties (<eos> and b: 2) alphabetically
    np.testing.assert_array_equal(encode_stream([["b", "a", "b"], ["zzz"]], vocab),
                                  [2, 3, 2, 1, 0, 1])
    assert build_stream_vocabulary([["b", "a", "b"]], max_size=3).words == (UNK, "b", EOS)


def test_min_count_leaves_the_rare_words_to_the_unknown_word() -> None:
    sentences = [["b", "a", "b"], ["c", "a", "d"], ["b"]]
    full = Vocabulary.build(sentences, size=10)
    unknown = "UNKNOWN_TOKEN"
    assert full.words == (unknown, "SENTENCE_END", "SENTENCE_START", "b", "a", "c", "d")
    rare_out = Vocabulary.build(sentences, size=10, min_count=2)
    assert rare_out.words == (unknown, "SENTENCE_END", "SENTENCE_START", "b", "a")
    assert Vocabulary.build(sentences, size=5, min_count=2).words == full.words[:5]
    # The sentence markers stay, however rare the sentences.
    only_markers = Vocabulary.build(sentences, size=10, min_count=4)
    assert only_markers.words == full.words[:3]
    assert rare_out.has_words and not only_markers.has_words
    assert not Vocabulary((unknown,)).has_words and Vocabulary((unknown, "b")).has_words


def test_ptb_stream_has_the_standard_counts(shared_data) -> None:
    ptb = shared_data / "ptb"
    train = load_sentences(ptb / "ptb.train.txt", fmt="lines", lowercase=False)
    vocab = build_stream_vocabulary(train)
    ids = encode_stream(train, vocab)
    assert len(vocab) == 10_000
    assert len(ids) == 929_589
    assert (ids == vocab.id(EOS)).sum() == 42_068
    valid_sentences = load_sentences(ptb / "ptb.valid.txt", fmt="lines", lowercase=False)
    valid = encode_stream(valid_sentences, vocab)
    assert len(valid) == 73_760  # every valid word is a training type: no id falls back to <unk>
    assert (valid == 0).sum() == sum(line.split().count(UNK) for line in
                                     (ptb / "ptb.valid.txt").read_text().splitlines())
    assert StreamBatches(ids, batch_size=20, bptt_len=35).n_tokens == (929_589 // 20 - 1) * 20
