"""A plain PyTorch training loop of bench.py's configurations c and d, written apart from the
benchmark's peer (``torch_peer.py``): the yardstick that the peer's speed is checked against.

    .venv-torch/bin/python experiments/torch_plain_lm.py --cell lstm     # config c
    .venv-torch/bin/python experiments/torch_plain_lm.py --cell gru      # config d

What a PyTorch user writes for Penn Treebank's "small" model: the training text as one stream
of word ids (``<eos>`` at each line's end, its 10,000 words), cut into 20 columns; an
``nn.Embedding``, a 2-layer ``nn.LSTM`` or ``nn.GRU`` of 200 units and an ``nn.Linear`` over
the vocabulary; windows of 20 steps, the state carried from one to the next (detached); mean
cross-entropy, SGD at lr 20, the gradient clipped to norm 0.25. It prints the median words/s
of ``--passes`` passes of ``--steps`` steps, after a warm-up pass, with ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

BATCH, UNROLL, HIDDEN = 20, 20, 200


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    p.add_argument("--data-dir", default=os.environ.get("RNN_THEANO_DATA", "data"),
                   help="the folder holding ptb/ptb.train.txt (default: $RNN_THEANO_DATA)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--steps", type=int, default=30, help="steps per pass")
    args = p.parse_args()
    import torch  # only now, so that --help works where torch is not installed
    from torch import nn

    text = (Path(args.data_dir) / "ptb" / "ptb.train.txt").read_text(encoding="utf-8")
    words = text.replace("\n", " <eos> ").split()
    index = {w: i for i, w in enumerate(sorted(set(words)))}
    ids = torch.tensor([index[w] for w in words])
    columns = len(ids) // BATCH
    data = ids[:columns * BATCH].view(BATCH, columns).t()  # (time, batch)

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    embed = nn.Embedding(len(index), HIDDEN)
    rnn = (nn.LSTM if args.cell == "lstm" else nn.GRU)(HIDDEN, HIDDEN, num_layers=2)
    out = nn.Linear(HIDDEN, len(index))
    params = [*embed.parameters(), *rnn.parameters(), *out.parameters()]
    optimizer = torch.optim.SGD(params, lr=20.0)
    state = None

    def step(t: int) -> None:
        nonlocal state
        x, y = data[t:t + UNROLL], data[t + 1:t + 1 + UNROLL]
        if state is not None:
            state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        h, state = rnn(embed(x), state)
        loss = nn.functional.cross_entropy(out(h).reshape(-1, len(index)), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 0.25)
        optimizer.step()

    def words_per_second(first_step: int) -> float:
        start = time.perf_counter()
        for k in range(args.steps):
            step((first_step + k) * UNROLL)
        return args.steps * BATCH * UNROLL / (time.perf_counter() - start)

    words_per_second(0)  # warm-up
    rates = [words_per_second((i + 1) * args.steps) for i in range(args.passes)]
    print(f"{args.cell} 2x{HIDDEN}, batch {BATCH}, unroll {UNROLL}, {args.threads} threads, "
          f"torch {torch.__version__}: {statistics.median(rates):,.0f} words/s (passes: "
          + ", ".join(f"{r:,.0f}" for r in rates) + ")")


if __name__ == "__main__":
    main()
