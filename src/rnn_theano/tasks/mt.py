"""Machine translation: the attention encoder-decoder, as the trainer and the commands see it.

The tutorial's second application: an RNN reads the source sentence and another writes its
translation word by word, each word conditioned on the words before and on an attention over
the source (``mt_graph``). Training is the one trainer's (``train.train``) with teacher
forcing; after each epoch the validation sentences are translated (greedy, or a small beam)
and scored with sacreBLEU, and the checkpoint keeps the best model by that BLEU (or by the
validation loss). ``Translator`` translates raw text with a checkpoint alone: the subword
models travel inside it.

BLEU is sacreBLEU's corpus BLEU on detokenized output against the raw references, printed
with its signature; "lowercased" is the same with ``lowercase=True``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..checkpoint import Checkpoint
from ..config import MTConfig
from ..data.datasets import parallel_file
from ..data.parallel import PairBatches, Subwords, pair_batch, read_parallel, source_batches
from ..data.vocab import Vocabulary
from ..errors import UserError
from ..metrics import Score
from ..plotting import pyplot, save_png
from ..train import Step, TrainerOptions
from .decode import Hypothesis, beam_search, greedy
from .engine import (EngineTask, continue_from, engine_settings, loadable_settings,
                     monitored_options)
from .mt_engine import MTEngine
from .mt_graph import Seq2SeqConfig

Pairs = tuple[list[str], list[str]]


def graph_config(config: MTConfig, src_size: int, tgt_size: int) -> Seq2SeqConfig:
    """The network's graph settings: the model's own, with the real vocabulary sizes."""
    m = config.model
    return Seq2SeqConfig(cell=m.cell, vocab_size=src_size, embed_dim=m.embed_dim,
                         hidden_dim=m.hidden_dim, layers=m.layers, bidirectional=m.bidirectional,
                         dropout=m.dropout, target_vocab_size=tgt_size,
                         decoder_dim=m.decoder_dim, attention=m.attention,
                         attention_dim=m.attention_dim, init_state=m.init_state,
                         tie_embeddings=m.tie_embeddings, label_smoothing=m.label_smoothing,
                         seed=config.train.seed)


def check_model(config: MTConfig) -> None:
    """Refuse an impossible network before any data is read."""
    graph_config(config, config.model.src_vocab_size, config.model.tgt_vocab_size)


def build_engine(config: MTConfig, src_size: int, tgt_size: int,
                 params: dict[str, np.ndarray] | None = None) -> MTEngine:
    return MTEngine(graph_config(config, src_size, tgt_size), params, **engine_settings(config))


# --- data -------------------------------------------------------------------------------------

@dataclass
class ParallelData:
    """The sentence pairs of each split (raw lines), and where they came from."""

    train: Pairs
    valid: Pairs
    test: Pairs | None
    source: str


def load_data(config: MTConfig) -> ParallelData:
    """The splits the settings name: a named corpus's files, or the user's own."""
    d = config.data
    if d.corpus:
        def pairs(split: str) -> Pairs:
            return read_parallel(*(parallel_file(d.corpus, split, lang, d.data_dir)
                                   for lang in (d.src_lang, d.tgt_lang)))
        return ParallelData(pairs("train"), pairs("val"), pairs(d.test_set),
                            f"{d.corpus} {d.src_lang}->{d.tgt_lang}, test set {d.test_set}")
    test = read_parallel(d.test_src, d.test_tgt) if d.test_src else None
    return ParallelData(read_parallel(d.train_src, d.train_tgt),
                        read_parallel(d.valid_src, d.valid_tgt), test,
                        f"{d.train_src} -> {d.train_tgt}")


def train_subwords(config: MTConfig, train: Pairs) -> tuple[Subwords, Subwords]:
    """A sentencepiece model of each language, trained on its side of the training pairs."""
    m = config.model
    return (Subwords.train(train[0], m.src_vocab_size, m.subwords, "src_vocab_size"),
            Subwords.train(train[1], m.tgt_vocab_size, m.subwords, "tgt_vocab_size"))


def encode_pairs(pairs: Pairs, subwords: tuple[Subwords, Subwords],
                 max_length: int | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Both sides as ids; with ``max_length``, pairs with a longer side are left out."""
    src = [subwords[0].encode(line) for line in pairs[0]]
    tgt = [subwords[1].encode(line) for line in pairs[1]]
    if max_length is None:
        return src, tgt
    kept = [i for i in range(len(src)) if max(len(src[i]), len(tgt[i])) <= max_length]
    return [src[i] for i in kept], [tgt[i] for i in kept]


# --- the trainer's task ---------------------------------------------------------------------

@dataclass
class MTTask(EngineTask):
    """The translator and its batches, as the trainer sees them (``train.Trainable``)."""

    engine: MTEngine
    vocab: Vocabulary  # the target pieces, for reading a checkpoint without sentencepiece
    subwords: tuple[Subwords, Subwords]
    batches: dict[str, PairBatches]
    references: dict[str, Pairs]  # raw lines of the splits scored by BLEU
    config: MTConfig

    def __post_init__(self) -> None:
        self.n_train_tokens = self.batches["train"].n_tokens
        self.has_test, self.unit = "test" in self.batches, "tokens"
        self.translator = Translator(self.engine, self.subwords, self.config.data.max_length)

    def train_steps(self, epoch: int) -> Iterator[Step]:
        for batch in self.batches["train"].epoch(epoch):
            cost, n, _ = self.engine.train_step(batch)
            yield Step(cost, n)

    def evaluate(self, split: str) -> Score:
        """Teacher-forced cross-entropy per target token of ``split``; for the validation
        split also its BLEU, translated with ``--valid-beam``."""
        cost = n = 0.0
        for batch in self.batches[split]:
            c, k = self.engine.eval_step(batch)
            cost, n = cost + c, n + k
        bleu = None
        if split == "valid":
            source, refs = self.references[split]
            out = self.translator.translate(source, beam=self.config.train.valid_beam,
                                            length_penalty=self.config.train.length_penalty,
                                            warn=False)  # said once is enough
            bleu = corpus_bleu([o[0].text for o in out], refs).score
        return Score(cost, n, bleu=bleu)

    def blobs(self) -> dict[str, bytes]:
        return {"source.model": self.subwords[0].model, "target.model": self.subwords[1].model}


def make_task(config: MTConfig, data: ParallelData, resumed: Checkpoint | None) -> MTTask:
    """The engine (fresh, or the resumed checkpoint's) and the batches of every split."""
    subwords = (subwords_of(resumed) if resumed else train_subwords(config, data.train))
    engine = build_engine(config, len(subwords[0]), len(subwords[1]),
                          resumed.params if resumed else None)
    if resumed:
        continue_from(engine, resumed, config.train.optimizer)
    d, seed = config.data, config.train.seed
    named = {"train": data.train, "valid": data.valid, "test": data.test}
    batches = {}
    for split, pairs in named.items():
        if pairs is None:
            continue
        src, tgt = encode_pairs(pairs, subwords, d.max_length if split == "train" else None)
        name = (f"the {split} set (pairs of 1 to {d.max_length} subwords a side)"
                if split == "train" else f"the {split} set")
        batches[split] = PairBatches(src, tgt, d.batch_size, seed=seed,
                                     pad_multiple=engine.pad_multiple, name=name)
    references = {k: v for k, v in named.items() if k != "train" and v is not None}
    return MTTask(engine, Vocabulary(subwords[1].pieces), subwords, batches, references, config)


def subwords_of(ckpt: Checkpoint) -> tuple[Subwords, Subwords]:
    try:
        return Subwords(ckpt.blobs["source.model"]), Subwords(ckpt.blobs["target.model"])
    except (KeyError, RuntimeError):
        raise UserError("the checkpoint has no usable subword models: it is damaged or not a "
                        "translation model; retrain it with rnn-theano train-mt") from None


def trainer_options(config: MTConfig) -> TrainerOptions:
    return monitored_options(config, config.train.monitor)


def describe(engine: MTEngine, subwords: tuple[Subwords, Subwords]) -> str:
    c = engine.config
    return (f"{c.layers}-layer {'bidirectional ' if c.bidirectional else ''}{c.cell.upper()} "
            f"encoder {c.hidden_dim}, {c.cell.upper()} decoder {c.decoder_dim} with "
            f"{c.attention} attention, embeddings {c.embed_dim}; subword vocabularies "
            f"{len(subwords[0]):,} / {len(subwords[1]):,} (under {engine.mode})")


# --- translating ------------------------------------------------------------------------------

class Translation(NamedTuple):
    """One hypothesis for a line: its text, sum of log-probabilities and ranking score."""

    text: str
    log_prob: float
    score: float
    ids: list[int]


class Translator:
    """Raw lines to translations with an engine and its two subword models."""

    def __init__(self, engine: MTEngine, subwords: tuple[Subwords, Subwords],
                 max_length: int) -> None:
        self.engine, self.subwords, self.max_length = engine, subwords, max_length

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> Translator:
        config = loadable_settings(ckpt.settings)
        subwords = subwords_of(ckpt)
        engine = build_engine(config, len(subwords[0]), len(subwords[1]), ckpt.params)
        return cls(engine, subwords, config.data.max_length)

    def source_ids(self, lines: Sequence[str], refuse_long: bool = False,
                   warn: bool = True) -> list[np.ndarray]:
        """Each line's subword ids, cut to the model's maximum length (one warning for all,
        unless not ``warn``), or refused with ``refuse_long``."""
        ids = [self.subwords[0].encode(line) for line in lines]
        long = [i for i, x in enumerate(ids) if len(x) > self.max_length]
        if long and refuse_long:
            raise UserError(f"line {long[0] + 1} has {len(ids[long[0]])} subwords, more than "
                            f"the model's maximum {self.max_length}: split it, or drop "
                            "--refuse-long to cut it")
        if long and warn:
            print(f"warning: {len(long)} line(s) longer than the model's maximum of "
                  f"{self.max_length} subwords were cut (the first: line {long[0] + 1})",
                  file=sys.stderr)
        return [x[:self.max_length] for x in ids]

    def translate(self, lines: Sequence[str], beam: int = 1, nbest: int = 1,
                  length_penalty: float = 1.0, max_ratio: float = 2.0, batch_size: int = 64,
                  refuse_long: bool = False, warn: bool = True) -> list[list[Translation]]:
        """The ``nbest`` best translations of each line, in order (greedy when ``beam`` is
        1); an empty line gets one empty translation."""
        ids = self.source_ids(lines, refuse_long, warn)
        out: list[list[Translation]] = [[Translation("", 0.0, 0.0, [])] for _ in lines]
        real = [i for i, x in enumerate(ids) if len(x)]
        multiple = self.engine.pad_multiple
        for chunk, src, mask in source_batches([ids[i] for i in real], batch_size, multiple):
            limits = [int(max_ratio * n) + 10 for n in mask.sum(axis=0)]
            if beam == 1:
                found = [[h] for h in greedy(self.engine, src, mask, limits)]
            else:
                found = beam_search(self.engine, src, mask, limits, beam, length_penalty)
            for j, hyps in zip(chunk, found):
                if j >= 0:
                    out[real[j]] = [self._text(h) for h in hyps[:nbest]]
        return out

    def _text(self, h: Hypothesis) -> Translation:
        return Translation(self.subwords[1].decode(h.ids), h.log_prob, h.score, h.ids)

    def attention(self, line: str, translation: Translation) -> tuple[np.ndarray, list, list]:
        """The attention weights (target pieces + end, source pieces) of a translation of
        ``line``, teacher forced, and the pieces on both axes."""
        src = self.source_ids([line], warn=False)[0]
        if not len(src):
            raise UserError("an empty line has no attention to show: put a sentence first")
        tgt = np.asarray(translation.ids, np.int32)
        batch = pair_batch([src], [tgt], self.engine.pad_multiple)
        alpha = self.engine.attention(batch)[:len(tgt) + 1, 0, :len(src)]
        return (alpha, list(map(self.subwords[0].piece, src)),
                [*map(self.subwords[1].piece, tgt), "</s>"])


# --- BLEU -------------------------------------------------------------------------------------

class Bleu(NamedTuple):
    score: float
    signature: str
    text: str  # sacreBLEU's own line: score, n-gram precisions, brevity penalty, lengths


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str],
                lowercase: bool = False) -> Bleu:
    """sacreBLEU's corpus BLEU of detokenized ``hypotheses`` against raw ``references``
    (its defaults: 13a tokenization, exponential smoothing; cased unless ``lowercase``)."""
    from sacrebleu.metrics import BLEU
    if not hypotheses:
        raise UserError("no translations to score: the input has no lines")
    if len(hypotheses) != len(references):
        raise UserError(f"{len(hypotheses)} translations but {len(references)} references: "
                        "the reference file needs one line per input line")
    metric = BLEU(lowercase=lowercase)
    result = metric.corpus_score(list(hypotheses), [list(references)])
    return Bleu(result.score, str(metric.get_signature()), str(result))


def bleu_report(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """Cased and lowercased BLEU, with their signatures, as a JSON-able dict."""
    cased, lower = (corpus_bleu(hypotheses, references, lowercase=flag)
                    for flag in (False, True))
    return {"bleu": cased.score, "bleu_signature": cased.signature, "bleu_text": cased.text,
            "bleu_lowercase": lower.score, "bleu_lowercase_signature": lower.signature}



def plot_attention(alpha: np.ndarray, source: list[str], target: list[str], path: str) -> None:
    """Save ``alpha`` (target, source) as a heat map, the pieces on both axes."""
    plt = pyplot("--show-attention")
    fig, ax = plt.subplots(figsize=(1 + 0.45 * len(source), 1 + 0.4 * len(target)))
    ax.imshow(alpha, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(source)), source, rotation=90)
    ax.set_yticks(range(len(target)), target)
    ax.set_xlabel("source")
    ax.set_ylabel("translation")
    fig.tight_layout()
    save_png(fig, path)
