"""The PyTorch peer of ``experiments/bench.py``: the same models, initialisation and optimizer.

Run by ``bench.py`` as a subprocess (in ``.venv-torch`` when the main environment has no
torch): ``torch_peer.py SPEC.json`` reads the spec the bench wrote (data and initial
parameters in an ``.npz``, the configuration, the thread counts to try) and prints one JSON
object on its last line of stdout. It needs only numpy and torch, never ``rnn_theano``, so it
runs on any Python that has a CPU build of torch.

Models (float32, the parameters loaded from the bench's ``.npz``, so both sides start from
the same numbers):

* ``tutorial`` (config a): the WildML RNN, no biases, one sentence per SGD step on the summed
  cross-entropy, the tutorial's truncated BPTT (every output's error flows back ``k`` steps
  past its own), computed as ``RNNTheano`` does: the recurrence without gradient, then the
  last k+1 steps of every position replayed together from a detached state.
  The input columns ``U[:, x_t]`` are a sparse embedding lookup, so SGD touches only the
  columns a sentence used, as ``RNNTheano`` does.
* ``lm`` (configs b, c, d): ``nn.Embedding`` -> ``nn.RNN``/``nn.GRU``/``nn.LSTM`` -> ``nn.Linear``,
  the engine's architecture: PyTorch's recurrent bias ``bias_hh`` is set to zero and frozen
  (the engine has one bias per gate; gate orders are the same), the loss is the mean masked
  cross-entropy per token, SGD with optional clipping by global norm, the state carried (and
  detached) from window to window in stream mode.
* ``classify`` (config e): ``nn.Embedding`` -> bidirectional ``nn.LSTM`` over the packed batch
  (``pack_padded_sequence``: each row's backward direction starts at its last real word, as
  the engine's does) -> max over the real steps -> ``nn.Linear``, with dropout where the engine
  has it (the embeddings and the pooled sentence vector), ``bias_hh`` zeroed and frozen, the
  mean cross-entropy over the sentences, ``torch.optim.Adam`` (the engine adds Adam's eps after
  folding the bias corrections into the step size, a difference of the order of eps), clipping
  by global norm. The first loss is computed at the initial parameters without dropout.
* ``mt`` (config f): the encoder as config e's (a bidirectional ``nn.GRU`` over the packed
  source embeddings), the decoder initial state ``tanh(mean of the encoder states over the real
  source positions @ init_W + init_b)``, then a Python loop over the target steps, as a PyTorch
  user writes an attention decoder: per step additive attention (the keys ``h @ att_Wh``
  computed once before the loop), a softmax over the source positions with the padding at
  ``-inf`` (exactly zero weight, as the engine's), and an ``nn.GRUCell`` fed
  ``cat(embedding, context)`` (its input weights are the engine's ``dec_Wx`` over ``dec_Wc``);
  after the loop the deep output ``tanh(s Ws + c Wc + e We + b)`` and the output layer over all
  steps at once; the label-smoothed cross-entropy (``F.cross_entropy(label_smoothing=0.1)``:
  ``lse - (1 - eps) logit_y - eps mean(logits)``, the engine's formula) averaged over the real
  target tokens, masked rather than ``ignore_index`` (padding's id 0 is also the unknown
  piece's), dropout where the engine has it (both embeddings and the deep output), every
  ``bias_hh`` zeroed and frozen, Adam and clipping as in config e. The first loss is computed
  at the initial parameters without dropout and without label smoothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys

import numpy as np

# bench.py, beside this file (the script's folder is on sys.path), needs only numpy at import.
from bench import initial_params, keep_turn_to_exit, pair_arrays, timed_reps, turn

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # --help works without torch; running needs it
    torch = nn = F = None


def tutorial_model(data, spec):
    k = spec["bptt_truncate"]
    lr = spec["learning_rate"]
    E = nn.Parameter(torch.from_numpy(np.ascontiguousarray(data["U"].T, dtype=np.float32)))
    V = nn.Parameter(torch.from_numpy(data["V"].astype(np.float32)))
    W = nn.Parameter(torch.from_numpy(data["W"].astype(np.float32)))
    opt = torch.optim.SGD([E, V, W], lr=lr)
    H = W.shape[0]
    ids, offsets = data["ids"].astype(np.int64), data["offsets"]
    sentences = [torch.from_numpy(ids[offsets[i]:offsets[i + 1]])
                 for i in range(len(offsets) - 1)]

    def step(sentence):
        x, y = sentence[:-1], sentence[1:]
        T = len(x)
        xU = F.embedding(x, E, sparse=True)  # (T, H): the columns U[:, x_t]
        with torch.no_grad():
            s, states = torch.zeros(H), []
            for t in range(T):
                s = torch.tanh(xU[t] + W @ s)
                states.append(s)
            S = torch.stack(states)
        n = min(k + 1, T) if k >= 0 else T
        zeros = torch.zeros(n, H)
        h = torch.cat([zeros, S])[:T]                                  # s_{t-n}, detached
        pos = torch.arange(n)[:, None] + torch.arange(T)[None, :] - n + 1  # (n, T)
        xw = torch.cat([zeros, xU])[pos + n]                           # (n, T, H)
        valid = (pos >= 0).float()[:, :, None]
        for j in range(n):
            h = valid[j] * torch.tanh(xw[j] + h @ W.T) + (1 - valid[j]) * h
        loss = F.cross_entropy(h @ V.T, y, reduction="sum")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss) / T, T

    return [(s,) for s in sentences], step, None


CELLS = {"rnn": lambda E, H, L, bi: nn.RNN(E, H, L, nonlinearity="tanh", bidirectional=bi),
         "gru": lambda E, H, L, bi: nn.GRU(E, H, L, bidirectional=bi),
         "lstm": lambda E, H, L, bi: nn.LSTM(E, H, L, bidirectional=bi)}


def tensor(a):
    """A float32 copy of the numpy array ``a`` (a copy: a parameter built on it must not
    share the loaded arrays' memory)."""
    return torch.from_numpy(np.array(a, dtype=np.float32, order="C"))


def embedding(E):
    """``nn.Embedding`` holding the engine's (C, E) table ``E``."""
    return nn.Embedding.from_pretrained(tensor(E), freeze=False)


def linear(W, b=None):
    """``nn.Linear`` holding the engine's (in, out) matrix ``W`` (rows read by ``x @ W``,
    PyTorch stores the transpose) and bias ``b`` (None: no bias)."""
    layer = nn.Linear(*W.shape, bias=b is not None)
    with torch.no_grad():
        layer.weight.copy_(tensor(W.T))
        if b is not None:
            layer.bias.copy_(tensor(b))
    return layer


def load_cell(p, Wx, Wh, b):
    """Copy the engine's cell weights into PyTorch's ``p`` (weight_ih, weight_hh, bias_ih,
    bias_hh, by those names); the gate orders are the same."""
    with torch.no_grad():
        p["weight_ih"].copy_(tensor(Wx.T))
        p["weight_hh"].copy_(tensor(Wh.T))
        p["bias_ih"].copy_(tensor(b))
        p["bias_hh"].zero_()
    p["bias_hh"].requires_grad_(False)  # the engine has one bias per gate


def modules(data, net):
    """Embedding, recurrent stack and output layer, holding the engine's initial parameters.

    ``net``: the engine's settings (cell, hidden_dim, layers, bidirectional); the sizes of the
    embedding and the output layer are those of the parameters. The engine's backward stack
    ``back{i}_*`` is PyTorch's ``*_l{i}_reverse``.
    """
    Ed, H, L = data["p_embed"].shape[1], net["hidden_dim"], net["layers"]
    directions = (("l", ""), ("back", "_reverse"))[:2 if net.get("bidirectional") else 1]
    model = nn.ModuleDict({"embed": embedding(data["p_embed"]),
                           "rnn": CELLS[net["cell"]](Ed, H, L, len(directions) == 2),
                           "out": linear(data["p_out_W"], data["p_out_b"])})
    for prefix, suffix in directions:
        for i in range(L):
            load_cell({name: getattr(model["rnn"], f"{name}_l{i}{suffix}")
                       for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")},
                      *(data[f"p_{prefix}{i}_{k}"] for k in ("Wx", "Wh", "b")))
    return model


def place(model, batches, spec):
    """Move the model and the batches' tensors to ``spec['device']``; the batches there."""
    device = torch.device(spec.get("device", "cpu"))
    if device.type == "cuda":
        # Full float32 like the engine (gpu_check.sh asks JAX for the same): cuDNN's RNNs would
        # otherwise use TF32 tensor cores by default.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    model.to(device)
    return [tuple(v.to(device) if isinstance(v, torch.Tensor) else v for v in batch)
            for batch in batches]


def adam(model, spec):
    """The trainable parameters (all but the frozen ``bias_hh``) and ``torch.optim.Adam``
    over them (configs e and f)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return params, torch.optim.Adam(params, lr=spec["learning_rate"], betas=(0.9, 0.999),
                                    eps=1e-8)


def packed_rnn(rnn, e, lengths):
    """``rnn``'s outputs over the embedded batch ``e`` (T, B, E) whose rows have ``lengths``
    real steps, packed (``pack_padded_sequence``: each row's backward direction starts at
    its last real step, as the engine's does); zero at the padding."""
    packed = nn.utils.rnn.pack_padded_sequence(e, lengths, enforce_sorted=False)
    out, _ = nn.utils.rnn.pad_packed_sequence(rnn(packed)[0], total_length=e.shape[0])
    return out


def update(loss, opt, params, clip):
    """One optimizer step on ``loss``, its gradient clipped to global norm ``clip`` if set."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()


def lm_model(data, spec):
    lm = spec["lm"]
    model = modules(data, lm)

    def initial_state(B):
        z = torch.zeros(lm["layers"], B, lm["hidden_dim"], device=model["embed"].weight.device)
        return (z, z.clone()) if lm["cell"] == "lstm" else z

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=spec["learning_rate"])
    clip = spec.get("clip_norm")
    stream = spec["stream"]
    X, Y, M = data["x"], data["y"], data["mask"]  # (N, T, B) padded to a common T in sentence mode
    lengths = data["lengths"]
    batches = []
    for i in range(len(X)):
        T = int(lengths[i])
        batches.append((torch.from_numpy(X[i, :T].astype(np.int64)),
                        torch.from_numpy(Y[i, :T].astype(np.int64)),
                        torch.from_numpy(M[i, :T].astype(np.float32))))
    batches = place(model, batches, spec)
    B = X.shape[2]
    carry = {"state": initial_state(B)}

    def detach(s):
        return tuple(v.detach() for v in s) if isinstance(s, tuple) else s.detach()

    def step(x, y, mask):
        state = carry["state"] if stream else initial_state(x.shape[1])
        out, final = model["rnn"](model["embed"](x), state)
        logits = model["out"](out)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
        n = mask.sum()
        loss = (ce * mask.reshape(-1)).sum() / torch.clamp(n, min=1.0)
        update(loss, opt, params, clip)
        carry["state"] = detach(final)
        return float(loss), float(n)

    return batches, step, None


def classify_model(data, spec):
    """Config e: (batches, step, check); ``check`` is the first loss without dropout."""
    model, rate = modules(data, spec["net"]), spec["net"]["dropout"]
    params, opt = adam(model, spec)
    batches = []
    for x, mask, labels, T in zip(data["x"], data["mask"], data["labels"], data["lengths"]):
        batches.append((torch.from_numpy(x[:T].astype(np.int64)), torch.from_numpy(mask[:T]),
                        torch.from_numpy(labels.astype(np.int64)),
                        mask[:T].sum(axis=0).astype(np.int64).tolist()))
    batches = place(model, batches, spec)

    def loss_of(x, mask, labels, lengths, training):
        out = packed_rnn(model["rnn"], F.dropout(model["embed"](x), rate, training), lengths)
        pooled = out.masked_fill(mask[:, :, None] == 0, -1e9).amax(dim=0)  # real steps only
        return F.cross_entropy(model["out"](F.dropout(pooled, rate, training)), labels)

    def step(x, mask, labels, lengths):
        loss = loss_of(x, mask, labels, lengths, True)
        update(loss, opt, params, spec["clip_norm"])
        return float(loss), float(sum(lengths))

    def check(*batch):
        with torch.no_grad():
            return float(loss_of(*batch, False))

    return batches, step, check


def mt_modules(data, net):
    """Config f's modules, holding the engine's initial parameters: ``modules``' encoder
    (``embed``, ``rnn``) and output layer (``out``), the decoder's target embedding, cell,
    initial state layer, attention (keys ``att_h``, query ``att_s``, ``att_v``) and deep
    output (``read_*``)."""
    model = modules(data, net)
    p = initial_params(data)
    R, D = p["dec_Wc"].shape[0], p["dec_Wh"].shape[0]
    model.update({"dec_embed": embedding(p["dec_embed"]),
                  "cell": nn.GRUCell(p["dec_Wx"].shape[0] + R, D),
                  "init": linear(p["init_W"], p["init_b"]),
                  "att_h": linear(p["att_Wh"]), "att_s": linear(p["att_Ws"]),
                  "att_v": linear(p["att_v"][:, None]),
                  "read_s": linear(p["read_Ws"]), "read_c": linear(p["read_Wc"]),
                  "read_e": linear(p["read_We"], p["read_b"])})
    # The cell's input is cat(embedding, context): its input weights are dec_Wx over dec_Wc.
    load_cell(dict(model["cell"].named_parameters()),
              np.concatenate([p["dec_Wx"], p["dec_Wc"]]), p["dec_Wh"], p["dec_b"])
    return model


def mt_encode(model, src, src_mask, lengths, drop):
    """Encoder states (S, B, 2H), zero at the padding, and the decoder's initial state."""
    h = packed_rnn(model["rnn"], drop(model["embed"](src)), lengths)
    mean = h.sum(dim=0) / src_mask.sum(dim=0)[:, None]  # over the real positions: padding is 0
    return h, torch.tanh(model["init"](mean))


def mt_decode(model, h, src_mask, e, s):
    """The teacher-forced decoder from state ``s`` over the embedded inputs ``e`` (T, B, E):
    its states (T, B, D) and contexts (T, B, 2H), the context of step t attended with the
    state before it."""
    keys = model["att_h"](h)  # (S, B, A): the source side of every score, once
    padding = src_mask == 0
    states, contexts = [], []
    for e_t in e:
        scores = model["att_v"](torch.tanh(keys + model["att_s"](s))).squeeze(2)  # (S, B)
        alpha = torch.softmax(scores.masked_fill(padding, float("-inf")), dim=0)
        context = (alpha[:, :, None] * h).sum(dim=0)
        s = model["cell"](torch.cat([e_t, context], dim=1), s)
        states.append(s)
        contexts.append(context)
    return torch.stack(states), torch.stack(contexts)


def mt_model(data, spec):
    """Config f: (batches, step, check); ``check`` is the first loss without dropout and
    without label smoothing (the engine's ``eval_step``)."""
    net = spec["net"]
    model, rate = mt_modules(data, net), net["dropout"]
    params, opt = adam(model, spec)
    batches = []
    for src, src_mask, y_in, y_out, mask in pair_arrays(data):
        ids = [torch.from_numpy(a.astype(np.int64)) for a in (src, y_in, y_out)]
        batches.append((*ids, torch.from_numpy(src_mask), torch.from_numpy(mask),
                        src_mask.sum(axis=0).astype(np.int64).tolist()))
    batches = place(model, batches, spec)

    def loss_of(src, y_in, y_out, src_mask, mask, lengths, training, smoothing):
        drop = lambda a: F.dropout(a, rate, training)  # noqa: E731
        h, s = mt_encode(model, src, src_mask, lengths, drop)
        e = drop(model["dec_embed"](y_in))  # the cell's and the deep output's input
        states, contexts = mt_decode(model, h, src_mask, e, s)
        o = torch.tanh(model["read_s"](states) + model["read_c"](contexts) + model["read_e"](e))
        logits = model["out"](drop(o))
        ce = F.cross_entropy(logits.flatten(0, 1), y_out.flatten(), reduction="none",
                             label_smoothing=smoothing)
        return (ce * mask.flatten()).sum() / mask.sum()

    def step(*batch):
        loss = loss_of(*batch, True, net["label_smoothing"])
        update(loss, opt, params, spec["clip_norm"])
        return float(loss), float(batch[4].sum())  # real target tokens, EOS included

    def check(*batch):
        with torch.no_grad():
            return float(loss_of(*batch, False, 0.0))

    return batches, step, check


def run(spec):
    data = dict(np.load(spec["data"]))
    torch.manual_seed(0)
    build = {"tutorial": tutorial_model, "lm": lm_model, "classify": classify_model,
             "mt": mt_model}
    results = {"impl": "pytorch", "torch_version": torch.__version__,
               "device": spec.get("device", "cpu")}
    with turn(spec.get("lock")):  # side by side with the engine: see bench.turn
        items, step, check = build[spec["kind"]](data, spec)
        # The first loss checks that the models agree: the first step's, or check's (the
        # initial parameters without dropout) where the step draws dropout masks.
        first = check(*items[0]) if check else None
        loss, _ = step(*items[0])
    results["first_loss"] = loss if first is None else first
    results["compile_warm_s"] = None
    results["by_threads"] = timed_reps(items, lambda *item: step(*item)[1], spec["threads"],
                                       spec["warmup"], spec["reps"], torch.set_num_threads,
                                       spec.get("lock"))
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    keep_turn_to_exit(spec.get("lock"))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="The PyTorch peer of experiments/bench.py: trains "
                                "the model of a bench worker spec and prints its figures as "
                                "one JSON line.")
    p.add_argument("spec", metavar="SPEC.json", help="the spec bench.py wrote")
    args = p.parse_args(argv)
    if torch is None:
        print("error: the PyTorch peer needs torch (bench.py --make-torch-venv creates an "
              "environment with it)", file=sys.stderr)
        return 2
    with open(args.spec) as f:
        spec = json.load(f)
    print(json.dumps(run(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
