"""Reading a corpus from files into tokenized sentences.

A sentence is a list of word tokens, without sentence start/end markers (the vocabulary
adds those). Formats:

``csv``
    The tutorial's Reddit CSV: a ``body`` column, RFC 4180 quoting (newlines inside quoted
    fields), HTML entities such as ``&gt;``. Each comment is split into sentences.
``text``
    Prose. Blank lines separate paragraphs; a line break inside a paragraph is a space.
    Each paragraph is split into sentences.
``lines``
    Pre-tokenized text such as Penn Treebank: one sentence per line, tokens separated by
    whitespace, kept as they are (``<unk>`` included).
``auto``
    ``csv`` for a ``.csv`` file; ``lines`` when the text looks pre-tokenized; else ``text``.

A directory stands for all the ``*.txt`` files under it, read in sorted order.
"""

from __future__ import annotations

import csv
import html
import io
import re
import warnings
from collections.abc import Iterator
from itertools import chain, islice
from pathlib import Path

from ..errors import UserError
from .tokenize import sentence_splitter, tokenize_words

FORMATS = ("auto", "csv", "text", "lines")

# Pre-tokenized text has (nearly) no blank lines and (nearly) no punctuation glued to a
# word (PTB: none, and a few glued tokens in ten thousand), while prose (Shakespeare,
# Reddit, Python docs, Markdown) has a blank line and a glued token every few lines: the
# thresholds sit far from both.
_DETECT_CHARS = 1_000_000
_MAX_BLANK_LINE_FRACTION = 0.02
_MAX_GLUED_PUNCTUATION_FRACTION = 0.01

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")


def load_sentences(path: str | Path, fmt: str = "auto", lowercase: bool = True,
                   max_sentences: int | None = None) -> list[list[str]]:
    """Tokenized sentences of the file or directory ``path``, in file order.

    ``fmt`` is one of ``FORMATS``; with a directory it applies to each of its ``*.txt``
    files. ``max_sentences`` keeps only the first that many sentences. Raises ``UserError``
    for a missing, empty, binary or non-UTF-8 file, a CSV without a ``body`` column, and a
    corpus with no sentence in it.
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise UserError(f"unknown corpus format {fmt!r}: use one of {', '.join(FORMATS)}")
    check_max_sentences(max_sentences)
    per_file = (_file_sentences(file, fmt, lowercase) for file in _corpus_files(path))
    sentences = list(islice(chain.from_iterable(per_file), max_sentences))
    if not sentences:
        raise UserError(f"{path} contains no sentence: check that it holds text, and that the "
                        f"format ({fmt}) is right for it")
    return sentences


def check_max_sentences(max_sentences: int | None) -> None:
    """Refuse a sentence limit that would keep nothing (``None`` means no limit)."""
    if max_sentences is not None and max_sentences < 1:
        raise UserError(f"--max-sentences {max_sentences} keeps nothing: give a positive number "
                        "or leave it out to keep every sentence")


def detect_format(path: str | Path) -> str:
    """The format ``auto`` picks for the file ``path``: ``csv``, ``lines`` or ``text``."""
    path = Path(path)
    return _detect_format(path, _read_text(path))


def _corpus_files(path: Path) -> list[Path]:
    if not path.exists():
        raise UserError(f"{path} does not exist: check the path (a file, or a directory of "
                        ".txt files)")
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.rglob("*.txt") if p.is_file())
    if not files:
        raise UserError(f"{path} is a directory with no .txt files in it: put the corpus "
                        "in .txt files there, or give the path of the file itself")
    return files


def _file_sentences(path: Path, fmt: str, lowercase: bool) -> Iterator[list[str]]:
    text = _read_text(path)
    if fmt == "auto":
        fmt = _detect_format(path, text)
    if fmt == "csv":
        return _prose_sentences(_csv_comments(text, path), lowercase)
    if fmt == "text":
        return _prose_sentences([text], lowercase)
    return _line_sentences(text, lowercase)


def _read_text(path: Path) -> str:
    """The text of ``path``, refusing what is not a readable, non-empty UTF-8 text file."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror}): check that it is a readable "
                        "file") from None
    if not data.strip():
        raise UserError(f"{path} is empty: put the corpus text in it, or point at another file")
    nul = data.find(b"\0")
    if nul >= 0:
        raise UserError(f"{path} looks binary (a NUL byte at offset {nul}): give a UTF-8 text "
                        "file; a UTF-16 file looks like this too: convert it with "
                        f"iconv -f UTF-16 -t UTF-8 {path} > {path.stem}-utf8{path.suffix}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}): "
                        f"convert it to UTF-8, e.g. iconv -f LATIN1 -t UTF-8 {path} > "
                        f"{path.stem}-utf8{path.suffix}") from None
    return text.removeprefix("\ufeff")


def _detect_format(path: Path, text: str) -> str:
    if path.suffix.lower() == ".csv":
        return "csv"
    return "lines" if _looks_pretokenized(text[:_DETECT_CHARS]) else "text"


def _looks_pretokenized(sample: str) -> bool:
    lines = sample.rstrip().split("\n")
    tokenized = [line.split() for line in lines]
    tokenized = [tokens for tokens in tokenized if tokens]
    blank_fraction = 1 - len(tokenized) / len(lines)
    n_tokens = sum(len(tokens) for tokens in tokenized)
    glued = sum(_glued_punctuation(tokens) for tokens in tokenized)
    return (blank_fraction <= _MAX_BLANK_LINE_FRACTION
            and glued <= _MAX_GLUED_PUNCTUATION_FRACTION * n_tokens)


def _glued_punctuation(tokens: list[str]) -> int:
    """How many tokens of a line carry punctuation a Treebank tokenizer would split off."""
    glued = sum(len(t) > 1 and (t[-1] in ',;:!?")' or t[0] in '"(') for t in tokens)
    # A sentence-final period; inside a line "mr." or "u.s." are legitimate tokens.
    last = tokens[-1]
    return glued + (len(last) > 1 and last.endswith(".") and last.strip(".") != "")


def _line_sentences(text: str, lowercase: bool) -> Iterator[list[str]]:
    for line in io.StringIO(text, newline=None):  # \n, \r\n or \r, as open() reads text
        tokens = (line.lower() if lowercase else line).split()
        if tokens:
            yield tokens


def _prose_sentences(documents: list[str], lowercase: bool) -> Iterator[list[str]]:
    """Sentences of prose documents: paragraphs split on blank lines, then Punkt."""
    paragraphs = [" ".join(p.split()) for doc in documents for p in _PARAGRAPH_BREAK.split(doc)]
    paragraphs = [p for p in paragraphs if p]
    split = sentence_splitter("\n\n".join(paragraphs))
    for paragraph in paragraphs:
        for sentence in split(paragraph):
            tokens = tokenize_words(sentence, lowercase)
            if tokens:
                yield tokens


def _csv_comments(text: str, path: Path) -> list[str]:
    """The ``body`` field of every record, HTML entities unescaped.

    A last record cut off inside a quoted field (the tutorial's sample file ends that way)
    is kept, with a warning.
    """
    lines = list(io.StringIO(text, newline=""))  # split only at real line ends, like a csv file
    reader = csv.reader(lines)
    bodies = []
    try:
        column = _body_column(next(reader), path)
        record_start = last_start = reader.line_num
        for row in reader:
            if column < len(row) and row[column].strip():
                bodies.append(html.unescape(row[column]))
            last_start, record_start = record_start, reader.line_num
    except csv.Error as e:
        raise UserError(f"{path} line {reader.line_num}: malformed CSV ({e}); fix the quoting "
                        "there, or read the file with --format text") from None
    if bodies and not _complete_record(lines[last_start:]):
        warnings.warn(f"{path}: the last record is cut off (a quoted field never closes); "
                      "it is read as it is", stacklevel=2)
    return bodies


def _body_column(header: list[str], path: Path) -> int:
    names = [name.strip().lower() for name in header]
    if "body" not in names:
        raise UserError(f"{path} has no 'body' column (its columns: {', '.join(header) or 'none'}): "
                        "name the text column 'body' in the header line, or read the file "
                        "with --format text")
    return names.index("body")


def _complete_record(record_lines: list[str]) -> bool:
    try:
        for _ in csv.reader(record_lines, strict=True):
            pass
    except csv.Error:
        return False
    return True
