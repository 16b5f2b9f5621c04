"""The built-in corpus: Python's own documentation, as prose sentences."""

import platform
import re

import pytest

from rnn_theano.data import pydocs
from rnn_theano.data.pydocs import builtin_sentences, prose_paragraphs


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("pydocs-cache")


@pytest.fixture(scope="module")
def cased(cache_dir):
    """The corpus with case kept, built once (cold) and cached for the module."""
    return builtin_sentences(lowercase=False, cache_dir=cache_dir)


def test_corpus_is_large_and_looks_like_prose(cased):
    assert len(cased) > 10_000
    assert sum(len(s) for s in cased) > 150_000
    assert all(pydocs.MIN_WORDS <= len(s) <= pydocs.MAX_WORDS for s in cased)
    assert all(s[0][:1].isupper() and s[-1] in pydocs._SENTENCE_END for s in cased)
    assert len({tuple(s) for s in cased}) == len(cased)  # no repeated boilerplate


def test_no_doctest_or_markup_residue(cased):
    text = "\n".join(" ".join(s) for s in cased)
    assert ">>>" not in text
    assert not re.search(r":(func|meth|class|attr|mod|ref|data|exc):", text)
    assert not re.search(r"\b(versionadded|versionchanged|deprecated|seealso|note) : :", text)


def test_build_is_deterministic_and_prints_nothing(cased, capsys):
    # A second cold build (no cache); lowercasing changes case and nothing else.
    lower = builtin_sentences(lowercase=True)
    assert capsys.readouterr() == ("", "")
    assert lower == [[w.lower() for w in s] for s in cased]


def test_cache_round_trip(cased, cache_dir):
    cache = cache_dir / f"pydocs-{platform.python_version()}-False.txt"
    lines = cache.read_text(encoding="utf-8").splitlines()
    assert [line.split(" ") for line in lines] == cased
    assert [p.name for p in cache_dir.iterdir()] == [cache.name]  # no temporary file left
    # The cache is what later calls read: an edit to it shows.
    cache.write_text("A cached sentence .\n", encoding="utf-8")
    try:
        assert builtin_sentences(lowercase=False, cache_dir=cache_dir) == [["A", "cached", "sentence", "."]]
    finally:
        cache.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_max_sentences(cased, cache_dir):
    assert builtin_sentences(lowercase=False, max_sentences=5, cache_dir=cache_dir) == cased[:5]


DOCSTRING = """Summary line of the function.

A Title
=======

The length is
r = (x**2 + y**2) ** 0.5 / {n}
for every point.

Use :func:`os.path.join` and ``str.split`` to build a :class:`~pathlib.Path`, see
:ref:`the tutorial <tut-files>` for *more* detail.

Example::

    value = compute(1, 2)
    print(value)

>>> compute(1, 2)
3

.. versionadded:: 3.4
   An indented directive body that is not prose.

+-------+-------+
| a     | b     |
+=======+=======+

- A list item that wraps
  onto a second line.

Args:
    x: an argument description, deeper than its paragraph.
"""


def test_prose_paragraphs_strip_code_and_markup():
    assert list(prose_paragraphs(DOCSTRING)) == [
        "Summary line of the function.",
        "A Title",
        "The length is",  # no sentence spliced across the formula line
        "for every point.",
        "Use os.path.join and str.split to build a Path, see the tutorial for more detail.",
        "Example::",
        "A list item that wraps onto a second line.",
        "Args:",
    ]
