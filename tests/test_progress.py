"""The progress display: a live bar on a terminal, only epoch lines elsewhere."""
import io

from specbuild.training.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


ROW = {"epoch": 1, "train_loss": 0.5, "val_loss": 0.25, "val_accuracy": 0.9, "lr": 0.001, "seconds": 1.5}


def test_a_terminal_gets_a_live_bar_with_the_loss():
    stream = Terminal()
    progress = Progress(stream)
    progress.epoch_start(1, 3, 10)
    for step in range(1, 11):
        progress.step(step, 0.1234)
    progress.epoch_done(1, 3, ROW)
    text = stream.getvalue()
    assert "\repoch 1/3 [" in text and "10/10 loss 0.1234" in text
    assert "epoch 1/3: train_loss 0.5000, val_loss 0.2500, val_accuracy 0.9000 (1.5 s)\n" in text


def test_a_log_file_gets_only_the_epoch_lines():
    stream = io.StringIO()             # not a terminal, like CI or `> log.txt`
    progress = Progress(stream)
    progress.epoch_start(1, 3, 10)
    for step in range(1, 11):
        progress.step(step, 0.1234)
    progress.epoch_done(1, 3, ROW)
    assert stream.getvalue() == "epoch 1/3: train_loss 0.5000, val_loss 0.2500, val_accuracy 0.9000 (1.5 s)\n"


def test_quiet_prints_nothing():
    stream = Terminal()
    progress = Progress(stream, quiet=True)
    progress.epoch_start(1, 1, 2)
    progress.step(1, 0.5)
    progress.epoch_done(1, 1, ROW)
    progress.note("early stopping")
    assert stream.getvalue() == ""
