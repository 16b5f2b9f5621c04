"""Sentence and word tokenization with NLTK, working offline.

The tutorial used ``nltk.sent_tokenize`` and ``nltk.word_tokenize``, which need NLTK's
``punkt_tab`` data package. When that package is installed it is used; otherwise a Punkt
model is trained on the corpus itself (Punkt is unsupervised, so this needs no data and
learns the corpus's own abbreviations). Words are split by NLTK's Treebank-style
``NLTKWordTokenizer``, which is what ``word_tokenize`` runs after sentence splitting.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import nltk
from nltk.tokenize import NLTKWordTokenizer
from nltk.tokenize.punkt import PunktSentenceTokenizer, PunktTokenizer, PunktTrainer

# Punkt learns abbreviations and sentence starters from word statistics that settle within
# a MB of text; training on more only costs time.
TRAIN_SAMPLE_CHARS = 1_000_000

# Stateless: one instance serves every call.
_WORD_TOKENIZER = NLTKWordTokenizer()


def sentence_splitter(text_sample: str) -> Callable[[str], list[str]]:
    """A function that splits a paragraph of text into sentences.

    Uses NLTK's pretrained English Punkt model when the ``punkt_tab`` data package is
    installed; otherwise trains Punkt on (the first ``TRAIN_SAMPLE_CHARS`` characters of)
    ``text_sample``, which should be the corpus about to be split.
    """
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError:
        return _trained_splitter(text_sample[:TRAIN_SAMPLE_CHARS])
    return _pretrained_english().tokenize


def tokenize_words(sentence: str, lowercase: bool) -> list[str]:
    """Treebank-style word tokens of ``sentence`` (``"don't."`` -> ``do n't .``)."""
    tokens = _WORD_TOKENIZER.tokenize(sentence)
    return [t.lower() for t in tokens] if lowercase else tokens


def _trained_splitter(text: str) -> Callable[[str], list[str]]:
    trainer = PunktTrainer()
    trainer.train(text, finalize=True)
    return PunktSentenceTokenizer(trainer.get_params()).tokenize


@lru_cache(maxsize=1)
def _pretrained_english() -> PunktTokenizer:
    return PunktTokenizer("english")
