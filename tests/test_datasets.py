"""Named corpora: checksums of the shared files, and downloads through a loopback server."""

import dataclasses
import functools
import hashlib
import socket
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rnn_theano.data import datasets
from rnn_theano.data.datasets import (CORPORA, corpus_files, corpus_format, default_data_dir,
                                      parallel_file)
from rnn_theano.errors import UserError

REDDIT_SAMPLE = "reddit/reddit-comments-2015-08-sample.csv"
REDDIT_FULL = "reddit/reddit-comments-2015-08.csv"
SHAKESPEARE = "tinyshakespeare/input.txt"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep the test output clean
        pass


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch):
    # urllib honours $http_proxy; the loopback server must be reached directly.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def served(tmp_path):
    """(directory served, its base URL): a loopback HTTP server for the test's duration."""
    root = tmp_path / "served"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _put(root: Path, relative: str, data: bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _files_under(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def _error(**kwargs) -> str:
    with pytest.raises(UserError) as info:
        corpus_files(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- registry --------------------------------------------------------------------------


def test_registry():
    assert set(CORPORA) == {"ptb", "shakespeare", "reddit"}
    assert [corpus_format(n) for n in ("ptb", "shakespeare", "reddit")] == ["lines", "text", "csv"]
    assert [f.split for f in CORPORA["ptb"].files] == ["train", "valid", "test"]
    assert all(f.url.startswith("https://") for spec in CORPORA.values() for f in spec.files)


def test_unknown_corpus_lists_the_known_ones():
    message = _error(name="wikitext")
    assert "'wikitext'" in message and "ptb, shakespeare, reddit" in message
    with pytest.raises(UserError):
        corpus_format("wikitext")


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv(datasets.DATA_ENV_VAR, raising=False)
    assert default_data_dir() == Path("data")
    monkeypatch.setenv(datasets.DATA_ENV_VAR, str(tmp_path))
    assert default_data_dir() == tmp_path


# --- present files ---------------------------------------------------------------------


def test_shared_files_pass_their_checksums(shared_data):
    assert corpus_files("ptb", data_dir=shared_data, download=False) == {
        split: shared_data / f"ptb/ptb.{split}.txt" for split in ("train", "valid", "test")}
    assert corpus_files("shakespeare", data_dir=shared_data, download=False) == {
        "train": shared_data / SHAKESPEARE}
    # Only the 212-comment sample is there: it stands in for the full file.
    assert corpus_files("reddit", data_dir=shared_data, download=False) == {
        "train": shared_data / REDDIT_SAMPLE}


def test_corrupt_present_file_is_refused_and_left_alone(tmp_path):
    path = _put(tmp_path, SHAKESPEARE, b"First Citizen:\nNot the real text.\n")
    message = _error(name="shakespeare", data_dir=tmp_path, download=False)
    assert str(path) in message and "corrupt or a different version" in message
    assert "delete it" in message
    assert path.read_bytes() == b"First Citizen:\nNot the real text.\n"


def test_missing_file_without_download_names_url_and_place(tmp_path):
    message = _error(name="shakespeare", data_dir=tmp_path, download=False)
    assert str(tmp_path / SHAKESPEARE) in message and "karpathy/char-rnn" in message


# --- downloads -------------------------------------------------------------------------


def test_download_through_a_local_server(tmp_path, served, shared_data):
    root, base_url = served
    sample = (shared_data / REDDIT_SAMPLE).read_bytes()
    _put(root, REDDIT_FULL, sample)
    data_dir = tmp_path / "data"
    files = corpus_files("reddit", data_dir=data_dir, base_url=base_url)
    assert files == {"train": data_dir / REDDIT_FULL}
    assert files["train"].read_bytes() == sample
    assert _files_under(data_dir) == [REDDIT_FULL]  # no temporary file left behind
    # Present now: no second download.
    (root / REDDIT_FULL).unlink()
    assert corpus_files("reddit", data_dir=data_dir, base_url=base_url) == files


def test_download_with_a_checksum(tmp_path, served, shared_data):
    root, base_url = served
    _put(root, SHAKESPEARE, (shared_data / SHAKESPEARE).read_bytes())
    files = corpus_files("shakespeare", data_dir=tmp_path / "data", base_url=base_url + "/")
    assert files["train"].read_bytes() == (shared_data / SHAKESPEARE).read_bytes()


def test_corrupt_download_leaves_no_file(tmp_path, served):
    root, base_url = served
    _put(root, SHAKESPEARE, b"these are the wrong bytes\n")
    data_dir = tmp_path / "data"
    message = _error(name="shakespeare", data_dir=data_dir, base_url=base_url)
    assert f"{base_url}/{SHAKESPEARE}" in message and "corrupt or a different version" in message
    assert str(data_dir / SHAKESPEARE) in message
    assert _files_under(data_dir) == []


def test_failed_download_keeps_the_files_already_there(tmp_path, served, shared_data):
    root, base_url = served
    data_dir = tmp_path / "data"
    good = {f"ptb/ptb.{split}.txt": (shared_data / f"ptb/ptb.{split}.txt").read_bytes()
            for split in ("train", "valid")}
    for relative, data in good.items():
        _put(data_dir, relative, data)
    _put(root, "ptb/ptb.test.txt", b"not ptb\n")
    assert "ptb.test.txt" in _error(name="ptb", data_dir=data_dir, base_url=base_url)
    assert _files_under(data_dir) == sorted(good)
    assert all((data_dir / relative).read_bytes() == data for relative, data in good.items())


def test_missing_remote_file(tmp_path, served):
    _, base_url = served
    message = _error(name="shakespeare", data_dir=tmp_path / "data", base_url=base_url)
    assert "HTTP 404" in message and str(tmp_path / "data" / SHAKESPEARE) in message
    assert _files_under(tmp_path / "data") == []


def test_unreachable_server_names_where_to_put_the_file(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    message = _error(name="reddit", data_dir=tmp_path / "data", base_url=base_url)
    assert f"{base_url}/{REDDIT_FULL}" in message
    assert f"put it at {tmp_path / 'data' / REDDIT_FULL}" in message
    assert _files_under(tmp_path / "data") == []


def test_a_parallel_corpus_downloads_each_side_it_needs(tmp_path, served, shared_data):
    root, base_url = served
    original = shared_data / "multi30k" / "val.de.gz"
    _put(root, "multi30k/val.de.gz", original.read_bytes())
    _put(root, "multi30k/test_2017_flickr.de.gz", b"not listed: fetched unchecked")
    data_dir = tmp_path / "data"
    path = parallel_file("multi30k", "val", "de", data_dir=data_dir, base_url=base_url)
    assert path == data_dir / "multi30k" / "val.de.gz"
    assert path.read_bytes() == original.read_bytes()
    newer = parallel_file("multi30k", "test_2017_flickr", "de", data_dir=data_dir,
                          base_url=base_url)
    assert newer.read_bytes() == b"not listed: fetched unchecked"
    _put(root, "multi30k/val.en.gz", b"corrupt")
    with pytest.raises(UserError, match="corrupt or a different version"):
        parallel_file("multi30k", "val", "en", data_dir=data_dir, base_url=base_url)
    assert _files_under(data_dir) == ["multi30k/test_2017_flickr.de.gz", "multi30k/val.de.gz"]


def test_a_file_inside_a_zip_archive_is_unpacked_checked(tmp_path, served, monkeypatch):
    root, base_url = served
    trees = b"(3 (2 a) (3 fine))\n"
    member = datasets.CorpusFile("train", "sentences/trees/train.txt",
                                 "https://example.org/trainDevTestTrees_PTB.zip",
                                 hashlib.sha256(trees).hexdigest(), member="trees/train.txt")
    spec = dataclasses.replace(datasets.LABELLED["sst5"], trees=member)
    monkeypatch.setitem(datasets.LABELLED, "sst5", spec)
    data_dir = tmp_path / "data"
    absent = _tree_error("sst5", data_dir=data_dir, base_url=base_url)
    assert f"unpack its trees/train.txt to {data_dir / 'sentences/trees/train.txt'}" in absent
    with zipfile.ZipFile(root / "trainDevTestTrees_PTB.zip", "w") as zipped:
        zipped.writestr("trees/dev.txt", b"(2 other)\n")
    message = _tree_error("sst5", data_dir=data_dir, base_url=base_url)
    assert "has no trees/train.txt" in message and _files_under(data_dir) == []
    with zipfile.ZipFile(root / "trainDevTestTrees_PTB.zip", "w") as zipped:
        zipped.writestr("trees/train.txt", trees + b"changed")
    assert "corrupt or a different version" in _tree_error("sst5", data_dir=data_dir,
                                                           base_url=base_url)
    with zipfile.ZipFile(root / "trainDevTestTrees_PTB.zip", "w") as zipped:
        zipped.writestr("trees/train.txt", trees)
    path = datasets.tree_file("sst5", data_dir=data_dir, base_url=base_url)
    assert path == data_dir / "sentences/trees/train.txt" and path.read_bytes() == trees
    assert _files_under(data_dir) == ["sentences/trees/train.txt"]
    missing = _tree_error("sst2", data_dir=tmp_path / "empty", download=False)
    assert "put its trees/train.txt there" in missing and datasets._SST_TREES_URL in missing


def _tree_error(*args, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        datasets.tree_file(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)
