"""The shipped embedding spec learns its own data set.

specs/embedding.yaml is the guide's Embedding(1000, 64) -> flatten -> Linear(640, 10) and
trains on the synthetic `tokens` set.  When the label was only the first token's id mod 10,
each of the 1,000 ids was seen about 4 times in first place and the spec reached 29% held-out
accuracy after its 5 epochs.  Now the label's class (id mod 10) repeats in about 80% of the
later tokens, so every id is seen about 40 times: 96.5% after 5 epochs, 80% after 2.

The run here is the spec's own settings (data, batch size, optimizer, seed) for 2 of its 5
epochs: 250 optimizer steps on 4,000 samples, a few seconds on a CPU.
"""
import json
from pathlib import Path

import torch

from specbuild.cli.main import main
from specbuild.data.load import load_data
from specbuild.data.synthetic import TOKEN_REPEAT
from specbuild.spec.loader import load_spec

SPEC = Path(__file__).resolve().parent.parent / "specs" / "embedding.yaml"


def test_tokens_repeat_the_label_class():
    bundle = load_data("tokens", {"x": {"shape": [10], "dtype": "long"}})
    x, label = bundle.train.inputs[0], bundle.train.targets["label"]
    assert x.shape == (4000, 10) and len(bundle.test) == 1000 and int(x.max()) < 1000
    assert torch.equal(label, x[:, 0] % 10)                      # the label: the first token's class
    shared = (x[:, 1:] % 10 == label[:, None]).float().mean()    # 0.8, plus a tenth of the other 0.2
    assert abs(float(shared) - (TOKEN_REPEAT + (1 - TOKEN_REPEAT) / 10)) < 0.01
    assert torch.bincount(x.reshape(-1), minlength=1000).min() >= 15   # every id seen many times


def test_the_embedding_spec_learns_its_own_data(tmp_path, capsys):
    train = load_spec(SPEC).data["train"]
    assert train["data"]["dataset"] == "tokens" and train["epochs"] == 5
    code = main(["train", str(SPEC), "--epochs", "2", "--out", str(tmp_path), "--no-download"])
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    assert rows[1]["val_accuracy"] >= 0.6          # chance is 0.1; measured 0.804
