"""specbuild.data.load: data sets, shape checks and batching. Never touches the network."""
import gzip
import os
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from specbuild.data import catalog
from specbuild.data import images as image_sets
from specbuild.data.load import DATASETS, LOADERS, DataError, TensorData, load_data
from specbuild.errors import SpecError

FASHION = "/usr/share/datasets/fashion-mnist"
REAL_DOWNLOAD = image_sets._download


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch, tmp_path):
    """Any download attempt fails the test; the cache is an empty folder."""
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download")
    monkeypatch.setattr(image_sets, "_download", refuse)
    monkeypatch.setenv("SPECBUILD_DATA", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def sample():
    return load_data("mnist-sample", {"x": [1, 28, 28]}, download=False)


def write_idx(path, array):
    array = np.asarray(array)
    code = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}[array.dtype]
    raw = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()
    with (gzip.open if str(path).endswith(".gz") else open)(path, "wb") as f:
        f.write(raw)


def write_mnist_folder(folder, gz: bool, names=None):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(1)
    ext = ".gz" if gz else ""
    parts = {}
    for split, n in (("train", 6), ("t10k", 4)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        write_idx(os.path.join(folder, f"{split}-images-idx3-ubyte{ext}"), images)
        write_idx(os.path.join(folder, f"{split}-labels-idx1-ubyte{ext}"), labels)
        parts[split] = (images, labels)
    return parts


# --- the bundled sample ------------------------------------------------------------

def test_mnist_sample_split_and_labels(sample):
    assert (len(sample.train), len(sample.test)) == (8000, 2000)
    x, label = sample.train.inputs[0], sample.train.targets["label"]
    assert x.shape == (8000, 1, 28, 28) and x.dtype == torch.float32
    assert label.dtype == torch.long and set(label.tolist()) == set(range(10))
    assert set(sample.test.targets["label"].tolist()) <= set(range(10))
    assert sample.info["num_classes"] == 10 and sample.info["task_hint"] == "classification"
    assert sample.info["normalize"] == {"mode": "standard", "mean": [0.1307], "std": [0.3081]}
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05
    ink = sample.train.targets["ink"]
    assert ink.shape == (8000, 1) and abs(float(ink.mean())) < 1e-4 and abs(float(ink.std()) - 1) < 1e-3


def test_mnist_sample_split_is_fixed_and_disjoint():
    images, labels, tr, te = image_sets.sample_arrays()
    assert len(images) == 10000 and len(set(tr.tolist()) | set(te.tolist())) == 10000
    assert (tr == np.random.default_rng(0).permutation(10000)[:8000]).all()


@pytest.mark.parametrize("mode,lo,hi", [("unit", 0.0, 1.0), ("symmetric", -1.0, 1.0)])
def test_image_normalize_modes(mode, lo, hi):
    b = load_data({"dataset": "mnist-sample", "normalize": mode}, {"x": [784]}, limit=200)
    x = b.train.inputs[0]
    assert x.shape == (200, 784)                      # [1, 28, 28] reshaped for a flat input
    assert float(x.min()) == pytest.approx(lo) and float(x.max()) == pytest.approx(hi)


def test_limit_and_trainer_keys_accepted():
    b = load_data({"dataset": "mnist-sample", "batch_size": 32, "shuffle": True, "limit": 50}, {"x": [1, 28, 28]})
    assert (len(b.train), len(b.test)) == (50, 50)
    assert b.info["sizes"] == {"train": 50, "test": 50}


# --- torchvision sets from folders -----------------------------------------------------

@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_as_data_root(tmp_path, gz):
    parts = write_mnist_folder(tmp_path / "plain", gz)
    b = load_data("mnist", {"x": [1, 28, 28]}, root=str(tmp_path / "plain"), download=False)
    assert (len(b.train), len(b.test)) == (6, 4)
    assert torch.equal(b.train.targets["label"], torch.from_numpy(parts["train"][1].astype(np.int64)))
    pixels = b.train.inputs[0] * 0.3081 + 0.1307          # undo the standard normalisation
    assert torch.allclose(pixels[:, 0] * 255, torch.from_numpy(parts["train"][0]).float(), atol=1e-3)


def test_idx_folder_in_torchvision_layout_and_cache(tmp_path):
    write_mnist_folder(tmp_path / "root" / "KMNIST" / "raw", gz=False)
    assert len(load_data("kmnist", {"x": [784]}, root=str(tmp_path / "root"), download=False).train) == 6
    write_mnist_folder(tmp_path / "cache" / "FashionMNIST" / "raw", gz=True)
    cached = load_data("fashion-mnist", {"x": [1, 28, 28]}, cache_dir=str(tmp_path / "cache"), download=False)
    assert len(cached.test) == 4


def test_image_sets_name_their_classes_where_torchvision_does(tmp_path):
    write_mnist_folder(tmp_path / "FashionMNIST" / "raw", gz=False)
    fashion = load_data("fashion-mnist", {"x": [1, 28, 28]}, root=str(tmp_path), download=False)
    names = fashion.info["targets"]["label"]["names"]
    assert len(names) == fashion.info["num_classes"] == 10 and names[0] == "T-shirt/top" and names[9] == "Ankle boot"
    sample = load_data("mnist-sample", {"x": [1, 28, 28]}, download=False)
    assert "names" not in sample.info["targets"]["label"]       # a digit's name is its id


def test_truncated_idx_file_is_a_clear_error(tmp_path):
    write_mnist_folder(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated"):
        load_data("mnist", {"x": [1, 28, 28]}, root=str(tmp_path), download=False)


def test_missing_set_without_download_names_the_ways_out(tmp_path, monkeypatch):
    monkeypatch.setattr(image_sets, "SYSTEM_DIRS", {})
    with pytest.raises(DataError) as e:
        load_data("mnist", {"x": [1, 28, 28]}, root=str(tmp_path / "nowhere"), download=False)
    text = str(e.value)
    assert "data set 'mnist' was not found in" in text and str(tmp_path / "nowhere") in text
    assert "could not be downloaded (downloading is off)" in text
    assert "--data-root" in e.value.hint and "mnist-sample" in e.value.hint
    assert isinstance(e.value, SpecError)


def test_failed_download_gives_its_reason(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def no_network(self):
        raise RuntimeError("Error downloading:\nno route to host")
    monkeypatch.setattr(image_sets, "_download", REAL_DOWNLOAD)      # its network part is stubbed below
    monkeypatch.setattr(tvd.CIFAR10, "download", no_network)
    with pytest.raises(DataError, match=r"could not be downloaded \(no route to host\)"):
        load_data("cifar10", {"x": [3, 32, 32]}, cache_dir=str(tmp_path), download=True)


@pytest.mark.skipif(not os.path.isdir(FASHION), reason="apt-get install dataset-fashion-mnist")
def test_debian_fashion_mnist_package():
    b = load_data("fashion-mnist", {"x": [1, 28, 28]}, root=FASHION, download=False, limit=100)
    assert (len(b.train), len(b.test)) == (100, 100)
    assert b.info["normalize"]["mean"] == [0.2860]
    full = load_data("fashion-mnist", {"x": [784]}, download=False)    # found without --data-root too
    assert (len(full.train), len(full.test)) == (60000, 10000)
    assert set(full.test.targets["label"].tolist()) == set(range(10))


# --- errors ------------------------------------------------------------------------

def test_shape_mismatch_message():
    with pytest.raises(DataError) as e:
        load_data("mnist-sample", {"x": [3, 32, 32]}, limit=10)
    assert e.value.message == "data set 'mnist-sample' gives x samples of shape [1, 28, 28] but the spec's input x is [3, 32, 32]"
    assert "cifar10" in e.value.hint and "784" in e.value.hint


def test_wrong_number_of_inputs():
    with pytest.raises(DataError, match="gives 1 input.* but the spec has 2"):
        load_data("mnist-sample", {"x1": [1, 28, 28], "x2": [10]}, limit=10)


def test_unknown_name_did_you_mean():
    with pytest.raises(DataError) as e:
        load_data("fashon-mnist", {"x": [784]})
    assert "unknown data set 'fashon-mnist'" in str(e.value) and "did you mean 'fashion-mnist'" in e.value.hint


def test_unknown_option_and_normalize_mode():
    with pytest.raises(DataError, match="'normalise'") as e:
        load_data({"dataset": "mnist-sample", "normalise": "unit"}, {"x": [784]})
    assert "did you mean 'normalize'" in e.value.hint
    with pytest.raises(DataError) as e:
        load_data({"dataset": "mnist-sample", "normalize": "symetric"}, {"x": [784]})
    assert "symmetric" in e.value.hint
    with pytest.raises(DataError, match="does not apply"):
        load_data({"dataset": "sine", "normalize": "unit"}, {"x": [20, 1]})


# --- scikit-learn and synthetic sets -------------------------------------------------------

def test_sklearn_sets():
    d = load_data("diabetes", {"x": [10]})
    assert d.train.inputs[0].shape[1:] == (10,) and d.train.targets["y"].shape == (len(d.train), 1)
    assert len(d.train) + len(d.test) == 442 and d.info["task_hint"] == "regression"
    assert abs(float(d.train.targets["y"].mean())) < 1e-5 and abs(float(d.train.inputs[0].mean())) < 1e-5
    g = load_data("digits", {"x": [1, 8, 8]})
    assert g.train.inputs[0].shape[1:] == (1, 8, 8) and g.info["num_classes"] == 10
    assert load_data("digits", {"x": [64]}).test.inputs[0].shape[1:] == (64,)
    i = load_data("iris", {"x": [4]})
    assert i.info["num_classes"] == 3 and len(i.train) == 120
    assert load_data("breast-cancer", {"x": [30]}).info["num_classes"] == 2


def test_sine():
    b = load_data({"dataset": "sine", "samples": 200}, {"x": [30, 1]})
    x, y = b.train.inputs[0], b.train.targets["y"]
    assert x.shape == (200, 30, 1) and y.shape == (200, 1) and len(b.test) == 50
    assert float(y.abs().max()) <= 1.0
    # the target continues the window: close to a smooth extrapolation of its last values
    assert float((y[:, 0] - x[:, -1, 0]).abs().mean()) < 0.5
    assert load_data("sine", {"x": [12]}).train.inputs[0].shape[1:] == (12,)


def test_sequence_sum():
    b = load_data({"dataset": "sequence-sum", "samples": 100}, {"x": [7, 5]})
    x, y = b.train.inputs[0], b.train.targets["y"]
    assert x.shape == (100, 7, 5) and y.shape == (100, 1) and bool((y >= 0).all())
    assert torch.allclose(y[:, 0], torch.relu(x[:, :, 0].sum(1) / 7 ** 0.5))
    assert 0.2 < float((y > 0).float().mean()) < 0.8


def test_tokens():
    b = load_data({"dataset": "tokens", "num_embeddings": 50, "samples": 300}, {"x": {"shape": [10], "dtype": "long"}})
    x, label = b.train.inputs[0], b.train.targets["label"]
    assert x.dtype == torch.long and x.shape == (300, 10) and 0 <= int(x.min()) and int(x.max()) < 50
    assert torch.equal(label, x[:, 0] % 10)
    # an input without a dtype is float32, as validation assumed when it checked the layers it feeds
    undeclared = load_data({"dataset": "tokens", "num_embeddings": 50, "samples": 300}, {"x": [10]}).train.inputs[0]
    assert undeclared.dtype == torch.float32 and torch.equal(undeclared, x.float())


def test_mnist_side_inputs_in_spec_order():
    b = load_data("mnist-side", {"side": [10], "image": [1, 28, 28]}, limit=2000)
    side, image = b.train.inputs
    assert side.shape == (2000, 10) and image.shape == (2000, 1, 28, 28)
    right = (side.argmax(1) == b.train.targets["label"]).float().mean()
    assert 0.65 < float(right) < 0.75


@pytest.mark.parametrize("name,shapes", [
    ("sine", {"x": [16, 1]}), ("sequence-sum", {"x": [8, 4]}), ("tokens", {"x": [10]}),
    ("mnist-side", {"x1": [784], "x2": [10]}), ("token-stream", {"idx": [12]})])
def test_synthetic_sets_are_deterministic(name, shapes):
    config = {"dataset": name, "seed": 3} if name == "mnist-side" else {"dataset": name, "samples": 64, "seed": 3}
    a, b = load_data(config, shapes, limit=64), load_data(config, shapes, limit=64)
    for x, y in zip(a.train.inputs + a.test.inputs, b.train.inputs + b.test.inputs):
        assert torch.equal(x, y)
    other = load_data({**config, "seed": 4}, shapes, limit=64)
    assert not torch.equal(a.train.inputs[-1], other.train.inputs[-1])


# Every data set of the catalog is either loaded offline below or listed here with the reason it
# cannot be: a new data set that is in neither fails test_every_data_set_is_tested_or_excused.
OFFLINE_SHAPES = {"sine": {"x": [10, 1]}, "sequence-sum": {"x": [6, 4]}, "tokens": {"x": [10]},
                  "mnist-side": {"x1": [1, 28, 28], "x2": [10]}, "diabetes": {"x": [10]}, "iris": {"x": [4]},
                  "wine": {"x": [13]}, "breast-cancer": {"x": [30]}, "digits": {"x": [64]},
                  "mnist-sample": {"x": [784]}, "token-stream": {"idx": [16]}}
# torchvision's IDX sets: loaded offline from a small fake copy in the layout torchvision keeps
IDX_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}
NEEDS_REAL_DATA = {
    "cifar10": "torchvision reads CIFAR-10 only after checking its archive's md5: needs the network or a real copy",
    "cifar100": "torchvision reads CIFAR-100 only after checking its archive's md5: needs the network or a real copy",
    "svhn": "torchvision reads SVHN's .mat files only after checking their md5: needs the network or a real copy",
}


def test_every_data_set_is_tested_or_excused():
    tested = set(OFFLINE_SHAPES) | set(IDX_FOLDERS)
    assert not tested & set(NEEDS_REAL_DATA)
    untested = set(DATASETS) - tested - set(NEEDS_REAL_DATA)
    assert not untested, f"data sets with no offline test and no reason in NEEDS_REAL_DATA: {sorted(untested)}"
    assert not (tested | set(NEEDS_REAL_DATA)) - set(DATASETS), "a listed data set is no longer in the catalog"
    assert all(reason.strip() for reason in NEEDS_REAL_DATA.values())


def test_loaders_and_catalog_name_the_same_data_sets():
    assert set(LOADERS) == set(catalog.DATASETS) == set(catalog.OPTIONS)
    assert list(catalog.DATASETS) == list(catalog.OPTIONS)       # both read one table, in one order
    assert all(catalog.DATASETS[name].strip() for name in catalog.DATASETS)


@pytest.mark.parametrize("name", sorted(OFFLINE_SHAPES))
def test_data_set_loads_offline(name):
    b = load_data({"dataset": name}, OFFLINE_SHAPES[name], limit=20)
    assert len(b.train) == 20 and len(b.test) == 20
    assert b.info["description"] == DATASETS[name]
    for x, shape in zip(b.train.inputs, OFFLINE_SHAPES[name].values()):
        assert tuple(x.shape) == (20, *shape)
    assert b.train.targets and all(len(t) == 20 for t in b.train.targets.values())


@pytest.mark.parametrize("name", sorted(IDX_FOLDERS))
def test_idx_data_set_loads_offline_from_a_local_copy(name, tmp_path):
    parts = write_mnist_folder(tmp_path / IDX_FOLDERS[name] / "raw", gz=True)
    b = load_data({"dataset": name, "normalize": "unit"}, {"x": [784]}, root=str(tmp_path), download=False)
    assert (len(b.train), len(b.test)) == (6, 4) and b.info["description"] == DATASETS[name]
    assert b.train.inputs[0].shape == (6, 784)
    assert torch.allclose(b.test.inputs[0] * 255, torch.from_numpy(parts["t10k"][0]).float().reshape(4, 784))
    assert b.test.targets["label"].tolist() == parts["t10k"][1].tolist()


# --- the user's own files ------------------------------------------------------------------

def test_npz_user_data(tmp_path):
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", features=x, label=np.arange(50) % 3, score=x.sum(1))
    b = load_data({"dataset": str(tmp_path / "d.npz"), "val_split": 0.2}, {"features": [4]})
    assert (len(b.train), len(b.test)) == (40, 10)
    assert b.train.targets["label"].dtype == torch.long and b.train.targets["score"].shape == (40, 1)
    assert b.info["num_classes"] == 3 and b.info["targets"]["score"]["kind"] == "regression"
    assert torch.allclose(b.train.targets["score"][:, 0], b.train.inputs[0].sum(1))     # rows stay aligned
    with pytest.raises(DataError) as e:
        load_data(str(tmp_path / "d.npz"), {"feature": [4]})
    assert "no array named 'feature'" in str(e.value) and "features" in e.value.hint


class Evil:
    """A class instance: unpickling it would run code, so weights_only refuses it."""


def test_pt_user_data_with_test_file(tmp_path):
    torch.save({"x": torch.randn(30, 2, 3), "label": torch.arange(30) % 2}, tmp_path / "train.pt")
    torch.save({"x": torch.randn(8, 2, 3), "label": torch.arange(8) % 2}, tmp_path / "test.pt")
    b = load_data({"dataset": str(tmp_path / "train.pt"), "test": str(tmp_path / "test.pt")}, {"x": [6]})
    assert (len(b.train), len(b.test)) == (30, 8) and b.train.inputs[0].shape == (30, 6)
    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(DataError, match="cannot read data file"):
        load_data(str(tmp_path / "evil.pt"), {"x": [6]})


def test_csv_user_data(tmp_path):
    rows = ["a,b,kind,price"] + [f"{i},{i * 2},{i % 3},{i * 1.5}" for i in range(40)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    b = load_data({"dataset": str(tmp_path / "d.csv"), "target": ["kind", "price"]}, {"x": [2]})
    assert b.train.inputs[0].shape == (32, 2)
    assert b.train.targets["kind"].dtype == torch.long and b.train.targets["price"].shape == (32, 1)
    r = load_data({"dataset": str(tmp_path / "d.csv"), "target": "kind", "task": "regression",
                   "normalize": "standard"}, {"x": [3]})     # price is now a feature
    assert r.train.targets["kind"].dtype == torch.float32 and abs(float(r.train.inputs[0].mean())) < 1e-5
    with pytest.raises(DataError) as e:
        load_data({"dataset": str(tmp_path / "d.csv"), "target": "prices"}, {"x": [2]})
    assert "did you mean 'price'" in e.value.hint
    with pytest.raises(DataError, match="needs `target:`"):
        load_data(str(tmp_path / "d.csv"), {"x": [2]})


def test_missing_user_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(str(tmp_path / "nope.npz"), {"x": [2]})


# --- batching ---------------------------------------------------------------------------

def numbered(n):
    return TensorData([torch.arange(n).float().unsqueeze(1)], {"label": torch.arange(n)})


def test_batches_cover_every_sample_once():
    data = numbered(103)
    seen = []
    for inputs, targets in data.batches(10, shuffle=True, generator=torch.Generator().manual_seed(0)):
        assert torch.equal(inputs[0][:, 0].long(), targets["label"])     # inputs and targets stay paired
        seen += targets["label"].tolist()
    assert sorted(seen) == list(range(103)) and seen != list(range(103))
    assert [len(t["label"]) for _, t in data.batches(10, shuffle=False)] == [10] * 10 + [3]
    assert [len(t["label"]) for _, t in data.batches(10, shuffle=False, drop_last=True)] == [10] * 10
    assert data.num_batches(10) == 11 and data.num_batches(10, drop_last=True) == 10


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])   # no wall-clock checks
@given(n=st.integers(1, 60), batch=st.integers(1, 9), world=st.integers(1, 4), seed=st.integers(0, 5))
def test_ranks_share_the_data_once(n, batch, world, seed):
    data = numbered(n)
    per_rank = [list(data.batches(batch, shuffle=True, generator=torch.Generator().manual_seed(seed),
                                  rank=r, world_size=world)) for r in range(world)]
    assert len({len(b) for b in per_rank}) == 1 == len({data.num_batches(batch, world_size=world)} |
                                                          {len(per_rank[0])})
    seen = [i for batches in per_rank for _, t in batches for i in t["label"].tolist()]
    assert sorted(seen) == list(range(n))
    assert all(len(t["label"]) <= -(-batch // world) for batches in per_rank for _, t in batches)
    assert data.num_batches(batch, world_size=world) == -(-n // batch)     # the global batch is `batch`


def test_two_ranks_split_each_global_batch():
    data = numbered(8)
    r0 = [t["label"].tolist() for _, t in data.batches(4, shuffle=False, rank=0, world_size=2)]
    r1 = [t["label"].tolist() for _, t in data.batches(4, shuffle=False, rank=1, world_size=2)]
    assert r0 == [[0, 1], [4, 5]] and r1 == [[2, 3], [6, 7]]


def test_select_and_to():
    data = numbered(5)
    assert len(data.select(slice(1, 3))) == 2
    moved = data.to("cpu")
    assert torch.equal(moved.inputs[0], data.inputs[0]) and len(moved) == 5
    with pytest.raises(DataError) as e:
        TensorData([torch.zeros(3)], {"y": torch.zeros(4)})
    assert e.value.message == "inputs and targets have different numbers of samples: [3, 4]"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_batches_on_cuda():
    data = numbered(50).to("cuda")
    seen = []
    for inputs, targets in data.batches(8, shuffle=True, generator=torch.Generator().manual_seed(0),
                                        rank=1, world_size=2):
        assert inputs[0].is_cuda and torch.equal(inputs[0][:, 0].long(), targets["label"])
        seen += targets["label"].tolist()
    assert len(seen) == len(set(seen)) and 0 < len(seen) < 50
