#!/usr/bin/env python3
"""A PyTorch replica of the engine's Penn Treebank setup, for choosing settings fast on a GPU.

Same data convention (one ``<eos>`` per line, 20 columns, windows of 20, state carried and
detached), same initialisation (embedding Uniform(+-0.1), cells PyTorch's default
Uniform(+-1/sqrt(H)) with one bias per gate, output bias zero, LSTM forget bias 1), the same
loss (mean cross-entropy per token), global-norm clipping, and the same schedule (lr halved
after every epoch from --decay-after on). It needs only torch; it prints one JSON line per
epoch and a RESULT line with the best epoch by validation perplexity.

The settings of ``make ptb-gru`` and ``make ptb-rnn`` were chosen with it (README, "Penn
Treebank"); nine runs side by side take about four minutes on one H200:

    python3 scripts/torch_ptb_sweep.py --data ../shared/data/ptb --cell gru --layers 2 \
        --hidden 200 --lr 5
"""

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--data", default="../shared/data/ptb", help="folder with ptb.{train,valid,test}.txt")
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
args = p.parse_args()
torch.manual_seed(0)
dev = "cuda" if torch.cuda.is_available() else "cpu"
B, T, H, L = 20, 20, args.hidden, args.layers


def read(split):
    return (Path(args.data) / f"ptb.{split}.txt").read_text().replace("\n", " <eos> ").split()


vocab = {w: i for i, w in enumerate(sorted(set(read("train"))))}
C = len(vocab)


def columns(split):
    ids = torch.tensor([vocab[w] for w in read(split)])
    n = len(ids) // B
    return ids[:n * B].view(B, n).t().contiguous().to(dev)  # (N, B)


train, valid, test = columns("train"), columns("valid"), columns("test")


class LM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(C, H)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        self.rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[args.cell](H, H, L)
        with torch.no_grad():
            for i in range(L):
                getattr(self.rnn, f"bias_hh_l{i}").zero_().requires_grad_(False)
                b = getattr(self.rnn, f"bias_ih_l{i}").zero_()
                if args.cell == "lstm":
                    b[H:2 * H] = 1.0
        self.out = nn.Linear(H, C)
        nn.init.zeros_(self.out.bias)
        if args.tied:
            self.out.weight = self.embed.weight
        self.drop = nn.Dropout(args.dropout)

    def forward(self, x, h):
        o, h = self.rnn(self.drop(self.embed(x)), h)
        return self.out(self.drop(o)), h


model = LM().to(dev)
params = [q for q in model.parameters() if q.requires_grad]
adam = torch.optim.Adam(params, lr=args.lr) if args.optimizer == "adam" else None


def zero_state():
    z = torch.zeros(L, B, H, device=dev)
    return (z, z.clone()) if args.cell == "lstm" else z


def detach(h):
    return tuple(s.detach() for s in h) if isinstance(h, tuple) else h.detach()


def run(data, lr=None):
    model.train(lr is not None)
    h, total, n = zero_state(), 0.0, 0
    with torch.set_grad_enabled(lr is not None):
        for i in range(0, data.shape[0] - 1, T):
            x, y = data[i:i + T], data[i + 1:i + 1 + T]
            x = x[:len(y)]
            logits, h = model(x, detach(h))
            loss = F.cross_entropy(logits.reshape(-1, C), y.reshape(-1))
            if lr is not None:
                model.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, args.clip)
                if adam:
                    for group in adam.param_groups:
                        group["lr"] = lr
                    adam.step()
                else:
                    with torch.no_grad():
                        for q in params:
                            q -= lr * q.grad
            total, n = total + loss.item() * y.numel(), n + y.numel()
    return math.exp(total / n)


lr, rows, start = args.lr, [], time.time()
for epoch in range(1, args.epochs + 1):
    row = dict(name=args.name, epoch=epoch, lr=lr, train=run(train, lr), valid=run(valid),
               test=run(test), seconds=round(time.time() - start))
    rows.append(row)
    print(json.dumps(row), flush=True)
    if epoch >= args.decay_after:
        lr *= 0.5
best = min(rows, key=lambda r: r["valid"])
print("RESULT", json.dumps(dict(name=args.name, params=sum(q.numel() for q in params),
                                best=best)), flush=True)
