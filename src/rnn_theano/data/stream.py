"""The standard LM benchmark's corpus convention (Mikolov's Penn Treebank setup).

Every line's tokens are followed by one ``<eos>``; the whole corpus is one stream of ids. The
vocabulary is every token type of the training stream, ``<eos>`` included, with no sentence
start marker: 10,000 types and 929,589 tokens for ``ptb.train.txt``. Read such files with
``corpus.load_sentences(path, fmt="lines", lowercase=False)`` (PTB writes numbers as ``N``).

The vocabulary is a ``vocab.Vocabulary`` (so checkpoints store it the same way) whose id 0 is
``<unk>``: words never seen in training map to it, as PTB already does in its files. It has
no ``SENTENCE_START``/``SENTENCE_END``, so it is for stream mode only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from ..errors import UserError
from .vocab import Vocabulary

EOS = "<eos>"
UNK = "<unk>"


def build_stream_vocabulary(sentences: Iterable[Sequence[str]],
                            max_size: int | None = None) -> Vocabulary:
    """``<unk>`` then every type of ``sentences`` plus ``<eos>``, most frequent first.

    ``<unk>`` is always id 0 (added if the corpus has none). ``max_size`` keeps only the
    ``max_size - 1`` most frequent other types; ties are broken alphabetically, so the result
    depends only on the counts.
    """
    if max_size is not None and max_size < 2:
        raise UserError(f"--vocab-size {max_size} is too small for stream mode: it must be at "
                        f"least 2 ({UNK}, {EOS})")
    counts: Counter[str] = Counter()
    for sentence in sentences:
        counts.update(sentence)
        counts[EOS] += 1
    counts.pop(UNK, None)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if max_size is not None:
        ranked = ranked[:max_size - 1]
    return Vocabulary((UNK,) + tuple(w for w, _ in ranked))


def encode_stream(sentences: Iterable[Sequence[str]], vocab: Vocabulary) -> np.ndarray:
    """All ``sentences`` as one int32 id stream, each followed by ``<eos>``."""
    if EOS not in vocab:
        raise UserError(f"the vocabulary has no {EOS}: stream mode needs a stream vocabulary "
                        "(build_stream_vocabulary), not a sentence-mode one")
    eos = vocab.id(EOS)
    ids = [i for sentence in sentences for i in (*map(vocab.id, sentence), eos)]
    return np.asarray(ids, dtype=np.int32)
