"""Parallel text for translation: files of aligned lines, subword vocabularies, batches.

Line i of the source file translates to line i of the target file. Text is read raw (cased,
untokenized) and cut into subwords by a ``sentencepiece`` model trained on the training side
of each language alone (BPE or unigram; ``word`` and ``char`` models too); its bytes travel
inside the checkpoint, so a translation needs nothing but the checkpoint. Ids: 0 is the
unknown piece, 1 the sentence start (BOS), 2 the sentence end (EOS).

A training pair is ``src = ids(source)`` and, for the decoder, ``y_in = BOS ids(target)``,
``y_out = ids(target) EOS``: every target word and the end are predicted, teacher forced.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import SettingError, UserError
from .batching import _LengthBuckets, round_up

UNK, BOS, EOS = 0, 1, 2
SUBWORD_MODELS = ("bpe", "unigram", "word", "char")


def split_lines(text: str) -> list[str]:
    """The stripped lines of ``text``, cut at newlines only (a final newline ends the last
    line; other line-break characters inside a sentence stay in it)."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.strip() for line in lines]


def read_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file (gzip-compressed when its name ends in .gz), stripped."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            return split_lines(f.read())
    except FileNotFoundError:
        raise UserError(f"{path} not found: give an existing file of one sentence per "
                        "line") from None
    except (UnicodeDecodeError, OSError, EOFError) as e:
        raise UserError(f"{path} cannot be read as UTF-8 text ({type(e).__name__}): give a "
                        "UTF-8 file of one sentence per line") from None


def read_parallel(src: str | Path, tgt: str | Path) -> tuple[list[str], list[str]]:
    """Aligned source and target lines; files of different line counts are refused."""
    a, b = read_lines(src), read_lines(tgt)
    if len(a) != len(b):
        raise UserError(f"{src} has {len(a):,} lines but {tgt} has {len(b):,}: parallel files "
                        "need one translation per line, in the same order")
    return a, b


class Subwords:
    """A sentencepiece model: text to ids and back. ``model`` is its serialized bytes."""

    def __init__(self, model: bytes) -> None:
        import sentencepiece as spm
        self.model = bytes(model)
        self._sp = spm.SentencePieceProcessor(model_proto=self.model)

    @classmethod
    def train(cls, lines: Sequence[str], vocab_size: int, model_type: str = "bpe",
              setting: str = "vocab_size") -> Subwords:
        """A model of about ``vocab_size`` pieces (fewer when the text has fewer) from ``lines``;
        a size too small for the text's characters is refused under ``setting``'s name."""
        import sentencepiece as spm
        text = [line for line in lines if line]
        if not text:
            raise UserError("no text to build a vocabulary from: the training file is empty")
        out = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(text), model_writer=out, vocab_size=vocab_size,
                model_type=model_type, character_coverage=1.0, hard_vocab_limit=False,
                unk_id=UNK, bos_id=BOS, eos_id=EOS, pad_id=-1,
                num_threads=os.cpu_count() or 1, minloglevel=2)
        except RuntimeError as e:
            need = len(set("".join(text))) + 3  # a piece for every character, and 3 markers
            if vocab_size >= need:  # failed for another reason: say sentencepiece's
                raise UserError("sentencepiece could not learn pieces from the training text "
                                f"({str(e).splitlines()[0][:120]})") from None
            raise SettingError(setting, f"{vocab_size} is too small for {model_type} on this "
                               f"text: its {need - 3} distinct characters and 3 markers need "
                               f"at least {need} pieces") from None
        return cls(out.getvalue())

    def __len__(self) -> int:
        return self._sp.get_piece_size()

    @property
    def pieces(self) -> tuple[str, ...]:
        return tuple(map(self.piece, range(len(self))))

    def encode(self, line: str) -> np.ndarray:
        return np.asarray(self._sp.encode(line), dtype=np.int32)

    def split(self, line: str) -> list[str]:
        """``line``'s pieces as strings; a piece that starts a word begins with '▁'.
        Pieces never cross a space, so a line's pieces are its words' pieces in turn."""
        return self._sp.encode(line, out_type=str)

    def piece(self, i: int) -> str:
        return self._sp.id_to_piece(int(i))

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.decode([int(i) for i in ids])


class PairBatch(NamedTuple):
    """A minibatch of sentence pairs, time-major; the order of the graph's inputs."""

    src: np.ndarray       # (S, B) int32 source ids
    src_mask: np.ndarray  # (S, B) float32 1 on real source tokens
    y_in: np.ndarray      # (T, B) int32 BOS, then the target's ids
    y_out: np.ndarray     # (T, B) int32 the target's ids, then EOS
    mask: np.ndarray      # (T, B) float32 1 on real target positions


def _padded(rows: Sequence[np.ndarray], multiple: int) -> tuple[np.ndarray, np.ndarray]:
    """Time-major zero-padded ids and mask of ``rows``, the length rounded up to ``multiple``."""
    T = round_up(max(1, max(len(r) for r in rows)), multiple)
    ids = np.zeros((T, len(rows)), np.int32)
    mask = np.zeros((T, len(rows)), np.float32)
    for b, r in enumerate(rows):
        ids[:len(r), b], mask[:len(r), b] = r, 1.0
    return ids, mask


def pair_batch(src: Sequence[np.ndarray], tgt: Sequence[np.ndarray],
               multiple: int = 1) -> PairBatch:
    """The batch of pairs (``src[b]``, ``tgt[b]``), lengths rounded up to ``multiple``."""
    x, x_mask = _padded(src, multiple)
    y_in, mask = _padded([np.concatenate([[BOS], t]) for t in tgt], multiple)
    y_out, _ = _padded([np.concatenate([t, [EOS]]) for t in tgt], multiple)
    return PairBatch(x, x_mask, y_in, y_out, mask)


class PairBatches(_LengthBuckets):
    """Sentence pairs bucketed by source length, then target length; padded to the longest.

    Pairs with an empty side are left out (nothing to read, or nothing to learn).
    """

    def __init__(self, src: Sequence[np.ndarray], tgt: Sequence[np.ndarray], batch_size: int,
                 *, seed: int = 0, pad_multiple: int = 1, name: str = "the data") -> None:
        super().__init__(batch_size, seed, pad_multiple)
        kept = [i for i in range(len(src)) if len(src[i]) and len(tgt[i])]
        if not kept:
            raise UserError(f"{name} has no sentence pair with words on both sides: give "
                            "files of parallel sentences")
        self.src = [src[i] for i in kept]
        self.tgt = [tgt[i] for i in kept]
        self._lengths = np.array([len(s) for s in self.src])
        self._tgt_lengths = np.array([len(t) + 1 for t in self.tgt])  # EOS predicted too
        self.n_tokens = int(self._tgt_lengths.sum())

    @property
    def _sort_keys(self) -> np.ndarray:
        return self._lengths * (int(self._tgt_lengths.max()) + 1) + self._tgt_lengths

    def _batch(self, indices: np.ndarray) -> PairBatch:
        return pair_batch([self.src[i] for i in indices], [self.tgt[i] for i in indices],
                          self.pad_multiple)


def source_batches(src: Sequence[np.ndarray], batch_size: int,
                   multiple: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(indices, ids, mask) of sources of similar length, for decoding; every index once.

    Under static shapes (``multiple`` > 1) the last batch is filled up with empty rows, so
    every batch has ``batch_size`` columns; their indices are -1.
    """
    order = np.argsort([len(s) for s in src], kind="stable")
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        rows = [src[i] for i in chunk]
        if multiple > 1 and len(rows) < batch_size:
            chunk = np.concatenate([chunk, -np.ones(batch_size - len(rows), int)])
            rows += [np.zeros(0, np.int32)] * (batch_size - len(rows))
        ids, mask = _padded(rows, multiple)
        yield chunk, ids, mask
