"""Image data sets: the bundled MNIST sample and torchvision's sets.

Every image set gives one input, the images as float32 [N, C, H, W], and two
targets: "label" (long [N]) and "ink" (float [N, 1]: the image's mean
intensity in [0, 1], standardised by the train part's mean and std) - a real
regression target for multi-output models.

Normalisation (`normalize`), always x = (pixel_in_[0,1] - mean) / std, recorded
in info["normalize"] so predictions can be mapped back:
  standard  (default) the data set's per-channel mean/std, as the guide's
            Normalize((0.1307,), (0.3081,)) for MNIST
  unit      [0, 1] pixels (mean 0, std 1), for sigmoid-output autoencoders
  symmetric [-1, 1] pixels (mean 0.5, std 0.5), for a tanh GAN generator
"""
from __future__ import annotations

import gzip
import os
import socket
from pathlib import Path

import numpy as np
import torch

from .tensors import DataError, TensorData, class_target_info

BUNDLED = Path(__file__).parent / "mnist-t10k"
SAMPLE_SPLIT_SEED = 0        # mnist-sample: numpy default_rng(0).permutation(10000); first 8,000 train
SAMPLE_TRAIN = 8000
DOWNLOAD_TIMEOUT_S = 10      # per network operation, so a machine without network fails fast

# name -> (torchvision class, IDX family?, per-channel mean, std, classes)
IMAGE_SETS = {
    "mnist": ("MNIST", True, (0.1307,), (0.3081,), 10),
    "fashion-mnist": ("FashionMNIST", True, (0.2860,), (0.3530,), 10),
    "kmnist": ("KMNIST", True, (0.1918,), (0.3483,), 10),
    "cifar10": ("CIFAR10", False, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 10),
    "cifar100": ("CIFAR100", False, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 100),
    "svhn": ("SVHN", False, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), 10),
}
# the classes' names, as torchvision's data sets give them (the digit sets' names are their ids)
CLASS_NAMES = {
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}
# where Debian's dataset packages install (apt-get install dataset-fashion-mnist)
SYSTEM_DIRS = {"fashion-mnist": ["/usr/share/datasets/fashion-mnist"], "mnist": ["/usr/share/datasets/mnist"]}
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_NAMES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def read_idx(path) -> np.ndarray:
    """An IDX file (gzipped or not) as a numpy array, read in one go."""
    path = str(path)
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}", hint="the file may be truncated; fetch it again")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number)", hint="give the original MNIST-format files")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    body = raw[4 + 4 * ndim:]
    if len(body) != dtype.itemsize * int(np.prod(dims)):
        raise DataError(f"IDX file {path} holds {len(body)} data bytes but its header promises {dims}",
                        hint="the file is truncated or corrupt; fetch it again")
    return np.frombuffer(body, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))   # a writable copy


def find_idx_files(folder) -> dict | None:
    """The four IDX files in `folder`, gzipped or not (also "train-images.idx3-ubyte"), or None."""
    found = {}
    for key, base in IDX_NAMES.items():
        for name in (base, base + ".gz", base.replace("-idx", ".idx"), base.replace("-idx", ".idx") + ".gz"):
            if os.path.isfile(os.path.join(folder, name)):
                found[key] = os.path.join(folder, name)
                break
        else:
            return None
    return found


def _images(arr: np.ndarray) -> torch.Tensor:
    """uint8 images [N, H, W] or [N, H, W, C] -> float32 [N, C, H, W] in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(arr))
    x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
    return x.contiguous().float().div_(255.0)


def image_bundle(name, train_x, train_y, test_x, test_y, cfg, mean=None, std=None, classes=10, description=""):
    """Finish an image set: ink target, normalisation, info. x: float [N, C, H, W] in [0, 1]."""
    mode = cfg.get("normalize", "standard")
    ink_train, ink_test = train_x.mean(dim=(1, 2, 3)), test_x.mean(dim=(1, 2, 3))
    ink_mean, ink_std = float(ink_train.mean()), float(ink_train.std()) or 1.0
    if mode == "standard":
        if mean is None:      # unknown set: the train part's per-channel statistics
            mean, std = train_x.mean(dim=(0, 2, 3)).tolist(), train_x.std(dim=(0, 2, 3)).tolist()
    elif mode == "unit":
        mean, std = [0.0] * train_x.shape[1], [1.0] * train_x.shape[1]
    else:
        mean, std = [0.5] * train_x.shape[1], [0.5] * train_x.shape[1]
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    for x in (train_x, test_x):
        x.sub_(m).div_(s)     # in place: these sets can be large
    parts = []
    for x, y, ink in ((train_x, train_y, ink_train), (test_x, test_y, ink_test)):
        parts.append(TensorData([x], {"label": y.long(), "ink": ((ink - ink_mean) / ink_std).unsqueeze(1)}))
    label = class_target_info(train_y, classes)
    if len(CLASS_NAMES.get(name, ())) == label["num_classes"]:     # what a report's confusion matrix shows
        label["names"] = list(CLASS_NAMES[name])
    info = {"num_classes": classes, "task_hint": "classification", "description": description,
            "normalize": {"mode": mode, "mean": list(mean), "std": list(std)},
            "targets": {"label": label,
                        "ink": {"kind": "regression", "shape": [1], "mean": ink_mean, "std": ink_std}}}
    return parts[0], parts[1], info


def sample_arrays():
    """The bundled 10,000 MNIST test digits: (images [N, 28, 28] uint8, labels [N]), split indices."""
    files = {k: BUNDLED / (IDX_NAMES[k] + ".gz") for k in ("test_images", "test_labels")}
    images, labels = read_idx(files["test_images"]), read_idx(files["test_labels"])
    perm = np.random.default_rng(SAMPLE_SPLIT_SEED).permutation(len(labels))
    return images, labels, perm[:SAMPLE_TRAIN], perm[SAMPLE_TRAIN:]


def load_mnist_sample(name, cfg, specs, **_):
    """mnist-sample: the 10,000 real MNIST test digits (byte-identical to torchvision's t10k
    files) shipped in specbuild/data/mnist-t10k, cut by numpy.random.default_rng(0)'s
    permutation into 8,000 train and 2,000 held-out digits. No network, ever."""
    images, labels, tr, te = sample_arrays()
    x, y = _images(images), torch.from_numpy(labels.astype(np.int64))
    return image_bundle(name, x[tr], y[tr], x[te], y[te], cfg, (0.1307,), (0.3081,), 10,
                        "MNIST test digits bundled with specbuild, 8,000 train / 2,000 held-out")


def load_image_set(name, cfg, specs, *, root=None, download=True, cache_dir=None):
    """torchvision's image sets: from `root` (--data-root) when it holds them, else the cache
    folder (or a Debian package's folder); downloaded into the cache when allowed."""
    tv_name, idx_family, mean, std, classes = IMAGE_SETS[name]
    searched = []
    arrays = _find_local(name, tv_name, idx_family, root, cache_dir, searched)
    if arrays is None:
        reason = "downloading is off"
        if download:
            reason = _download(tv_name, cache_dir)
            if reason is None:
                arrays = _find_local(name, tv_name, idx_family, None, cache_dir, [])
                reason = "the download left no readable files" if arrays is None else None
        if arrays is None:
            raise DataError(
                f"data set {name!r} was not found in {', '.join(searched)} and could not be downloaded ({reason})",
                hint="download it once with network access, pass --data-root DIR holding its files, "
                     "or train on the bundled digits with --data mnist-sample")
    train_x, train_y, test_x, test_y = arrays
    return image_bundle(name, _images(train_x), torch.from_numpy(np.asarray(train_y, dtype=np.int64)),
                        _images(test_x), torch.from_numpy(np.asarray(test_y, dtype=np.int64)),
                        cfg, mean, std, classes)


def _find_local(name, tv_name, idx_family, root, cache_dir, searched):
    """(train_x, train_y, test_x, test_y) numpy arrays from the first folder holding them."""
    bases = ([root] if root else []) + [cache_dir]
    if idx_family:
        folders = [f for b in bases for f in (b, os.path.join(b, name), os.path.join(b, tv_name, "raw"))]
        for folder in folders + SYSTEM_DIRS.get(name, []):
            searched.append(folder)
            files = find_idx_files(folder)
            if files:
                return tuple(read_idx(files[k]) for k in ("train_images", "train_labels", "test_images", "test_labels"))
        return None
    for base in bases:
        searched.append(base)
        try:
            train, test = (_tv_dataset(tv_name, base, split, False) for split in (True, False))
        except (RuntimeError, OSError, ValueError):
            continue
        return (*_tv_arrays(train), *_tv_arrays(test))
    return None


def _tv_dataset(tv_name, folder, train, download):
    import torchvision.datasets as tvd
    cls = getattr(tvd, tv_name)
    if tv_name == "SVHN":
        return cls(folder, split="train" if train else "test", download=download)
    return cls(folder, train=train, download=download)


def _tv_arrays(ds):
    if hasattr(ds, "labels"):       # SVHN: data already [N, C, H, W]
        return np.transpose(ds.data, (0, 2, 3, 1)), ds.labels
    return ds.data, ds.targets


def _download(tv_name, cache_dir) -> str | None:
    """Download with torchvision into the cache; None on success, else the reason it failed."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)   # torchvision's urlopen has no timeout of its own
    try:
        os.makedirs(cache_dir, exist_ok=True)
        for train in (True, False):
            _tv_dataset(tv_name, cache_dir, train, True)
        return None
    except Exception as e:        # any failure (no network, bad checksum, disk) becomes the reason shown
        return (str(e).strip().splitlines() or [type(e).__name__])[-1][:200]
    finally:
        socket.setdefaulttimeout(old)
