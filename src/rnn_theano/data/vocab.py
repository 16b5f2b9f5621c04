"""The vocabulary: the tutorial's most-frequent-words dictionary and sentence encoding.

The tutorial keeps the ``vocab_size - 1`` most frequent words, maps every other word to
``UNKNOWN_TOKEN`` and wraps each sentence in ``SENTENCE_START`` ... ``SENTENCE_END``. A
training pair is ``x = ids[:-1]``, ``y = ids[1:]``: predict every next word.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import UserError

UNKNOWN_TOKEN = "UNKNOWN_TOKEN"
SENTENCE_START = "SENTENCE_START"
SENTENCE_END = "SENTENCE_END"
SPECIAL_TOKENS = (UNKNOWN_TOKEN, SENTENCE_START, SENTENCE_END)


@dataclass(frozen=True)
class Vocabulary:
    """An ordered list of words; a word's id is its index. Id 0 is ``UNKNOWN_TOKEN``."""

    words: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.words)})

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], size: int,
              min_count: int = 1) -> Vocabulary:
        """Keep the ``size - 1`` most frequent words of ``sentences`` plus ``UNKNOWN_TOKEN``,
        of those seen at least ``min_count`` times.

        ``SENTENCE_START`` and ``SENTENCE_END`` are counted once per sentence, so they are
        always kept. Ties in frequency are broken alphabetically, so the result depends only
        on the counts, never on the order of the corpus.
        """
        if size < len(SPECIAL_TOKENS):
            raise UserError(f"--vocab-size {size} is too small: it must be at least "
                            f"{len(SPECIAL_TOKENS)} ({', '.join(SPECIAL_TOKENS)})")
        counts: Counter[str] = Counter()
        n = 0
        for sentence in sentences:
            counts.update(sentence)
            n += 1
        counts[SENTENCE_START] += n
        counts[SENTENCE_END] += n
        counts.pop(UNKNOWN_TOKEN, None)
        markers = (SENTENCE_START, SENTENCE_END)
        ranked = sorted(((w, c) for w, c in counts.items() if c >= min_count or w in markers),
                        key=lambda kv: (-kv[1], kv[0]))
        return cls((UNKNOWN_TOKEN,) + tuple(w for w, _ in ranked[: size - 1]))

    def __len__(self) -> int:
        return len(self.words)

    @property
    def has_words(self) -> bool:
        """Whether any word besides the special tokens was kept (whichever of them it has)."""
        return any(w not in SPECIAL_TOKENS for w in self.words)

    def __contains__(self, word: str) -> bool:
        return word in self._index

    def id(self, word: str) -> int:
        """The id of ``word``, or of ``UNKNOWN_TOKEN`` when it is out of vocabulary."""
        return self._index.get(word, 0)

    @property
    def start_id(self) -> int:
        return self._index[SENTENCE_START]

    @property
    def end_id(self) -> int:
        return self._index[SENTENCE_END]

    @property
    def unknown_id(self) -> int:
        return 0

    def encode(self, sentence: Sequence[str]) -> np.ndarray:
        """Ids of ``SENTENCE_START, *sentence, SENTENCE_END`` as an int32 array."""
        ids = [self.start_id] + [self.id(w) for w in sentence] + [self.end_id]
        return np.asarray(ids, dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.words[i] for i in ids]

    def training_pairs(self, sentences: Iterable[Sequence[str]]) -> list[tuple[np.ndarray, np.ndarray]]:
        """The tutorial's ``(x, y)`` pairs: each encoded sentence without its last and first id."""
        pairs = []
        for sentence in sentences:
            ids = self.encode(sentence)
            pairs.append((ids[:-1], ids[1:]))
        return pairs
