"""Reading corpora: the three reference formats on real files, directories, and bad input."""

import warnings
from pathlib import Path

import pytest

from rnn_theano.data import corpus
from rnn_theano.data.corpus import FORMATS, detect_format, load_sentences
from rnn_theano.errors import UserError

REDDIT = "reddit/reddit-comments-2015-08-sample.csv"
PTB_TRAIN = "ptb/ptb.train.txt"
SHAKESPEARE = "tinyshakespeare/input.txt"


def _load_quietly(path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_sentences(path, **kwargs)


@pytest.fixture(scope="module")
def ptb_train(shared_data):
    return load_sentences(shared_data / PTB_TRAIN)


@pytest.fixture(scope="module")
def shakespeare(shared_data):
    return load_sentences(shared_data / SHAKESPEARE, lowercase=False)


# --- the reference corpora ------------------------------------------------------------


def test_formats_are_detected_from_extension_and_content(shared_data):
    assert detect_format(shared_data / PTB_TRAIN) == "lines"
    assert detect_format(shared_data / "ptb/ptb.valid.txt") == "lines"
    assert detect_format(shared_data / SHAKESPEARE) == "text"
    assert detect_format(shared_data / REDDIT) == "csv"
    assert FORMATS == ("auto", "csv", "text", "lines")


def test_reddit_csv_reads_every_comment_and_warns_about_the_cut_off_last_one(shared_data):
    path = shared_data / REDDIT
    with pytest.warns(UserWarning, match=r"reddit-comments-2015-08-sample\.csv.*cut off"):
        comments = corpus._csv_comments(path.read_text(encoding="utf-8"), path)
    assert len(comments) == 212  # 1,000 physical lines: fields with newlines stay whole
    assert sum("\n" in c for c in comments) > 100
    assert not any(entity in c for c in comments for entity in ("&gt;", "&lt;", "&amp;gt;"))
    assert comments[-1].rstrip().endswith("### Gameplay")  # the cut-off record is kept


def test_reddit_csv_sentences(shared_data):
    with pytest.warns(UserWarning, match="cut off"):
        sentences = load_sentences(shared_data / REDDIT)
    assert sentences[0] == "i joined a new league this year and they have different scoring rules than i 'm used to .".split()
    # "&gt;Here's an idea" after a blank line inside a quoted field: unescaped, own sentence.
    assert ">" in sentences[14] and sentences[14][1:4] == ["here", "'s", "an"]
    text = " ".join(" ".join(s) for s in sentences)
    assert "& gt ;" not in text and "&gt;" not in text
    assert sentences[-1][-1] == "gameplay"  # from the last, cut-off comment
    assert 1000 < len(sentences) < 2000


def test_ptb_lines_keep_every_token(ptb_train):
    assert len(ptb_train) == 42_068
    assert sum(len(s) for s in ptb_train) == 887_521
    assert ptb_train[1] == "pierre <unk> N years old will join the board as a nonexecutive director nov. N".lower().split()
    assert sum(s.count("<unk>") for s in ptb_train) > 40_000


def test_ptb_lines_respect_the_lowercase_flag(shared_data):
    sentences = load_sentences(shared_data / PTB_TRAIN, lowercase=False, max_sentences=2)
    assert sentences[1][:3] == ["pierre", "<unk>", "N"]  # PTB's number token stays upper case


def test_shakespeare_is_split_into_sentences(shakespeare):
    assert shakespeare[0] == "First Citizen : Before we proceed any further , hear me speak .".split()
    assert shakespeare[1] == ["All", ":", "Speak", ",", "speak", "."]
    assert 10_000 < len(shakespeare) < 20_000
    assert 200_000 < sum(len(s) for s in shakespeare) < 300_000
    # Line breaks inside a speech are spaces: no sentence is cut at the end of a verse line.
    # ("...most charitable care\nHave the patricians of you.")
    assert "MENENIUS : I tell you , friends , most charitable care Have the patricians of you .".split() in shakespeare


# --- text format, lowercase, max_sentences, determinism ---------------------------------


PROSE = """The cat sat on the mat. It was
a sunny day!

Dr. Smith arrived at noon. Was he late?
"""


def test_text_paragraphs_and_line_breaks(tmp_path):
    path = tmp_path / "prose.txt"
    path.write_text(PROSE, encoding="utf-8")
    assert detect_format(path) == "text"
    assert load_sentences(path) == [
        "the cat sat on the mat .".split(),
        "it was a sunny day !".split(),
        "dr. smith arrived at noon .".split(),
        "was he late ?".split(),
    ]


def test_lowercase_flag(tmp_path):
    path = tmp_path / "prose.txt"
    path.write_text(PROSE, encoding="utf-8")
    assert load_sentences(path, lowercase=False)[0] == "The cat sat on the mat .".split()


def test_max_sentences_keeps_the_first(ptb_train, shared_data):
    assert load_sentences(shared_data / PTB_TRAIN, max_sentences=10) == ptb_train[:10]
    assert len(load_sentences(shared_data / PTB_TRAIN, max_sentences=10**9)) == len(ptb_train)


def test_reading_is_deterministic(shared_data):
    assert _load_quietly(shared_data / REDDIT) == _load_quietly(shared_data / REDDIT)


def test_explicit_format_overrides_detection(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("Hello , world .\nA second line .\n", encoding="utf-8")
    assert detect_format(path) == "lines"
    assert load_sentences(path, fmt="lines", lowercase=False) == [
        ["Hello", ",", "world", "."], ["A", "second", "line", "."]]
    assert load_sentences(path, fmt="text", lowercase=False)[0] == ["Hello", ",", "world", "."]


def test_csv_with_crlf_and_quoted_newlines(tmp_path):
    path = tmp_path / "comments.csv"
    path.write_bytes(b'id,body\r\n1,"First line\r\ncontinues here. Done."\r\n2,Second &amp; last.\r\n')
    assert load_sentences(path) == [
        "first line continues here .".split(), ["done", "."], ["second", "&", "last", "."]]


# --- directories -----------------------------------------------------------------------


def test_directory_reads_txt_files_sorted_and_recursively(tmp_path):
    (tmp_path / "b.txt").write_text("Bee sentence one.\n\nBee two.\n", encoding="utf-8")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "z.txt").write_text("alpha tokens here\nmore alpha tokens\n", encoding="utf-8")
    (tmp_path / "ignored.csv").write_text("body\nNot read.\n", encoding="utf-8")
    assert load_sentences(tmp_path) == [
        ["alpha", "tokens", "here"], ["more", "alpha", "tokens"],
        ["bee", "sentence", "one", "."], ["bee", "two", "."]]
    assert load_sentences(tmp_path, max_sentences=3)[-1] == ["bee", "sentence", "one", "."]


# --- bad input -------------------------------------------------------------------------


def _error(path, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        load_sentences(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_path(tmp_path):
    assert "does not exist" in _error(tmp_path / "nope.txt")


def test_directory_without_txt_files(tmp_path):
    (tmp_path / "notes.md").write_text("Words.", encoding="utf-8")
    message = _error(tmp_path)
    assert "no .txt files" in message and str(tmp_path) in message


@pytest.mark.parametrize("content", [b"", b"  \n\n\t\n"])
def test_empty_file(tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    assert "is empty" in _error(path)


def test_binary_file(tmp_path):
    path = tmp_path / "model.txt"
    path.write_bytes(b"PK\x03\x04\x00\x00binary")
    message = _error(path)
    assert "binary" in message and "offset 4" in message


def test_utf16_file_is_called_binary_with_a_conversion_hint(tmp_path):
    path = tmp_path / "wide.txt"
    path.write_text("Some words here.", encoding="utf-16")
    assert "iconv -f UTF-16" in _error(path)


def test_non_utf8_bytes(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Caf\u00e9 au lait.".encode("latin-1"))
    message = _error(path)
    assert "not UTF-8" in message and "offset 3" in message and "0xe9" in message
    assert "iconv" in message


def test_csv_without_body_column(tmp_path):
    path = tmp_path / "comments.csv"
    path.write_text("id,text,score\n1,Hello there.,5\n", encoding="utf-8")
    message = _error(path)
    assert "no 'body' column" in message and "id, text, score" in message


def test_corpus_without_sentences(tmp_path):
    path = tmp_path / "comments.csv"
    path.write_text('body\n""\n', encoding="utf-8")
    assert "contains no sentence" in _error(path)


def test_unknown_format(tmp_path):
    path = tmp_path / "prose.txt"
    path.write_text(PROSE, encoding="utf-8")
    message = _error(path, fmt="json")
    assert "'json'" in message and "auto, csv, text, lines" in message


def test_non_positive_max_sentences(tmp_path):
    path = tmp_path / "prose.txt"
    path.write_text(PROSE, encoding="utf-8")
    assert "positive" in _error(path, max_sentences=0)


def test_path_may_be_a_string(shared_data):
    assert load_sentences(str(shared_data / PTB_TRAIN), max_sentences=1) == \
        load_sentences(Path(shared_data / PTB_TRAIN), max_sentences=1)
