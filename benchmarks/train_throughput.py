"""Training speed of `specbuild train` against hand-written loops, on full Fashion-MNIST.

Trains the fnn spec (batch 32, Adam lr 0.001) on the 60,000 Fashion-MNIST
images side by side with
  - a minimal hand-written loop on preloaded tensors (the floor), and the same
    loop with torch's fused Adam, which specbuild uses by default,
  - the guide's own loop: a Dataset of PIL images with ToTensor/Normalize
    transforms behind a DataLoader,
  - PyTorch Lightning's Trainer and Keras 3 `fit` (torch backend), where installed,
and prints each one's median seconds per epoch and the ratios to specbuild.
Targets: specbuild / minimal <= 1.10, specbuild / guide loop <= 0.3.  With
--cnn it also trains the cnn spec; 5 epochs should reach test accuracy >= 0.87
(fnn) and >= 0.90 (cnn).

Fashion-MNIST comes from Debian's package (`apt-get install dataset-fashion-mnist`)
or any folder of its four IDX files (--data-root).  Run from the repository root:

    .venv/bin/python benchmarks/train_throughput.py [--epochs 5] [--guide-epochs 1] [--cnn]
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import specbuild
from specbuild.data.load import load_data

ROOT = Path(__file__).resolve().parent.parent
BATCH, LR = 32, 0.001


class MinimalFNN(nn.Module):
    """The guide's FNN returning logits, as the spec's training graph does."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, start_dim=1))))


class GuideFNN(MinimalFNN):
    """The guide's FeedforwardNN exactly: softmax output fed to CrossEntropyLoss."""

    def forward(self, x):
        return torch.softmax(super().forward(x), dim=1)


def accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def minimal_loop(data, epochs: int, fused: bool = False) -> tuple[list[float], float]:
    torch.manual_seed(0)
    model, loss_fn = MinimalFNN(), nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=LR, fused=fused or None)
    x, y = data.train.inputs[0], data.train.targets["label"]
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(len(x))
        xs, ys = x[perm], y[perm]
        for i in range(0, len(xs), BATCH):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xs[i:i + BATCH]), ys[i:i + BATCH])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    return times, accuracy(model, data.test.inputs[0], data.test.targets["label"])


class GuideDataset(torch.utils.data.Dataset):
    """What torchvision's FashionMNIST hands a DataLoader: a PIL image per sample, then the transforms."""

    def __init__(self, images_uint8, labels, transform):
        self.images, self.labels, self.transform = images_uint8, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image
        return self.transform(Image.fromarray(self.images[i].numpy(), mode="L")), int(self.labels[i])


def guide_loop(data, epochs: int) -> list[float]:
    from torchvision import transforms
    norm = data.info["normalize"]
    pixels = (data.train.inputs[0] * torch.tensor(norm["std"]) + torch.tensor(norm["mean"])) * 255
    images = pixels.round().clamp(0, 255).to(torch.uint8).reshape(-1, 28, 28)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.2860,), (0.3530,))])
    loader = torch.utils.data.DataLoader(GuideDataset(images, data.train.targets["label"], transform),
                                         batch_size=BATCH, shuffle=True)
    torch.manual_seed(0)
    model, loss_fn = GuideFNN(), nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for x_batch, y_batch in loader:
            opt.zero_grad()
            loss = loss_fn(model(x_batch), y_batch)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    return times


def lightning_loop(data, epochs: int) -> list[float] | None:
    if importlib.util.find_spec("lightning") is None:
        return None
    import lightning as L

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = MinimalFNN()

        def training_step(self, batch, _):
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=LR)

    times = []

    class Timer(L.Callback):
        def on_train_epoch_start(self, *_):
            self.start = time.perf_counter()

        def on_train_epoch_end(self, *_):
            times.append(time.perf_counter() - self.start)

    dataset = torch.utils.data.TensorDataset(data.train.inputs[0], data.train.targets["label"])
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True)
    L.Trainer(max_epochs=epochs, callbacks=[Timer()], enable_progress_bar=False, logger=False,
              enable_checkpointing=False, accelerator="cpu").fit(Module(), loader)
    return times


def keras_loop(data, epochs: int) -> list[float] | None:
    if importlib.util.find_spec("keras") is None:
        return None
    import os
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    model = keras.Sequential([keras.layers.Input((1, 28, 28)), keras.layers.Flatten(),
                              keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(LR),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, *_):
            self.start = time.perf_counter()

        def on_epoch_end(self, *_):
            times.append(time.perf_counter() - self.start)

    model.fit(data.train.inputs[0].numpy(), data.train.targets["label"].numpy(), batch_size=BATCH,
              epochs=epochs, verbose=0, callbacks=[Timer()])
    return times


def specbuild_run(spec: str, epochs: int, root: str | None) -> tuple[list[float], float]:
    with tempfile.TemporaryDirectory() as out:
        run = specbuild.train(ROOT / "specs" / spec, data="fashion-mnist", data_root=root, epochs=epochs,
                              batch_size=BATCH, lr=LR, out=out, download=False)
    return [row["train_seconds"] for row in run.history], run.history[-1]["val_accuracy"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--guide-epochs", type=int, default=2, help="the guide's loop is slow: fewer epochs")
    parser.add_argument("--data-root", help="folder of the Fashion-MNIST IDX files (default: Debian's)")
    parser.add_argument("--cnn", action="store_true", help="also train the cnn spec for its accuracy")
    args = parser.parse_args(argv)
    data = load_data({"dataset": "fashion-mnist"}, {"x": [1, 28, 28]}, root=args.data_root, download=False)
    print(f"Fashion-MNIST: {len(data.train)} train, {len(data.test)} test; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; fnn, batch {BATCH}, Adam lr {LR}", flush=True)

    results = {}
    minimal_a, minimal_acc = minimal_loop(data, args.epochs)
    ours, ours_acc = specbuild_run("fnn.yaml", args.epochs, args.data_root)
    minimal_b, _ = minimal_loop(data, args.epochs)          # before and after: drift hits both alike
    results["specbuild train"] = ours
    results["minimal loop"] = minimal_a + minimal_b
    # specbuild uses torch's fused Adam; the same minimal loop with it shows how much of the lead that is
    results["minimal, fused Adam"] = minimal_loop(data, args.epochs, fused=True)[0]
    results["guide loop"] = guide_loop(data, args.guide_epochs)
    for name, fn in (("lightning", lightning_loop), ("keras (torch)", keras_loop)):
        times = fn(data, min(args.epochs, 2))
        if times is not None:
            results[name] = times
        else:
            print(f"{name}: not installed, skipped")

    base = statistics.median(ours)
    print(f"\n{'loop':18} {'s/epoch':>8} {'specbuild / it':>15}")
    for name, times in results.items():
        median = statistics.median(times)
        print(f"{name:18} {median:8.2f} {base / median:15.3f}")
    ratio_minimal = base / statistics.median(results["minimal loop"])
    ratio_guide = base / statistics.median(results["guide loop"])
    print(f"\nspecbuild / minimal = {ratio_minimal:.3f} (target <= 1.10)")
    print(f"specbuild / guide   = {ratio_guide:.3f} (target <= 0.30)")
    print(f"fnn test accuracy after {args.epochs} epochs: specbuild {ours_acc:.4f}, minimal loop {minimal_acc:.4f} "
          "(target >= 0.87)")
    ok = ratio_minimal <= 1.10 and ratio_guide <= 0.30 and ours_acc >= 0.87
    if args.cnn:
        _, cnn_acc = specbuild_run("cnn.yaml", args.epochs, args.data_root)
        print(f"cnn test accuracy after {args.epochs} epochs: {cnn_acc:.4f} (target >= 0.90)")
        ok = ok and cnn_acc >= 0.90
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
