"""A run folder: everything one training run leaves behind.

    runs/cnn-20261127-101500/
      spec.yaml        the spec as it ran (overrides applied, variables substituted)
      metrics.jsonl    one JSON object per epoch
      metrics.csv      the same as a table
      last.pt          the last complete epoch's checkpoint (spec + weights + training state)
      best.pt          the checkpoint of the best epoch by the monitored metric
      curves.png       training curves
      samples/         GAN sample grids, one per epoch

Only one process writes it (rank 0 under torchrun).  Checkpoints are written
atomically, so a run killed at any moment leaves its previous checkpoint whole.
"""
from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path

import yaml

from .checkpoint import remove_stray_temps, save_checkpoint


class RunFolder:
    def __init__(self, path, *, writer: bool = True):
        self.path = Path(path)
        self.writer = writer
        if writer:
            self.path.mkdir(parents=True, exist_ok=True)
            remove_stray_temps(self.path)     # left by a run of this folder that was killed mid-save

    @classmethod
    def create(cls, out: str | None, spec_name: str, *, writer: bool = True) -> "RunFolder":
        if out is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            out = os.path.join("runs", f"{spec_name}-{stamp}")
            suffix = 1
            while os.path.exists(out):
                out = os.path.join("runs", f"{spec_name}-{stamp}-{suffix}")
                suffix += 1
        return cls(out, writer=writer)

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
            _atomic_text(self.path / "spec.yaml", yaml.safe_dump(data, sort_keys=False))

    def write_history(self, history: list[dict]) -> None:
        """Rewrite the metrics files from the whole history (a resumed run continues them)."""
        if not self.writer:
            return
        _atomic_text(self.path / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
        table = io.StringIO(newline="")
        writer = csv.DictWriter(table, fieldnames=list(dict.fromkeys(key for row in history for key in row)))
        writer.writeheader()
        writer.writerows(history)
        _atomic_text(self.path / "metrics.csv", table.getvalue())

    def save(self, payload: dict, *, best: bool = False, name: str | None = None) -> None:
        if not self.writer:
            return
        save_checkpoint(self.path / (name or "last.pt"), payload)
        if best:
            save_checkpoint(self.best, payload)

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


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
