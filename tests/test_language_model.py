"""Language models: the `token-stream` data set (token ids [T] -> the next token at each
position), a classification loss on per-position scores [N, T, V] with labels [N, T], and
metrics that count every position as a sample.  A bigram spec trains through the CLI."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cli_runner import read_history, run_cli, write_text
from specbuild.data.load import DataError, load_data
from specbuild.spec.train_config import LossConfig
from specbuild.training.evaluate import evaluate_model
from specbuild.training.metrics import compute_metrics
from specbuild.training.objectives import class_layout, make_objective
from specbuild.data.tensors import TensorData

IDS = {"idx": {"shape": [32], "dtype": "long"}}
BIGRAM = """\
specbuild: 1
name: bigram
inputs:
  idx: {shape: [32], dtype: long}
layers:
  - {name: embed, type: Embedding, num_embeddings: 64, embedding_dim: 32}
  - {name: head, type: Linear, out_features: 64}
train:
  task: classification
  data: {dataset: token-stream, samples: 1600, batch_size: 16}
  optimizer: {type: Adam, lr: 0.01}
  epochs: 2
"""


# --- the data set ------------------------------------------------------------------------

def test_token_stream_gives_blocks_and_their_next_tokens():
    b = load_data({"dataset": "token-stream", "samples": 200, "vocab_size": 50}, IDS)
    x, y = b.train.inputs[0], b.train.targets["next"]
    assert x.dtype == y.dtype == torch.long
    assert x.shape == y.shape == (200, 32) and len(b.test) == 50
    assert 0 <= int(x.min()) and int(x.max()) < 50 and int(y.max()) < 50
    # the target is the input shifted by one: tokens[i+1:i+T+1] of the stream tokens[i:i+T] comes from
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal(b.test.targets["next"][:, :-1], b.test.inputs[0][:, 1:])
    assert b.info["num_classes"] == b.info["vocab_size"] == 50 and b.info["block_size"] == 32
    assert b.info["targets"] == {"next": {"kind": "class", "num_classes": 50}}
    assert b.info["task_hint"] == "classification"


def test_token_stream_defaults_and_block_size_from_the_input():
    b = load_data("token-stream", {"idx": {"shape": [8], "dtype": "long"}}, limit=20)
    assert b.train.inputs[0].shape == (20, 8) and b.info["vocab_size"] == 64
    assert b.info["sizes"] == {"train": 20, "test": 20}
    full = load_data("token-stream", {"idx": {"shape": [8], "dtype": "long"}})
    assert (len(full.train), len(full.test)) == (4000, 1000)


def test_token_stream_is_deterministic_for_a_seed():
    config = {"dataset": "token-stream", "samples": 100, "seed": 5}
    a, b = load_data(config, IDS), load_data(config, IDS)
    for one, two in ((a.train, b.train), (a.test, b.test)):
        assert torch.equal(one.inputs[0], two.inputs[0]) and torch.equal(one.targets["next"], two.targets["next"])
    other = load_data({**config, "seed": 6}, IDS)
    assert not torch.equal(a.train.inputs[0], other.train.inputs[0])


def test_token_stream_is_predictable_from_the_current_token():
    """Peaked transitions: the most frequent successor of each token is the next token far more
    often than chance (1/64), so a model's cross-entropy can fall well below log(64)."""
    b = load_data({"dataset": "token-stream", "samples": 2000}, IDS)
    x, y = b.train.inputs[0].reshape(-1), b.train.targets["next"].reshape(-1)
    counts = torch.zeros(64, 64).index_put_((x, y), torch.ones(len(x)), accumulate=True)
    top_share = float(counts.max(1).values.sum() / counts.sum())
    assert top_share > 0.4
    # the conditional entropy H(next | current) of the sample, in nats: far below uniform's log(64)
    p = counts / counts.sum(1, keepdim=True).clamp(min=1)
    entropy = float(-(counts * torch.log(p.clamp(min=1e-12))).sum() / counts.sum())
    assert entropy < 0.5 * math.log(64)


@pytest.mark.parametrize("config,inputs,message", [
    ({"vocab_size": 1}, IDS, "train.data.vocab_size: vocab_size must be an integer >= 2, not 1"),
    ({}, {"x": [4, 8]}, "inputs.x: data set 'token-stream' gives blocks of token ids [T] but the spec's input x is "
                        "[4, 8] — declare it as {shape: [T], dtype: long}, e.g. [32]"),
    ({"num_embeddings": 10}, IDS, "train.data.num_embeddings: option 'num_embeddings' does not apply to data set "
                                  "'token-stream' — its options are: samples, seed, vocab_size"),
])
def test_token_stream_refuses_what_it_cannot_give(config, inputs, message):
    with pytest.raises(DataError) as error:
        load_data({"dataset": "token-stream", "samples": 10, **config}, inputs)
    assert str(error.value) == message


# --- the loss and metrics on per-position scores ---------------------------------------------

def objective(loss="CrossEntropyLoss", kind="classification", **args):
    return make_objective(LossConfig(loss, args=args), "head", "next", kind)


@pytest.mark.parametrize("loss", ["CrossEntropyLoss", "NLLLoss"])
@pytest.mark.parametrize("positions,classes", [(5, 7), (6, 6)])     # 6, 6: both layouts fit; classes last wins
def test_loss_on_scores_per_position_is_nanogpts_flattened_loss(loss, positions, classes):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, positions, classes, generator=g)
    labels = torch.randint(0, classes, (4, positions), generator=g)
    scores = logits.log_softmax(-1) if loss == "NLLLoss" else logits
    want = F.cross_entropy(logits.view(-1, classes), labels.view(-1))
    torch.testing.assert_close(objective(loss)(scores, labels), want)
    # the loss's own arguments still apply
    smoothed = objective(loss, label_smoothing=0.1)(logits, labels) if loss == "CrossEntropyLoss" else None
    if smoothed is not None:
        torch.testing.assert_close(smoothed, F.cross_entropy(logits.view(-1, classes), labels.view(-1),
                                                             label_smoothing=0.1))


def test_torchs_own_layout_and_plain_classifiers_are_unchanged():
    g = torch.Generator().manual_seed(1)
    logits, labels = torch.randn(4, 7, 5, generator=g), torch.randint(0, 7, (4, 5), generator=g)
    torch.testing.assert_close(objective()(logits, labels), F.cross_entropy(logits, labels))     # [N, C, T]
    plain, ids = torch.randn(6, 3, generator=g), torch.randint(0, 3, (6, 1), generator=g)
    torch.testing.assert_close(objective()(plain, ids), F.cross_entropy(plain, ids[:, 0]))
    assert [class_layout(*shapes) for shapes in [((4, 5, 7), (4, 5)), ((4, 7, 5), (4, 5)), ((4, 6, 6), (4, 6)),
                                                 ((6, 3), (6,)), ((6, 3), (6, 1)), ((4, 5, 7), (4, 6)),
                                                 ((6, 3), (6, 2))]] == \
        ["last", "second", "last", "plain", "plain", None, None]


class FixedScores(torch.nn.Module):
    """A model whose output for sample i is a fixed tensor's row i (its input is i)."""

    def __init__(self, scores):
        super().__init__()
        self.register_buffer("scores", scores)

    def forward(self, i):
        return {"head": self.scores[i]}


def test_per_position_accuracy_and_loss_by_hand():
    pred = torch.tensor([[0, 1, 2], [3, 3, 0]])
    labels = torch.tensor([[0, 1, 3], [3, 0, 0]])          # right at 4 of the 6 positions
    logits = 3.0 * F.one_hot(pred, 4).float()
    data = TensorData([torch.arange(2)], {"next": labels})
    row = evaluate_model(FixedScores(logits), data, [objective()], ["accuracy", "precision", "roc_auc"])
    assert row["val_accuracy"] == pytest.approx(4 / 6)
    # precision by hand over the positions: predicted 0 twice (right both), 1 once (right), 2 once (wrong),
    # 3 twice (right once): (1 + 1 + 0 + 0.5) / 4
    assert row["val_precision"] == pytest.approx(2.5 / 4)
    right, wrong = -math.log(math.exp(3) / (math.exp(3) + 3)), -math.log(1 / (math.exp(3) + 3))
    assert row["val_loss"] == pytest.approx((4 * right + 2 * wrong) / 6, rel=1e-6)
    assert 0.5 < row["val_roc_auc"] <= 1.0


def test_binary_outputs_per_position_are_scored_per_position():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 1.0, -0.2]])
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])    # right at 4 of 6 (cut at logit 0)
    data = TensorData([torch.arange(2)], {"next": labels})
    row = evaluate_model(FixedScores(logits), data, [objective("BCEWithLogitsLoss", "binary")], ["accuracy"])
    assert row["val_accuracy"] == pytest.approx(4 / 6)
    scores, flat = objective("BCEWithLogitsLoss", "binary").per_sample(logits, labels)
    assert scores.shape == (6, 1) and flat.shape == (6,)
    assert compute_metrics(["accuracy"], y_true=flat, scores=scores)["accuracy"] == pytest.approx(4 / 6)


# --- through the CLI ---------------------------------------------------------------------------

def test_a_bigram_model_learns_the_stream(tmp_path, capsys):
    spec = write_text(tmp_path, BIGRAM)
    rc, out, err = run_cli(capsys, "train", spec, "--out", tmp_path / "run", "--device", "cpu")
    assert rc == 0, err
    history = read_history(tmp_path / "run")
    assert len(history) == 2                           # 1,600 samples / 16 = 100 steps an epoch: 200 steps
    chance = math.log(64)                              # 4.16: a uniform guess over the 64 tokens
    # the best a model of the current token alone can do is about 1.1 nats
    assert history[-1]["val_loss"] < 0.5 * chance, history
    assert history[-1]["train_loss"] < history[0]["train_loss"] < chance
    assert history[-1]["val_accuracy"] > 0.4           # per position; chance is 1/64


def test_labels_one_longer_than_the_positions_are_a_clear_error(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "shifted.npz"
    np.savez(data, idx=rng.integers(0, 64, (40, 32)), next=rng.integers(0, 64, (40, 33)))
    spec = write_text(tmp_path, BIGRAM.replace("{dataset: token-stream, samples: 1600, batch_size: 16}",
                                               f"{{dataset: {data}, batch_size: 16}}"))
    rc, _, err = run_cli(capsys, "train", spec, "--out", tmp_path / "run", "--device", "cpu")
    assert rc == 1
    assert err.strip() == (
        "train.data: CrossEntropyLoss reads 'head', whose class scores are [32, 64] per sample (64 classes at each "
        "of [32] positions), but the data's 'next' labels are [33] per sample — give labels of shape [32] (a class "
        "id per position), or make 'head' give scores [33, C]")
    assert not (tmp_path / "run").exists()


def test_labels_past_the_vocabulary_are_a_clear_error(tmp_path, capsys):
    """A stream over 70 tokens for a head over 64: refused before training, counting classes in the last dim."""
    spec = write_text(tmp_path, BIGRAM.replace("samples: 1600", "samples: 64, vocab_size: 70")
                      .replace("num_embeddings: 64", "num_embeddings: 70"))
    rc, _, err = run_cli(capsys, "train", spec, "--out", tmp_path / "run", "--device", "cpu")
    assert rc == 1
    match = re.fullmatch(r"train\.data: the data's 'next' labels run from 0 to (6[4-9]), but 'head' gives 64 class "
                         r"scores \(labels 0 to 63\) — give 'head' (\d+) outputs, or use data whose labels fit", err.strip())
    assert match and int(match[2]) == int(match[1]) + 1, err
    assert not (tmp_path / "run").exists()


def test_predict_gives_a_class_at_every_position(tmp_path, capsys):
    """A language model's scores are [T, V] per sample: predict names the next token at each position
    (the argmax over the vocabulary), not one argmax over all T x V numbers."""
    import json
    import specbuild
    spec = write_text(tmp_path, BIGRAM.replace("samples: 1600", "samples: 64").replace("epochs: 2", "epochs: 1"))
    assert run_cli(capsys, "train", spec, "--out", tmp_path / "run", "--device", "cpu")[0] == 0
    ids = np.random.default_rng(3).integers(0, 64, (2, 32))
    np.savez(tmp_path / "ids.npz", idx=ids)
    rc, out, err = run_cli(capsys, "predict", tmp_path / "run" / "last.pt", tmp_path / "ids.npz", "--format", "json")
    assert rc == 0, err
    rows = json.loads(out)
    model = specbuild.build_model(spec, weights=tmp_path / "run" / "last.pt").eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(ids)).argmax(-1).tolist()
    assert [row["class"] for row in rows] == expected and all(len(c) == 32 for c in expected)
    assert set(rows[0]) == {"source", "class"}                  # no 2,048 score columns
    rc, out, _ = run_cli(capsys, "predict", tmp_path / "run" / "last.pt", tmp_path / "ids.npz")
    assert out.splitlines()[1] == "ids.npz[0]," + " ".join(map(str, expected[0]))
