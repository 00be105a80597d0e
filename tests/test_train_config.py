"""The typed train configuration (specbuild.spec.train_config): a spec's `train:` section is
read once into dataclasses on the checked spec, and every bad value in it is still reported
at its own line and column."""
import pytest

from specbuild.errors import SpecError
from specbuild.spec.train_config import Component, DataConfig, LossConfig, TrainConfig, objective_names
from specbuild.spec.validate import check

from conftest import REPO

HEAD = "specbuild: 1\nname: m\ninputs:\n  x: [4]\nlayers:\n  - {name: fc, type: Linear, out_features: 3}\ntrain:\n"
GAN = ("specbuild: 1\nname: g\nnetworks:\n  generator:\n    inputs: {z: [2]}\n    layers:\n"
       "      - {type: Linear, out_features: 4}\n  critic:\n    inputs: {x: [4]}\n    layers:\n"
       "      - {type: Linear, out_features: 1}\ntrain:\n  task: gan\n  epochs: 1\n")


def test_a_shipped_spec_reads_as_attributes():
    config = check(str(REPO / "specs" / "cnn.yaml")).train
    assert config == TrainConfig(
        data=DataConfig({"dataset": "mnist"}, batch_size=32, shuffle=True),
        losses=(LossConfig("CrossEntropyLoss", on="fc2", path=("train", "loss")),),
        optimizer=Component("Adam", {"lr": 0.001}), epochs=5, task="classification",
        metrics=("accuracy", "precision", "recall", "f1", "roc_auc"))
    assert not config.is_gan


def test_the_gan_spec_names_its_networks_and_optimizer_arguments_become_tuples():
    config = check(str(REPO / "specs" / "gan.yaml")).train
    assert config.is_gan and (config.generator, config.discriminator, config.latent_dim) == \
        ("generator", "discriminator", 100)
    assert config.optimizer == Component("Adam", {"lr": 0.0002, "betas": (0.5, 0.999)})
    assert config.data == DataConfig({"dataset": "mnist", "normalize": "symmetric"}, 32, True)


def test_defaults_when_the_spec_has_no_train_section():
    config = check(HEAD.replace("train:\n", "")).train
    assert config == TrainConfig()
    assert (config.data.options, config.data.batch_size, config.epochs, config.seed, config.device) == \
        ({"dataset": "mnist-sample"}, 32, 5, 0, "auto")
    assert config.optimizer == Component("Adam", {"lr": 0.001}) and config.scheduler is None and config.losses == ()


def test_every_part_of_a_full_train_section():
    config = check(HEAD + "  task: classification\n  data: {dataset: iris, batch_size: 8, shuffle: false, limit: 40}\n"
                   "  loss: [{type: CrossEntropyLoss, on: fc, weight: 0.5, label_smoothing: 0.1}]\n"
                   "  optimizer: {type: SGD, lr: 0.1, momentum: 0.9}\n"
                   "  scheduler: {type: StepLR, step_size: 2, interval: step}\n  epochs: 7\n  seed: 3\n"
                   "  monitor: val_loss\n  early_stopping: {patience: 2, min_delta: 0.01}\n  clip_grad_norm: 1.5\n"
                   "  device: cpu\n").train
    assert config.data == DataConfig({"dataset": "iris", "limit": 40}, 8, False)
    assert config.losses == (LossConfig("CrossEntropyLoss", "fc", None, 0.5, {"label_smoothing": 0.1},
                                        ("train", "loss", 0)),)
    assert config.optimizer == Component("SGD", {"lr": 0.1, "momentum": 0.9})
    assert config.scheduler == Component("StepLR", {"step_size": 2}, "step")
    assert (config.task, config.epochs, config.seed, config.monitor, config.patience, config.min_delta,
            config.clip_grad_norm, config.device) == ("classification", 7, 3, "val_loss", 2, 0.01, 1.5, "cpu")


def test_overrides_reach_the_typed_config():
    config = check(HEAD + "  epochs: 2\n", overrides={"train.epochs": 9, "train.data.batch_size": 4}).train
    assert (config.epochs, config.data.batch_size) == (9, 4)


BAD = [
    (HEAD + "  epochs: -1\n", "<spec>:8:3: train.epochs: `epochs` must be an integer >= 0, not -1"),
    (HEAD + "  data: {dataset: iris, batch_size: 0}\n",
     "<spec>:8:25: train.data.batch_size: `batch_size` must be an integer >= 1, not 0"),
    (HEAD + "  optimizer: {type: Adam, lr: fast}\n",
     "<spec>:8:27: train.optimizer.lr (Adam): `lr` for Adam must be a number >= 0, not 'fast'"),
    (HEAD + "  scheduler: {type: StepLR, step_size: 2, interval: batch}\n",
     "<spec>:8:43: train.scheduler.interval (StepLR): `interval` must be one of 'epoch', 'step', not 'batch'"),
    (HEAD + "  loss: {type: CrossEntropyLoss, on: fcc}\n",
     "<spec>:8:34: train.loss.on (CrossEntropyLoss): loss `on:` names 'fcc', which is no layer — did you mean 'fc'?"),
    (HEAD + "  loss:\n    - {type: MSELoss, on: fc}\n    - {type: L1Loss, on: fx}\n",
     "<spec>:10:22: train.loss[1].on: loss `on:` names 'fx', which is no layer — did you mean 'x'?"),
    (HEAD + "  scheduler: {type: StepLR, step_size: 0}\n",         # torch would divide by it at a step
     "<spec>:8:29: train.scheduler.step_size (StepLR): `step_size` for StepLR must be an integer >= 1, not 0"),
    (HEAD + "  loss: {type: CrossEntropyLoss, label_smoothing: 2}\n",
     "<spec>:8:34: train.loss.label_smoothing (CrossEntropyLoss): `label_smoothing` for CrossEntropyLoss must be a "
     "number <= 1, not 2"),
    (HEAD + "  early_stopping: {patience: 0}\n",
     "<spec>:8:20: train.early_stopping.patience: `patience` must be an integer >= 1, not 0"),
    (HEAD + "  clip_grad_norm: big\n", "<spec>:8:3: train.clip_grad_norm: `clip_grad_norm` must be a number >= 0, not 'big'"),
    (HEAD + "  epoch: 3\n", "<spec>:8:3: train.epoch: unknown key 'epoch' — did you mean 'epochs'?"),
    (GAN + "  discriminator: critic\n  generator: gen\n", "<spec>:16:3: train.generator: train.generator names 'gen', which is no network "
     "— the spec's networks: generator, critic"),
    (GAN, "<spec>:12:1: train: a GAN needs a discriminator network, and the spec has no network 'discriminator' "
     "— name it with train.discriminator: or add it under networks:"),
]


@pytest.mark.parametrize("text, message", BAD, ids=[m.split(": ")[1] for _, m in BAD])
def test_each_bad_value_is_reported_at_its_line(text, message):
    with pytest.raises(SpecError) as caught:
        check(text)
    assert str(caught.value).splitlines()[0] == message


def test_a_gan_whose_networks_are_named_validates_and_reads_them():
    config = check(GAN + "  discriminator: critic\n").train
    assert config.is_gan and (config.generator, config.discriminator) == ("generator", "critic")


def test_checkpoint_every_is_a_positive_step_count():
    assert check(HEAD + "  checkpoint_every: 50\n").train.checkpoint_every == 50
    assert check(HEAD + "  epochs: 1\n").train.checkpoint_every is None
    with pytest.raises(SpecError) as caught:
        check(HEAD + "  checkpoint_every: 0\n")
    assert caught.value.problems[0].path == "train.checkpoint_every"


def test_each_loss_has_its_own_metric_names_when_several_read_one_node():
    assert objective_names([("fc2", None), ("fc3", "ink")]) == ["fc2", "fc3"]
    assert objective_names([("fc2", "label"), ("fc2", "ink"), ("fc3", None)]) == ["fc2_label", "fc2_ink", "fc3"]
    assert objective_names([("fc2", None), ("fc2", None)]) == ["fc2_1", "fc2_2"]
    assert objective_names([("fc2", "label"), ("fc2", "label"), ("fc2", "ink")]) == ["fc2_1", "fc2_2", "fc2_ink"]


TWO_LOSSES_ON_ONE_NODE = """\
specbuild: 1
name: two_heads_one_node
inputs: {x: [1, 28, 28]}
layers:
  - {type: flatten}
  - {name: fc1, type: Linear, out_features: 32}
  - {type: relu}
  - {name: fc2, type: Linear, out_features: 10}
outputs: fc2
train:
  data: {dataset: mnist-sample, limit: 64}
  loss:
    - {type: CrossEntropyLoss, on: fc2, target: label}
    - {type: MultiMarginLoss, on: fc2, target: label, weight: 0.5}
  optimizer: {type: Adam, lr: 0.001}
  metrics: [accuracy]
  epochs: 1
tune:
  metric: val_fc2_2_accuracy
  trials: 2
  space:
    train.optimizer.lr: {choice: [0.001, 0.01]}
"""


def test_two_losses_on_one_node_report_both_not_one_over_the_other(tmp_path):
    from specbuild.training.trainer import train
    checked = check(TWO_LOSSES_ON_ONE_NODE)                 # the tune section's metric is one of its columns
    assert not [w for w in checked.warnings if "metric" in w.message]
    row = train(TWO_LOSSES_ON_ONE_NODE, out=tmp_path / "run", progress=_quiet()).history[0]
    assert {"val_fc2_1_loss", "val_fc2_1_accuracy", "val_fc2_2_loss", "val_fc2_2_accuracy"} <= set(row)
    assert row["val_fc2_1_loss"] != row["val_fc2_2_loss"]    # cross-entropy and the margin loss, each its own
    assert row["val_fc2_1_accuracy"] == row["val_fc2_2_accuracy"]    # one node: one argmax
    bad = TWO_LOSSES_ON_ONE_NODE.replace("metric: val_fc2_2_accuracy", "metric: val_fc2_accuracy")
    with pytest.raises(SpecError, match="val_fc2_accuracy"):
        check(bad)


def _quiet():
    import io
    from specbuild.training.progress import Progress
    return Progress(io.StringIO())
