#!/usr/bin/env python3
"""A PyTorch replica of the engine's Penn Treebank setup, for trying settings fast on a GPU.

Same data convention (one ``<eos>`` per line, 20 columns, windows of 20, state carried and
detached), same initialisation (embedding Uniform(+-0.1), cells PyTorch's default
Uniform(+-1/sqrt(H)) with one bias per gate, output bias zero, LSTM forget bias 1), the same
loss (mean cross-entropy per token), global-norm clipping, and the same schedule (lr halved
after every epoch from --decay-after on). It needs only torch; it prints one JSON line per
epoch and a RESULT line with the best epoch by validation perplexity. Several runs side by
side on one GPU compare settings (learning rates, sizes) before the engine trains with the
chosen ones:

    python3 experiments/torch_ptb_sweep.py --data-dir "$RNN_THEANO_DATA" --cell gru \
        --layers 2 --hidden 200 --lr 5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # --help works without torch; running needs it
    torch = nn = F = None

B, T = 20, 20  # columns of the stream, window length


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("RNN_THEANO_DATA") or "data",
                   help="folder holding ptb/ptb.{train,valid,test}.txt "
                   "(default: $RNN_THEANO_DATA or ./data)")
    p.add_argument("--name", default="run")
    p.add_argument("--cell", choices=("rnn", "gru", "lstm"), default="lstm")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=200)
    p.add_argument("--tied", action="store_true")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--epochs", type=int, default=13)
    p.add_argument("--decay-after", type=int, default=4)
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    p.add_argument("--lr", type=float, default=20.0)
    p.add_argument("--clip", type=float, default=0.25)
    return p.parse_args(argv)


def load_ptb(folder: Path, device: str) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
    """The training vocabulary and each split as (N, B) word ids, the stream cut into B columns."""
    words = {split: (folder / f"ptb.{split}.txt").read_text().replace("\n", " <eos> ").split()
             for split in ("train", "valid", "test")}
    vocab = {w: i for i, w in enumerate(sorted(set(words["train"])))}

    def columns(split: str) -> torch.Tensor:
        ids = torch.tensor([vocab[w] for w in words[split]])
        n = len(ids) // B
        return ids[:n * B].view(B, n).t().contiguous().to(device)

    return vocab, {split: columns(split) for split in words}


def build_model(args: argparse.Namespace, C: int) -> nn.ModuleDict:
    """Embedding, stack and output layer initialised as the engine initialises them."""
    H, L = args.hidden, args.layers
    # Created and initialised in this order, so that a seed gives the same model every time.
    embed = nn.Embedding(C, H)
    nn.init.uniform_(embed.weight, -0.1, 0.1)
    rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[args.cell](H, H, L)
    model = nn.ModuleDict({"embed": embed, "rnn": rnn, "out": nn.Linear(H, C),
                           "drop": nn.Dropout(args.dropout)})
    with torch.no_grad():
        for i in range(L):
            getattr(rnn, f"bias_hh_l{i}").zero_().requires_grad_(False)
            b = getattr(rnn, f"bias_ih_l{i}").zero_()
            if args.cell == "lstm":
                b[H:2 * H] = 1.0
    nn.init.zeros_(model["out"].bias)
    if args.tied:
        model["out"].weight = model["embed"].weight
    return model


class Trainer:
    """One pass over a split: training with SGD (or Adam) and clipping, or scoring."""

    def __init__(self, args: argparse.Namespace, model: nn.ModuleDict, device: str) -> None:
        self.args, self.model, self.device = args, model, device
        self.params = [q for q in model.parameters() if q.requires_grad]
        self.adam = (torch.optim.Adam(self.params, lr=args.lr) if args.optimizer == "adam"
                     else None)

    def zero_state(self):
        z = torch.zeros(self.args.layers, B, self.args.hidden, device=self.device)
        return (z, z.clone()) if self.args.cell == "lstm" else z

    def forward(self, x, h):
        m = self.model
        o, h = m["rnn"](m["drop"](m["embed"](x)), h)
        return m["out"](m["drop"](o)), h

    def update(self, loss, lr: float) -> None:
        self.model.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, self.args.clip)
        if self.adam:
            for group in self.adam.param_groups:
                group["lr"] = lr
            self.adam.step()
        else:
            with torch.no_grad():
                for q in self.params:
                    q -= lr * q.grad

    def perplexity(self, data: torch.Tensor, lr: float | None = None) -> float:
        """Over ``data``; training as it goes when ``lr`` is given."""
        self.model.train(lr is not None)
        h, total, n = self.zero_state(), 0.0, 0
        with torch.set_grad_enabled(lr is not None):
            for i in range(0, data.shape[0] - 1, T):
                x, y = data[i:i + T], data[i + 1:i + 1 + T]
                logits, h = self.forward(x[:len(y)], detach(h))
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
                if lr is not None:
                    self.update(loss, lr)
                total, n = total + loss.item() * y.numel(), n + y.numel()
        return math.exp(total / n)


def detach(h):
    return tuple(s.detach() for s in h) if isinstance(h, tuple) else h.detach()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if torch is None:
        print("error: this script needs torch", file=sys.stderr)
        return 2
    folder = Path(args.data_dir) / "ptb"
    if not (folder / "ptb.train.txt").is_file():
        print(f"error: no {folder / 'ptb.train.txt'}: give --data-dir (or set RNN_THEANO_DATA) "
              "to the folder holding ptb/", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    vocab, splits = load_ptb(folder, device)
    trainer = Trainer(args, build_model(args, len(vocab)).to(device), device)
    lr, rows, start = args.lr, [], time.time()
    for epoch in range(1, args.epochs + 1):
        row = dict(name=args.name, epoch=epoch, lr=lr,
                   train=trainer.perplexity(splits["train"], lr),
                   valid=trainer.perplexity(splits["valid"]),
                   test=trainer.perplexity(splits["test"]), seconds=round(time.time() - start))
        rows.append(row)
        print(json.dumps(row), flush=True)
        if epoch >= args.decay_after:
            lr *= 0.5
    best = min(rows, key=lambda r: r["valid"])
    print("RESULT", json.dumps(dict(name=args.name, params=sum(q.numel() for q in trainer.params),
                                    best=best)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
