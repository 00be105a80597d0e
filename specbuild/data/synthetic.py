"""Synthetic tasks, generated deterministically from `seed` (default 0) with the
shapes the spec's inputs ask for.  `samples` sets the train size (default 4,000,
fewer for very large samples); the held-out part is a quarter of that.

* sine: input [seq_len, 1], a window of a sine wave with random frequency
  (0.02-0.1 cycles per step) and phase plus N(0, 0.1) noise; target "y" [1] is the
  wave's next value without noise.  Learnable: frequency and phase can be read off
  the window, and the next value follows from them (RNN/LSTM/GRU regression).
* sequence-sum: input [seq_len, d], standard normal; target "y" [1] =
  relu(sum over time of feature 0 / sqrt(seq_len)), >= 0 as the guide's relu-ended
  Transformer/attention models need, about unit scale.  Learnable: it is exactly
  relu(w . mean-pooled features), the form of those models' heads.
* tokens: input [10] long token ids in [0, num_embeddings) (default 1000).  A
  token's class is its id mod 10; target "label" = the first token's class.  The
  first token is uniform; each later token has the label's class with probability
  0.8 (a uniform id of that class) and is uniform otherwise, so the label's class
  repeats through the sample.  Learnable: an Embedding is a lookup table, so it
  learns a class per id only from the samples where that id appears.  Were only the
  first token informative, each of 1,000 ids would be seen about 4 times there in
  4,000 samples, too few (29% held-out accuracy after the embedding spec's 5
  epochs); with the class repeated, every id is seen about 40 times, mostly in
  samples of its class, and a flattened-embedding linear model (specs/embedding.yaml)
  reaches over 90% on the held-out quarter in 5 epochs.
* mnist-side: two inputs, an mnist-sample digit [1, 28, 28] (the input with 784
  elements) and a side vector [10]: a one-hot "hint" of the label plus N(0, 0.1)
  noise, where the hint is the true label for 70% of samples and another class
  otherwise - so the best model uses both inputs.  Targets "label" and "ink", and
  the same 8,000 / 2,000 split as mnist-sample.
* token-stream: input [T] long token ids in [0, vocab_size) (default 64), T = the
  block size, the input's one dimension; target "next" [T] = the token after each
  position, i.e. the sample is tokens[i:i+T] and the target tokens[i+1:i+T+1] of one
  stream (a language model's next-token task).  The stream is a seeded order-2 Markov
  chain: each token b has 4 successors drawn at random; after the pair (a, b) the
  next token is one of b's successors, the one a picks with probability 0.85 and
  each other with 0.05, and with probability 0.02 instead a uniform token.  So the
  best model that sees only the current token (Embedding -> Linear) gets about
  1.1 nats per token, one that also sees the token before it (attention) about 0.75,
  against log(vocab_size) = 4.16 for a uniform guess at 64 (measured at the defaults).  Each sample is its own
  stream, started after a few tokens of burn-in.
"""
from __future__ import annotations

import math

import torch

from .tensors import DataError, TensorData, class_target_info
from .images import _images, image_bundle, sample_arrays

NOISE = 0.1
HINT_ACCURACY = 0.7
TOKEN_REPEAT = 0.8          # tokens: chance that a later token has the label's class
SUCCESSORS = 4              # token-stream: the tokens that may follow a token
FAVOURITE = 0.85            # token-stream: the chance of the successor the token before picks
STREAM_NOISE = 0.02         # token-stream: the chance of a uniform token instead
BURN_IN = 4                 # token-stream: tokens drawn and dropped before a sample starts
_MAX_ELEMENTS = 2 ** 25       # default size is capped so inputs stay near 128 MiB or less


def _one_input(name, specs):
    if len(specs) != 1:
        raise DataError(f"data set {name!r} gives 1 input but the spec has {len(specs)} "
                        f"({', '.join(s.name for s in specs)})", hint="give the spec one input, or use mnist-side for two")
    return specs[0]


def _sizes(cfg, per_sample: int) -> tuple[int, int]:
    samples = cfg.get("samples")
    if samples is None:
        samples = max(400, min(4000, _MAX_ELEMENTS // max(1, per_sample) * 4 // 5))
    if not isinstance(samples, int) or samples < 1:
        raise DataError(f"samples must be a positive integer, not {samples!r}", path="train.data.samples")
    return samples, max(1, samples // 4)


def _split(n_train, inputs, targets, info):
    return (TensorData([x[:n_train] for x in inputs], {k: v[:n_train] for k, v in targets.items()}),
            TensorData([x[n_train:] for x in inputs], {k: v[n_train:] for k, v in targets.items()}), info)


def _generator(cfg):
    return torch.Generator().manual_seed(int(cfg.get("seed", 0)))


def _regression_info(description):
    return {"task_hint": "regression", "num_classes": None, "description": description,
            "targets": {"y": {"kind": "regression", "shape": [1]}}}


def load_sine(name, cfg, specs, **_):
    spec = _one_input(name, specs)
    if len(spec.shape) not in (1, 2) or (len(spec.shape) == 2 and spec.shape[1] not in (1, None)):
        raise DataError(f"data set 'sine' gives windows of shape [seq_len, 1] but the spec's input {spec.name} "
                        f"is {list(spec.shape)}", path=f"inputs.{spec.name}", hint="declare it as [seq_len, 1], e.g. [50, 1]")
    length = spec.shape[0] or 50
    n_train, n_test = _sizes(cfg, length)
    n, g = n_train + n_test, _generator(cfg)
    freq = torch.empty(n, 1).uniform_(0.02, 0.1, generator=g)
    phase = torch.empty(n, 1).uniform_(0.0, 2 * math.pi, generator=g)
    wave = torch.sin(2 * math.pi * freq * torch.arange(length + 1.0) + phase)
    x = (wave[:, :length] + NOISE * torch.randn(n, length, generator=g)).unsqueeze(-1)
    return _split(n_train, [x], {"y": wave[:, length:].clone()},
                  _regression_info("noisy sine windows -> next clean value"))


def load_sequence_sum(name, cfg, specs, **_):
    spec = _one_input(name, specs)
    if len(spec.shape) != 2:
        raise DataError(f"data set 'sequence-sum' gives sequences [seq_len, d] but the spec's input {spec.name} "
                        f"is {list(spec.shape)}", path=f"inputs.{spec.name}", hint="declare it as [seq_len, d], e.g. [16, 64]")
    length, dim = spec.shape[0] or 16, spec.shape[1] or 8
    n_train, n_test = _sizes(cfg, length * dim)
    g = _generator(cfg)
    x = torch.randn(n_train + n_test, length, dim, generator=g)
    y = torch.relu(x[:, :, 0].sum(1, keepdim=True) / math.sqrt(length))
    return _split(n_train, [x], {"y": y}, _regression_info("random sequences -> relu(scaled sum of feature 0)"))


def load_tokens(name, cfg, specs, **_):
    spec = _one_input(name, specs)
    shape = tuple(d or 10 for d in spec.shape) or (10,)
    vocab = cfg.get("num_embeddings", 1000)
    if not isinstance(vocab, int) or vocab < 10:
        raise DataError(f"num_embeddings must be an integer >= 10, not {vocab!r}", path="train.data.num_embeddings")
    n_train, n_test = _sizes(cfg, math.prod(shape))
    g = _generator(cfg)
    n, length = n_train + n_test, math.prod(shape)
    x = torch.randint(0, vocab, (n, length), generator=g)
    label = x[:, 0] % 10
    # a token of the label's class: the uniform id moved within its decade (kept below vocab)
    of_class = x - x % 10 + label[:, None]
    of_class = torch.where(of_class >= vocab, of_class - 10, of_class)
    repeat = torch.rand(n, length, generator=g) < TOKEN_REPEAT
    repeat[:, 0] = False
    x = torch.where(repeat, of_class, x).reshape(n, *shape)
    info = {"task_hint": "classification", "num_classes": 10,
            "description": f"token ids in [0, {vocab}) -> the first one's class (id mod 10), which 80% of the later "
                           "tokens share",
            "num_embeddings": vocab, "targets": {"label": class_target_info(label, 10)}}
    return _split(n_train, [x], {"label": label}, info)


def load_mnist_side(name, cfg, specs, **_):
    if len(specs) != 2:
        raise DataError(f"data set 'mnist-side' gives 2 inputs (an image and a side vector) but the spec has "
                        f"{len(specs)}", hint="declare two inputs, e.g. {x1: [1, 28, 28], x2: [10]}")
    sizes = [math.prod(d or 1 for d in s.shape) for s in specs]
    image_at = sizes.index(784) if 784 in sizes else 0
    side_spec = specs[1 - image_at]
    width = sizes[1 - image_at] if None not in side_spec.shape else 10
    if width < 10:
        raise DataError(f"mnist-side's side vector has 10 entries but the spec's input {side_spec.name} is "
                        f"{list(side_spec.shape)}", path=f"inputs.{side_spec.name}", hint="declare it as [10]")
    images, labels, tr, te = sample_arrays()
    x, y = _images(images), torch.from_numpy(labels.astype("int64"))
    train, test, info = image_bundle("mnist-side", x[tr], y[tr], x[te], y[te], cfg, (0.1307,), (0.3081,), 10,
                                     "mnist-sample digits plus a 10-d label hint right 70% of the time")
    g = _generator(cfg)
    for part in (train, test):
        label = part.targets["label"]
        wrong = torch.rand(len(label), generator=g) >= HINT_ACCURACY
        hint = torch.where(wrong, (label + torch.randint(1, 10, label.shape, generator=g)) % 10, label)
        side = torch.nn.functional.one_hot(hint, width).float() + NOISE * torch.randn(len(label), width, generator=g)
        part.inputs.insert(1 - image_at, side)
    return train, test, info


def load_token_stream(name, cfg, specs, **_):
    spec = _one_input(name, specs)
    if len(spec.shape) != 1:
        raise DataError(f"data set 'token-stream' gives blocks of token ids [T] but the spec's input {spec.name} is "
                        f"{list(spec.shape)}", path=f"inputs.{spec.name}",
                        hint="declare it as {shape: [T], dtype: long}, e.g. [32]")
    block = spec.shape[0] or 32
    vocab = cfg.get("vocab_size", 64)
    if not isinstance(vocab, int) or isinstance(vocab, bool) or vocab < 2:
        raise DataError(f"vocab_size must be an integer >= 2, not {vocab!r}", path="train.data.vocab_size")
    n_train, n_test = _sizes(cfg, block)
    stream = markov_stream(n_train + n_test, block + 1, vocab, _generator(cfg))
    info = {"task_hint": "classification", "num_classes": vocab, "vocab_size": vocab, "block_size": block,
            "targets": {"next": class_target_info(None, vocab)}}
    return _split(n_train, [stream[:, :-1]], {"next": stream[:, 1:].clone()}, info)


def markov_stream(n: int, length: int, vocab: int, g) -> torch.Tensor:
    """n independent streams [n, length] of token-stream's order-2 Markov chain (see the module
    docstring): the chain's tables first, then the streams one position at a time, all from `g`."""
    successors = torch.randint(0, vocab, (vocab, SUCCESSORS), generator=g)
    rotation = torch.randint(0, SUCCESSORS, (vocab,), generator=g)     # which successor the token before picks
    slot_p = torch.tensor([FAVOURITE] + [(1 - FAVOURITE) / (SUCCESSORS - 1)] * (SUCCESSORS - 1))
    a, b = torch.randint(0, vocab, (2, n), generator=g)
    out = torch.empty(n, length, dtype=torch.long)
    for t in range(-BURN_IN, length):
        slot = (torch.multinomial(slot_p, n, replacement=True, generator=g) + rotation[a]) % SUCCESSORS
        nxt = successors[b, slot]
        noise = torch.rand(n, generator=g) < STREAM_NOISE
        nxt = torch.where(noise, torch.randint(0, vocab, (n,), generator=g), nxt)
        if t >= 0:
            out[:, t] = nxt
        a, b = b, nxt
    return out
