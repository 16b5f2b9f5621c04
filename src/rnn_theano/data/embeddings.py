"""Pretrained word vectors (word2vec, GloVe) in their common text format, for an embedding.

One word a line, then its vector, fields separated by single spaces::

    the 0.418 0.24968 -0.41242 0.1217 ...

A word2vec text file starts with a header line ``COUNT DIM``; GloVe's do not. A first line of
exactly two integers is read as that header and skipped (a vector line has at least one
number after its word, and GloVe's numbers have decimal points).

The files run to gigabytes (millions of words of hundreds of numbers), so they are streamed a
line at a time, through gzip when the name ends in ``.gz``, and only the vectors of the
vocabulary's words are parsed and kept: a line of any other word costs a count of its spaces,
which still catches a line with the wrong number of fields, but its numbers are not parsed.
A few GloVe 840B words contain spaces (``. . .``); such a line has more fields than a word and
its vector, and its word, which can be no vocabulary word (tokens have no spaces), is skipped.

A lowercased vocabulary also takes the vectors of cased words (word2vec's GoogleNews vectors
are cased): the exact word when the file has it, else the first of its cased forms.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import SettingError, UserError
from .vocab import SPECIAL_TOKENS, Vocabulary


@dataclass(frozen=True)
class WordVectors:
    """The vectors a file (or a language model) holds for a vocabulary's words."""

    ids: np.ndarray      # (N,) vocabulary ids of the words found, ascending
    vectors: np.ndarray  # (N, dim) their vectors (float64 from a file, a model's dtype)
    n_words: int         # the vocabulary's words, its special tokens left out
    path: str

    def describe(self) -> str:
        return f"{len(self.ids):,} of {self.n_words:,} vocabulary words found in {self.path}"

    def apply(self, embed: np.ndarray) -> np.ndarray:
        """A copy of the embedding matrix ``embed`` (C, dim) with the found words' rows
        replaced by their vectors; the other rows keep their values."""
        embed = np.array(embed)
        embed[self.ids] = self.vectors
        return embed


def word_ids(vocab: Vocabulary) -> dict[str, int]:
    """The id of each vocabulary word that pretrained rows may start, in id order: all but
    the special tokens, whose meaning to the model no outside source shares."""
    return {w: i for i, w in enumerate(vocab.words) if w not in SPECIAL_TOKENS}


def read_vectors(path: str, vocab: Vocabulary, dim: int, lowercase: bool = False) -> WordVectors:
    """The vectors of the ``vocab`` words that the text file at ``path`` holds.

    ``dim`` is the embedding size the vectors must have (else a ``SettingError`` on
    ``embed_dim``); a malformed line is a ``UserError`` naming the file and line. With
    ``lowercase`` (a lowercased vocabulary), cased words stand in for missing lowercase ones.
    """
    wanted = word_ids(vocab)
    kept: dict[int, tuple[bool, np.ndarray]] = {}  # id: (the exact word?, its vector)
    for number, word, numbers in _entries(path, dim):
        exact = word in wanted
        i = wanted.get(word if exact or not lowercase else word.lower())
        if i is None or (i in kept and (kept[i][0] or not exact)):
            continue
        kept[i] = exact, _vector(numbers, path, number)
    ids = np.asarray(sorted(kept), dtype=np.int64)
    vectors = np.array([kept[i][1] for i in ids], dtype=np.float64).reshape(len(ids), dim)
    return WordVectors(ids, vectors, len(wanted), path)


def _entries(path: str, dim: int) -> Iterator[tuple[int, str, str]]:
    """(line number, word, its numbers as text) of each vector line of ``path``, each checked
    to have ``dim`` fields after the word; the header is checked and skipped."""
    try:
        with _open(path) as lines:
            for number, line in enumerate(lines, start=1):
                line = line.rstrip()
                if number == 1:
                    line = line.removeprefix("\ufeff")  # a byte-order mark, from some editors
                    if _first_line(line, dim, path):
                        continue
                if not line:
                    continue
                word, _, numbers = line.partition(" ")
                if not numbers or numbers.count(" ") + 1 != dim:
                    word, numbers = _spaced_word(line, dim, path, number)
                yield number, word, numbers
    except (OSError, EOFError) as e:  # absent, unreadable, or a broken .gz
        raise UserError(f"cannot read word vectors {path} ({getattr(e, 'strerror', None) or e}"
                        "): check the path, and that it is a readable text or .gz file") from None


def _open(path: str) -> io.TextIOBase:
    # Undecodable bytes become U+FFFD: a word with them is no vocabulary word, and a binary
    # file (word2vec's .bin) fails its first vector line's check with a message that says so.
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _first_line(line: str, dim: int, path: str) -> bool:
    """Whether the first line is word2vec's header; either way, the file's vector size (the
    header's, or the first vector's) must be ``dim``."""
    fields = line.split(" ")
    header = len(fields) == 2 and all(f.isdigit() for f in fields)
    size = int(fields[1]) if header else len(fields) - 1
    if size != dim:
        raise SettingError("embed_dim", f"{dim} does not fit the {size}-dimensional word "
                           f"vectors of {path}: use {{others}} {size}", ("embed_dim",))
    return header


def _spaced_word(line: str, dim: int, path: str, number: int) -> tuple[str, str]:
    """The word and numbers of a line with other than ``dim`` fields after its first: a word
    with spaces in it when the field before the last ``dim`` is not a number, else an error."""
    fields = line.split(" ")
    if len(fields) > dim + 1 and not _is_number(fields[-dim - 1]):
        return " ".join(fields[:-dim]), " ".join(fields[-dim:])
    raise _bad_line(path, number, f"{len(fields) - 1} numbers after the word, not {dim}")


def _vector(numbers: str, path: str, number: int) -> np.ndarray:
    """The parsed ``numbers`` of line ``number`` (only vocabulary words' lines get here)."""
    try:
        vector = np.array([float(f) for f in numbers.split(" ")], dtype=np.float64)
    except ValueError:
        bad = next(f for f in numbers.split(" ") if not _is_number(f))
        raise _bad_line(path, number, f"{bad[:20]!r} is not a number") from None
    if not np.isfinite(vector).all():
        raise _bad_line(path, number, "a number is not finite (nan or inf)")
    return vector


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _bad_line(path: str, number: int, problem: str) -> UserError:
    return UserError(f"{path}, line {number}: {problem}: word vectors must be a text file of "
                     "lines 'WORD X1 X2 ...' separated by single spaces (a binary word2vec "
                     "file must be converted to text first)")
