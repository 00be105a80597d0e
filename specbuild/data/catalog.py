"""The data sets a spec may name, with the options each takes: plain data, no torch, so
`specbuild list datasets` and the schema read it without loading anything.  The loaders
themselves are in `load.LOADERS`; a test keeps the two tables in step."""
from __future__ import annotations

# name -> (options it accepts besides the general ones, description)
_SETS = {
    "mnist-sample": ({"normalize"},
                     "10,000 real MNIST digits bundled with specbuild (8,000 train / 2,000 held-out), [1, 28, 28]"),
    "mnist": ({"normalize"}, "MNIST handwritten digits, 60,000 + 10,000, [1, 28, 28]"),
    "fashion-mnist": ({"normalize"},
                      "Fashion-MNIST clothing images, 60,000 + 10,000, [1, 28, 28]"),
    "kmnist": ({"normalize"}, "Kuzushiji-MNIST characters, 60,000 + 10,000, [1, 28, 28]"),
    "cifar10": ({"normalize"}, "CIFAR-10 colour images, 50,000 + 10,000, [3, 32, 32]"),
    "cifar100": ({"normalize"},
                 "CIFAR-100 colour images, 100 classes, 50,000 + 10,000, [3, 32, 32]"),
    "svhn": ({"normalize"}, "Street View house numbers, 73,257 + 26,032, [3, 32, 32]"),
    "digits": ({"normalize"},
               "scikit-learn's 1,797 8x8 digits, [1, 8, 8] or [64], 10 classes (80/20 split)"),
    "diabetes": ({"normalize"},
                 "scikit-learn's diabetes regression: 10 features -> 1 target, both standardised (80/20 split)"),
    "iris": ({"normalize"}, "scikit-learn's iris: 4 features, 3 classes (80/20 split)"),
    "wine": ({"normalize"}, "scikit-learn's wine: 13 features, 3 classes (80/20 split)"),
    "breast-cancer": ({"normalize"},
                      "scikit-learn's breast cancer: 30 features, 2 classes (80/20 split)"),
    "sine": ({"samples", "seed"},
             "noisy sine windows [seq_len, 1] -> the next value (RNN/LSTM/GRU regression)"),
    "sequence-sum": ({"samples", "seed"},
                     "random sequences [seq_len, d] -> relu of the first feature's scaled sum (attention/Transformer)"),
    "tokens": ({"samples", "seed", "num_embeddings"},
               "token ids [10] in [0, 1000) -> the first token's class (id mod 10), which 80% of the later "
               "tokens share (embedding models)"),
    "mnist-side": ({"normalize", "seed"},
                   "two inputs: an mnist-sample image and a 10-d hint vector right 70% of the time (multi-input)"),
    "token-stream": ({"samples", "seed", "vocab_size"},
                     "token ids [T] in [0, vocab_size) (default 64) from a seeded order-2 Markov chain -> the next "
                     "token at each position, [T] (language models)"),
}
DATASETS = {name: description for name, (_, description) in _SETS.items()}
OPTIONS = {name: options for name, (options, _) in _SETS.items()}
FILE_SUFFIXES = (".npz", ".pt", ".pth", ".csv")
FILE_OPTIONS = {"normalize", "val_split", "test", "target", "task", "seed"}
# keys of train.data that belong to the trainer (or are given as arguments too): accepted, not used here
GENERAL_OPTIONS = {"dataset", "path", "root", "limit", "batch_size", "shuffle", "val_split"}
DATA_OPTIONS = sorted(GENERAL_OPTIONS | FILE_OPTIONS | {o for options in OPTIONS.values() for o in options})
NORMALIZE_MODES = ("standard", "unit", "symmetric")

# one sample's shape -> the data sets giving it (for hints when a spec's input does not fit)
KNOWN_SHAPES = {(1, 28, 28): "mnist-sample, mnist, fashion-mnist, kmnist",
                (3, 32, 32): "cifar10, cifar100, svhn", (1, 8, 8): "digits", (64,): "digits",
                (10,): "diabetes, tokens", (4,): "iris", (13,): "wine", (30,): "breast-cancer"}
