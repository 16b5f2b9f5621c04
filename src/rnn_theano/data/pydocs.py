"""The built-in corpus: the prose of the running Python's own documentation.

Every Python install carries a few MB of English: the reference-manual topics that
``help()`` shows (``pydoc_data.topics``), the docstrings of the standard library, and the
standard library's comments, which explain the code in full sentences too (they add about
a third to the docstrings). That makes a default corpus that needs no download. The
standard library's sources are parsed with ``ast``, never imported. Code, doctests, tables
and reST markup are filtered out, and only sentences that look like prose are kept.
"""

from __future__ import annotations

import ast
import platform
import re
import sysconfig
import warnings
from collections.abc import Iterator
from pathlib import Path

from ..atomic import atomic_write
from .corpus import check_max_sentences
from .tokenize import sentence_splitter, tokenize_words

MIN_WORDS = 3
MAX_WORDS = 50
# Below this fraction of letters among the non-space characters, a sentence is code or a
# formula rather than prose.
MIN_ALPHA_FRACTION = 0.6

# Standard-library directories whose text is tests, tools, generated tables or data.
_SKIP_DIRS = frozenset({
    "site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test", "idlelib",
    "lib2to3", "turtledemo", "pydoc_data", "encodings",
})
_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)

# Inline reST: ":role:`text <target>`", ":role:`~a.b`", "``literal``", "`text`", "*em*", "**strong**".
_ROLE_WITH_TARGET = re.compile(r"(?::[\w.+-]+:)?`([^`<]+?)\s*<[^`>]*>`_{0,2}")
_ROLE = re.compile(r"(?::[\w.+-]+:)?`(?:~[^`]*\.)?~?([^`]+)`_{0,2}")  # "~a.b" shows as "b"
_LITERAL = re.compile(r"``([^`]+)``")
_EMPHASIS = re.compile(r"\*{1,2}([^*\s][^*]*?)\*{1,2}")
_BULLET = re.compile(r"(?:[-*+•]|\d+\.|#\.|\(?[a-z0-9]\))\s+")
_RULE = re.compile(r"[=\-~^*+#|_:.\s]*")  # a line of table borders or title underlines
_COMMENT = re.compile(r"\s*#(?!!)#* ?(.*)")  # not a "#!" line
_SENTENCE_END = (".", "?", "!")


def builtin_sentences(lowercase: bool = True, max_sentences: int | None = None,
                      cache_dir: Path | None = None) -> list[list[str]]:
    """Tokenized prose sentences of this Python's documentation, in a fixed order.

    The result depends only on the Python installation (and on NLTK's ``punkt_tab`` data
    being installed or not). With ``cache_dir``, the tokenized corpus is stored there once
    (``pydocs-<python version>-<lowercase>.txt``, one sentence per line) and read back on
    later calls. ``max_sentences`` keeps the first that many sentences.
    """
    check_max_sentences(max_sentences)
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"pydocs-{platform.python_version()}-{lowercase}.txt"
    sentences = _read_cache(cache) if cache is not None else None
    if sentences is None:
        sentences = _build(lowercase)
        if cache is not None:
            _write_cache(cache, sentences)
    return sentences[:max_sentences]


def _documentation_texts() -> Iterator[str]:
    """The raw texts: reference topics by name, then each standard-library module's
    docstrings and comment blocks, modules in path order."""
    from pydoc_data.topics import topics  # imported on use: a 0.7 MB module

    for name in sorted(topics):
        yield topics[name]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in _stdlib_sources(stdlib):
        try:
            source = path.read_bytes()
        except OSError:
            continue  # an unreadable file only means a slightly smaller corpus
        yield from _docstrings(source)
        yield from _comment_blocks(source.decode("utf-8", errors="replace"))


def _build(lowercase: bool) -> list[list[str]]:
    paragraphs = [p for text in _documentation_texts() for p in prose_paragraphs(text)]
    split = sentence_splitter("\n\n".join(paragraphs))
    seen: set[tuple[str, ...]] = set()
    sentences = []
    for paragraph in paragraphs:
        for sentence in split(paragraph):
            if not _is_prose_sentence(sentence):
                continue
            tokens = tokenize_words(sentence, lowercase)
            # Boilerplate docstrings repeat verbatim across modules; keep one copy of each.
            # Compared without case, so that the lowercase flag changes case and nothing else.
            key = tuple(t.lower() for t in tokens)
            # A sentence that trails off ("...") is not a whole sentence.
            if (MIN_WORDS <= len(tokens) <= MAX_WORDS and tokens[-1] in _SENTENCE_END
                    and key not in seen):
                seen.add(key)
                sentences.append(tokens)
    return sentences


def _stdlib_sources(stdlib: Path) -> Iterator[Path]:
    for path in sorted(stdlib.rglob("*.py")):
        folders = path.relative_to(stdlib).parts[:-1]
        if not any(f in _SKIP_DIRS or f.startswith("config-") for f in folders):
            yield path


def _docstrings(source: bytes) -> Iterator[str]:
    """Module, class and function docstrings of ``source`` in the order they appear."""
    try:
        # Old sources trigger SyntaxWarnings (invalid escapes); this corpus prints nothing.
        with warnings.catch_warnings(action="ignore"):
            tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return  # a file this Python cannot parse has no docs worth having
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, _DOCUMENTED):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield doc
        stack.extend(reversed([n for n in ast.iter_child_nodes(node) if _may_hold_docs(n)]))


def _comment_blocks(source: str) -> Iterator[str]:
    """Runs of whole-line ``#`` comments, ``#`` removed, relative indentation kept."""
    block: list[str] = []
    for line in source.splitlines():
        match = _COMMENT.match(line)
        if match:
            block.append(match.group(1))
        elif block:
            yield "\n".join(block)
            block = []
    if block:
        yield "\n".join(block)


def _may_hold_docs(node: ast.AST) -> bool:
    # Definitions nest inside if/try/with blocks (platform-specific implementations).
    return isinstance(node, (*_DOCUMENTED, ast.If, ast.Try, ast.TryStar, ast.With))


def prose_paragraphs(text: str) -> Iterator[str]:
    """The prose paragraphs of a docstring or help topic, each on one line, reST stripped.

    Dropped: doctests, literal and indented code blocks (after ``::`` or a line ending in
    ``:``, and lines indented deeper than their paragraph), reST directives and their
    content, tables, title underlines, and lines that are mostly symbols.
    """
    literal_indent: int | None = None  # paragraphs indented deeper than this are code
    for block in _blocks(text):
        indent = _indent(block[0])
        if literal_indent is not None:
            if indent > literal_indent:
                continue
            literal_indent = None
        first = block[0].strip()
        if first.startswith(".."):  # a directive, comment or link target, and its body
            literal_indent = indent
            continue
        runs = _prose_runs(block)
        if runs and runs[-1][-1].endswith(":"):
            literal_indent = indent
        for run in runs:
            yield _strip_inline_markup(" ".join(run))


def _blocks(text: str) -> Iterator[list[str]]:
    block: list[str] = []
    for line in text.expandtabs().splitlines():
        if line.strip():
            block.append(line.rstrip())
        elif block:
            yield block
            block = []
    if block:
        yield block


def _prose_runs(block: list[str]) -> list[list[str]]:
    """Runs of consecutive prose lines of a paragraph (a list item's bullet removed).

    A doctest or a line indented deeper than the paragraph's text (code) ends the
    paragraph. A table row, a title underline or a line that is mostly symbols is dropped
    and separates the lines around it, so that no sentence is spliced across it.
    """
    bullet = _BULLET.match(block[0].lstrip())
    # List items continue under their text, one bullet-width deeper than the bullet.
    text_indent = _indent(block[0]) + (bullet.end() if bullet else 0)
    runs: list[list[str]] = [[]]
    for i, line in enumerate(block):
        stripped = line.strip()
        if stripped.startswith((">>>", "...")) or (i and _indent(line) > text_indent):
            break
        if (_RULE.fullmatch(stripped) or stripped.startswith(("|", "+-", "+="))
                or _alpha_fraction(stripped) < MIN_ALPHA_FRACTION):
            runs.append([])
            continue
        runs[-1].append(stripped[bullet.end():] if i == 0 and bullet else stripped)
    return [run for run in runs if run]


def _strip_inline_markup(text: str) -> str:
    text = _LITERAL.sub(r"\1", text)
    text = _ROLE_WITH_TARGET.sub(r"\1", text)
    text = _ROLE.sub(r"\1", text)
    return _EMPHASIS.sub(r"\1", text)


def _is_prose_sentence(sentence: str) -> bool:
    return (sentence[:1].isupper() and sentence.endswith(_SENTENCE_END)
            and ">>>" not in sentence and _alpha_fraction(sentence) >= MIN_ALPHA_FRACTION)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _alpha_fraction(text: str) -> float:
    compact = "".join(text.split())
    return sum(map(str.isalpha, compact)) / len(compact) if compact else 0.0


# The cache only saves time: when it cannot be read or written, the corpus is built instead.


def _read_cache(path: Path) -> list[list[str]] | None:
    try:
        with open(path, encoding="utf-8") as f:
            # Tokens never hold whitespace (the word tokenizer splits on it all).
            sentences = [line.split(" ") for line in f.read().split("\n") if line]
    except (OSError, UnicodeDecodeError):
        return None
    return sentences or None


def _write_cache(path: Path, sentences: list[list[str]]) -> None:
    """Write the cache atomically (temporary file, then rename): no reader sees half a file."""
    try:
        atomic_write(path, lambda f: f.writelines(" ".join(tokens) + "\n" for tokens in sentences),
                     text=True)
    except OSError:
        pass  # a cache that cannot be written is only a slower next start
