"""A run folder: everything one training run leaves behind.

    runs/cnn-20261127-101500/
      spec.yaml        the spec as it ran (overrides applied, variables substituted); a first
                       comment names the weights file of --init-from
      metrics.jsonl    one JSON object per epoch
      metrics.csv      the same as a table
      last.pt          the latest checkpoint (spec + weights + training state): the last complete
                       epoch, or the exact step where Ctrl-C paused the run
      best.pt          the checkpoint of the best epoch by the monitored metric
      curves.png       training curves
      samples/         GAN sample grids, one per epoch
      tensorboard/     event files, with train.log: [tensorboard] (tensorboard.py)
      environment.json where the run ran; evaluation.json: how it ended, class figures (run_facts.py)
      report.html      all of it on one self-contained page (specbuild/report/)

Only one process writes it (rank 0 under torchrun).  The folder is made by the
first write, once training starts, so a run that fails to start leaves nothing.
Checkpoints are written atomically, so a run killed at any moment leaves its
previous checkpoint whole; last.pt is written before best.pt, and a resume repairs
a best.pt that a kill left behind the best epoch last.pt records.
"""
from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path


from ..atomic import write_text_atomically
from ..errors import SpecError
from ..spec.spec_yaml import spec_yaml
from .checkpoint import CheckpointError, copy_checkpoint, load_checkpoint, remove_stray_temps, save_checkpoint

RUN_FILES = ("last.pt", "metrics.jsonl")     # a folder holding one of these holds a run


class RunFolder:
    def __init__(self, path, *, writer: bool = True):
        self.path = Path(path)
        self.writer = writer
        self._made = False
        self.init_from: str | None = None     # the weights file the run started from (--init-from)

    @classmethod
    def create(cls, out: str | None, spec_name: str, *, writer: bool = True, resuming=None) -> "RunFolder":
        """The run folder: `out`, or a new runs/<name>-<time>.  A new run refuses a folder that
        holds another run; a resumed one (`resuming` is its checkpoint's folder) refuses to
        write into a different folder that does."""
        if out is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            out = os.path.join("runs", f"{spec_name}-{stamp}")
            suffix = 1
            while os.path.exists(out):
                out = os.path.join("runs", f"{spec_name}-{stamp}-{suffix}")
                suffix += 1
        folder = cls(out, writer=writer)
        if writer:
            folder._check_writable(resuming)
        return folder

    def _check_writable(self, resuming) -> None:
        path = self.path
        if path.exists() and not path.is_dir():
            raise SpecError(f"--out {path} is a file, not a folder", hint="give a new folder for the run")
        ancestor = next(p for p in (path, *path.parents) if p.exists())
        if not ancestor.is_dir():
            raise SpecError(f"cannot make the run folder {path}: {ancestor} is a file",
                            hint="give --out a folder you can write to")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise SpecError(f"cannot make the run folder {path}: {ancestor} is not writable",
                            hint="give --out a folder you can write to")
        same = resuming is not None and os.path.realpath(resuming) == os.path.realpath(path)
        held = [name for name in RUN_FILES if (path / name).exists()]
        if held and not same:
            how = (f"resume that run with --resume {path}, or give another --out" if resuming is None
                   else f"drop --out to continue in {resuming}, or give an empty folder")
            raise SpecError(f"--out {path} already holds a run ({held[0]}); writing there would overwrite it",
                            hint=how)

    def _make(self) -> None:
        if not self._made:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise SpecError(f"cannot make the run folder {self.path}: {error.strerror}",
                                hint="give --out a folder you can write to") from None
            remove_stray_temps(self.path)     # left by a run of this folder that was killed mid-save
            self._made = True

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    @property
    def best(self) -> Path:
        return self.path / "best.pt"

    def kept(self) -> str:
        """What a stopped run leaves to resume from, for its message."""
        if self.last.exists():
            return f"the last good checkpoint is {self.last}"
        return "no epoch finished, so no checkpoint was written"

    def write_spec(self, data: dict) -> None:
        if self.writer:
            self._make()
            where = " ".join(str(self.init_from).splitlines())     # a comment is one line
            head = f"# the weights started from {where} (--init-from)\n" if self.init_from else ""
            write_text_atomically(self.path / "spec.yaml", head + spec_yaml(data))

    def write_history(self, history: list[dict]) -> None:
        """Rewrite the metrics files from the whole history (a resumed run continues them)."""
        if not self.writer:
            return
        write_text_atomically(self.path / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
        table = io.StringIO(newline="")
        writer = csv.DictWriter(table, fieldnames=list(dict.fromkeys(key for row in history for key in row)))
        writer.writeheader()
        writer.writerows(history)
        write_text_atomically(self.path / "metrics.csv", table.getvalue())

    def save(self, payload: dict, *, best: bool = False, name: str | None = None) -> None:
        if not self.writer:
            return
        self._make()
        save_checkpoint(self.path / (name or "last.pt"), payload)
        if best:
            save_checkpoint(self.best, payload)

    def repair_best(self, state: dict, source) -> None:
        """A kill between writing last.pt and best.pt leaves best.pt behind the best epoch that
        last.pt records; last.pt (`state`, read from `source`) is then that epoch's checkpoint,
        and becomes best.pt again."""
        best = state.get("best")
        if not self.writer or not best or best.get("epoch") != state.get("epoch") or state.get("position") \
                or source is None or os.path.realpath(source) != os.path.realpath(self.last):
            return
        try:
            if load_checkpoint(self.best).get("epoch") == best["epoch"]:
                return
        except CheckpointError:
            pass                                   # missing or unreadable: rewrite it
        copy_checkpoint(self.last, self.best)

    def plot(self, history: list[dict]) -> None:
        if not self.writer or not history:
            return
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        epochs = [row["epoch"] for row in history]
        losses = [k for k in history[-1] if k.endswith("loss") and isinstance(history[-1][k], (int, float))]
        scores = [k for k in history[-1] if k.startswith("val_") and k not in losses
                  and isinstance(history[-1][k], (int, float))]
        panels = [p for p in (losses, scores) if p]
        fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
        for ax, keys, title in zip(axes[0], panels, ("loss", "metrics")):
            for key in keys:
                ax.plot(epochs, [row.get(key) for row in history], marker="o", label=key)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(title)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(self.path / "curves.png", dpi=100)
        plt.close(fig)
