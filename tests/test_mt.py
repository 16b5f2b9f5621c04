"""Translation end to end: a model that learns 20 pairs by heart, the train-mt and translate
commands on a small corpus the tests write, BLEU, and bad input.

The corpus: German number words to English ones ("drei eins vier" -> "three one four"), one
to six words a line. Everything runs under JAX on the CPU, as ``--mode AUTO`` does with jax.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from rnn_theano import backends
from rnn_theano.checkpoint import load_checkpoint
from rnn_theano.cli import main, train_mt_main, translate_main
from rnn_theano.data.parallel import Subwords, pair_batch, read_parallel, source_batches
from rnn_theano.errors import UserError
from rnn_theano.tasks.decode import beam_search, greedy
from rnn_theano.tasks.mt import Translator, corpus_bleu
from rnn_theano.tasks.mt_engine import MTEngine
from rnn_theano.tasks.mt_graph import Seq2SeqConfig

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")

DE = "null eins zwei drei vier fünf sechs sieben acht neun".split()
EN = "zero one two three four five six seven eight nine".split()
TINY = ["--embed-dim", "16", "--hidden-dim", "16", "--decoder-dim", "32", "--attention-dim",
        "16", "--subwords", "word", "--src-vocab-size", "40", "--tgt-vocab-size", "40",
        "--batch-size", "32", "--learning-rate", "0.01", "--dropout", "0.0", "--mode", "JAX",
        "--patience", "0", "--beam", "2"]


def number_pairs(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    digits = [rng.integers(0, 10, rng.integers(1, 7)) for _ in range(n)]
    return [" ".join(DE[d] for d in x) for x in digits], [" ".join(EN[d] for d in x)
                                                          for x in digits]


def write_pairs(root, name: str, n: int, seed: int) -> tuple:
    src, tgt = number_pairs(n, seed)
    paths = root / f"{name}.de", root / f"{name}.en"
    for path, lines in zip(paths, (src, tgt)):
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths


def test_twenty_pairs_learned_by_heart():
    src, tgt = number_pairs(20, seed=5)
    subwords = (Subwords.train(src, 40, "word"), Subwords.train(tgt, 40, "word"))
    config = Seq2SeqConfig(cell="gru", vocab_size=len(subwords[0]), embed_dim=32,
                           hidden_dim=32, target_vocab_size=len(subwords[1]), decoder_dim=64,
                           attention_dim=32, bidirectional=True, seed=1)
    engine = MTEngine(config, mode=backends.prepare("JAX"), optimizer="adam",
                      learning_rate=0.01, clip_norm=1.0)
    batch = pair_batch([subwords[0].encode(s) for s in src],
                       [subwords[1].encode(t) for t in tgt], engine.pad_multiple)
    for _ in range(250):
        cost, n, _ = engine.train_step(batch)
    assert cost / n < 0.05
    translator = Translator(engine, subwords, max_length=80)
    for beam in (1, 3):
        out = translator.translate(src, beam=beam)
        assert [o[0].text for o in out] == tgt, f"beam {beam}"


def test_bleu_of_references_against_themselves_is_100():
    refs = number_pairs(30, seed=0)[1] + ["A man, in a red shirt, walks."]
    assert corpus_bleu(refs, refs).score == pytest.approx(100.0)
    assert corpus_bleu(refs, refs, lowercase=True).signature.count("case:lc") == 1
    assert corpus_bleu(["a b c d"], ["e f g h"]).score < 1.0
    with pytest.raises(UserError, match="2 translations but 1 references"):
        corpus_bleu(["a", "b"], ["a"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel")
    return {name: write_pairs(root, name, n, seed)
            for name, n, seed in (("train", 400, 0), ("valid", 40, 1), ("test", 40, 2))}


def train_args(corpus, out, *extra):
    files = {"train": corpus["train"], "valid": corpus["valid"], "test": corpus["test"]}
    args = [f"--{split}-{side}={files[split][i]}" for split in files
            for i, side in enumerate(("src", "tgt"))]
    return [*args, "--model-out", str(out), *TINY, *extra]


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "mt.npz"
    log = out.with_suffix(".json")
    assert train_mt_main(train_args(corpus, out, "--epochs", "8", "--log-json",
                                    str(log))) == 0
    return out, log


def test_training_learns_and_reports_bleu(trained):
    out, log = trained
    ckpt = load_checkpoint(out)
    assert ckpt.settings.task == "mt"
    history = ckpt.state["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 2
    best = max(row["valid_bleu"] for row in history)
    assert best > 50 and ckpt.state["best"] == -best
    record = json.loads(log.read_text())
    for beam in (1, 2):
        report = record[f"test_beam{beam}"]
        assert report["bleu"] > 50 and "tok:13a" in report["bleu_signature"]
        assert "case:lc" in report["bleu_lowercase_signature"]


def test_too_few_pieces_for_the_characters_is_refused_with_the_least_size(monkeypatch):
    import sentencepiece
    lines = ["abc ab", "ca"]  # a, b, c and the space: 4 characters, 3 markers
    with pytest.raises(UserError, match="pieces 6 is too small .* at least 7 pieces"):
        Subwords.train(lines, 6, "bpe", "pieces")
    assert len(Subwords.train(lines, 7, "bpe", "pieces")) >= 7

    def fail(**kwargs):
        raise RuntimeError("trainer broke\nat line 9")
    monkeypatch.setattr(sentencepiece.SentencePieceTrainer, "train", fail)
    with pytest.raises(UserError, match=r"^sentencepiece could not learn .* \(trainer broke\)$"):
        Subwords.train(lines, 40, "bpe", "pieces")  # not a size problem: not called one


def test_checkpoint_holds_its_subword_models_as_bytes(trained):
    with np.load(trained[0]) as npz:
        blob = npz["__blob__source.model"]
    assert blob.dtype == np.uint8 and Subwords(blob.tobytes()).encode("drei eins").size == 2


def test_translate_keeps_order_and_empty_lines(trained, tmp_path, capsys):
    lines = ["drei eins vier", "", "neun neun"]
    source = tmp_path / "in.de"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert translate_main([str(source), "--model", str(trained[0]), "--beam", "3"]) == 0
    assert capsys.readouterr().out.split("\n")[:3] == ["three one four", "", "nine nine"]


def test_translate_nbest_reference_and_attention(trained, tmp_path, capsys, monkeypatch):
    reference = tmp_path / "ref.en"
    # four words or more: BLEU counts up to 4-grams
    reference.write_text("three one four two\nnine nine eight seven\n", encoding="utf-8")
    picture = tmp_path / "attention.png"
    monkeypatch.setattr("sys.stdin", io.StringIO("drei eins vier zwei\nneun neun acht sieben\n"))
    assert translate_main(["--model", str(trained[0]), "--beam", "3", "--nbest", "2",
                           "--reference", str(reference), "--show-attention",
                           str(picture)]) == 0
    captured = capsys.readouterr()
    rows = [line.split("\t") for line in captured.out.splitlines()]
    assert [r[0] for r in rows] == ["0", "0", "1", "1"]
    assert rows[0][2] == "three one four two" and float(rows[0][1]) > float(rows[1][1])
    assert "BLEU 100.00 cased" in captured.err
    assert picture.read_bytes()[:4] == b"\x89PNG"


def test_beam_one_translates_as_greedy_under_jax(trained, corpus):
    translator = Translator.from_checkpoint(load_checkpoint(trained[0]))
    ids = translator.source_ids(read_parallel(*corpus["test"])[0])
    for _, src, mask in source_batches(ids, 16, translator.engine.pad_multiple):
        limits = [int(n) + 3 for n in mask.sum(axis=0)]
        greedy_ = greedy(translator.engine, src, mask, limits)
        beam = beam_search(translator.engine, src, mask, limits, beam=1, length_penalty=0.5)
        assert [g.ids for g in greedy_] == [b[0].ids for b in beam]
        np.testing.assert_allclose([g.log_prob for g in greedy_],
                                   [b[0].log_prob for b in beam], rtol=1e-5)


def test_long_lines_are_cut_with_one_warning_or_refused(trained, tmp_path, capsys):
    long = tmp_path / "long.de"
    long.write_text(" ".join(["drei"] * 100) + "\neins\n" + " ".join(["vier"] * 90) + "\n")
    assert translate_main([str(long), "--model", str(trained[0]), "--beam", "1"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "2 line(s) longer than the model's maximum of 80" in err
    assert translate_main([str(long), "--model", str(trained[0]), "--refuse-long"]) == 2
    assert "line 1 has 100 subwords" in capsys.readouterr().err


def test_resumed_training_goes_on_from_the_checkpoint(trained, corpus, tmp_path, capsys):
    copy = tmp_path / "resumed.npz"
    copy.write_bytes(trained[0].read_bytes())
    for change in (["--monitor", "loss"], ["--src-vocab-size", "30"], ["--valid-beam", "2"]):
        assert main(["train-mt", "--resume", str(copy), *change]) == 2
        assert "cannot change when resuming" in capsys.readouterr().err
    assert train_mt_main(["--resume", str(copy), "--epochs", "1"]) == 0
    before, after = load_checkpoint(trained[0]), load_checkpoint(copy)
    assert len(after.state["history"]) == len(before.state["history"]) + 1
    assert after.blobs == before.blobs  # the same subword models, not retrained


@pytest.mark.parametrize("case", ["counts", "lm-model", "nbest", "missing", "same-lang",
                                  "small-vocab", "empty-valid", "test-set", "no-sentence",
                                  "reference-count"])
def test_bad_input_is_one_line_and_exit_2(case, corpus, tmp_path, capsys, small_text):
    if case == "counts":
        short = tmp_path / "short.en"
        short.write_text("one\ntwo\n")
        argv = ["train-mt", "--train-src", str(corpus["train"][0]), "--train-tgt", str(short),
                "--valid-src", str(corpus["valid"][0]), "--valid-tgt", str(corpus["valid"][1]),
                "--model-out", str(tmp_path / "m.npz")]
        expected = f"{corpus['train'][0]} has 400 lines but {short} has 2"
    elif case == "lm-model":
        lm = tmp_path / "lm.npz"
        assert main(["train", "--data", str(small_text), "--model-out", str(lm), "--epochs",
                     "1", "--hidden-dim", "4", "--vocab-size", "20"]) == 0
        capsys.readouterr()
        argv = ["translate", str(small_text), "--model", str(lm)]
        expected = "is a language-model checkpoint"
    elif case == "nbest":
        argv, expected = ["translate", "--nbest", "3", "--beam", "2"], "--nbest 3 is more than"
    elif case == "missing":
        argv, expected = ["translate", str(small_text), "--model", str(tmp_path / "n.npz")], \
            "not found"
    elif case == "same-lang":
        argv = ["train-mt", "--corpus", "multi30k", "--src-lang", "en", "--tgt-lang", "en"]
        expected = "--tgt-lang is the source language too"
    elif case in ("small-vocab", "empty-valid"):
        empty = tmp_path / "empty.txt"
        empty.write_text("\n\n")
        valid = [empty, empty] if case == "empty-valid" else corpus["valid"]
        argv = ["train-mt", *train_args(corpus, tmp_path / "m.npz", "--subwords", "bpe",
                                        "--src-vocab-size", "10"
                                        if case == "small-vocab" else "40"),
                "--valid-src", str(valid[0]), "--valid-tgt", str(valid[1])]
        expected = ("--src-vocab-size 10 is too small for bpe" if case == "small-vocab"
                    else "the valid set has no sentence pair")
    elif case == "test-set":
        argv = ["train-mt", "--corpus", "multi30k", "--test-set", "../../etc"]
        expected = "--test-set '../../etc' is not a name"
    else:
        text = tmp_path / "lines.de"
        text.write_text("\n\n" if case == "no-sentence" else "drei\nvier\n")
        reference = tmp_path / "ref.en"
        reference.write_text("three\n")
        argv = ["translate", str(text), "--model", str(tmp_path / "none.npz")]
        if case == "no-sentence":
            argv += ["--show-attention", str(tmp_path / "a.png")]
            expected = "needs a sentence"
        else:
            argv += ["--reference", str(reference)]
            expected = "has 1 lines but the input has 2"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err and "Traceback" not in err


def test_multi30k_is_read_from_the_data_dir(shared_data):
    from rnn_theano.config import MTConfig, MTDataSettings
    from rnn_theano.tasks.mt import load_data
    config = MTConfig(data=MTDataSettings(corpus="multi30k", data_dir=str(shared_data)))
    data = load_data(config)
    assert [len(p[0]) for p in (data.train, data.valid, data.test)] == [29000, 1014, 1000]
    assert data.train[0][0].startswith("Zwei junge weiße Männer")
    assert data.train[1][0].startswith("Two young, White males")


def test_lines_are_cut_at_newlines_only(tmp_path):
    from rnn_theano.data.parallel import read_lines, split_lines
    assert split_lines("a b\n\nc\u2028d\r\n e") == ["a b", "", "c\u2028d", "e"]
    assert split_lines("one\n") == ["one"] and split_lines("") == []
    path = tmp_path / "no-final-newline.de"
    path.write_text("eins\nzwei", encoding="utf-8")
    assert read_lines(path) == ["eins", "zwei"]


def test_unknown_characters_are_read_as_the_unknown_piece(trained, capsys):
    translator = Translator.from_checkpoint(load_checkpoint(trained[0]))
    ids = translator.source_ids(["drei ∑∑ eins"])[0]
    assert 0 in ids  # the unknown piece
    (out,) = translator.translate(["drei ∑∑ eins"], beam=2)
    assert out[0].text.startswith("three")


def test_the_results_table_reads_a_training_log(trained, capsys):
    from experiments_loader import load
    mt_table = load("mt_table")
    log = trained[1]
    assert mt_table.main([str(log)]) == 0
    header, rule, line = capsys.readouterr().out.splitlines()
    record = json.loads(log.read_text())
    assert "test BLEU, greedy | test BLEU, beam 2" in header
    assert line.count("|") == header.count("|") == rule.count("|")
    assert line.startswith("| de->en |")
    assert f"{record['test_beam2']['bleu']:.2f} / {record['test_beam2']['bleu_lowercase']:.2f}" \
        in line
