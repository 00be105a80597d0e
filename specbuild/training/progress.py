"""Progress of a training run: a live bar on a terminal, one line per epoch anywhere.

On a terminal the bar shows the batch count and the running loss, redrawn at
most every 0.2 s; when the output is not a terminal (CI, a log file) only the
per-epoch lines are printed.
"""
from __future__ import annotations

import time


class Progress:
    def __init__(self, stream, *, live: bool | None = None, quiet: bool = False):
        self.stream = stream
        self.quiet = quiet
        self.live = (stream.isatty() if hasattr(stream, "isatty") else False) if live is None else live
        self._last = 0.0
        self._total = 0
        self._epoch = ""

    def epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        self._epoch, self._total = f"epoch {epoch}/{epochs}", batches

    def step(self, done: int, loss) -> None:
        if not self.live or self.quiet:
            return
        now = time.monotonic()
        if now - self._last < 0.2 and done < self._total:
            return
        self._last = now
        width = 24
        filled = int(width * done / max(self._total, 1))
        self.stream.write(f"\r{self._epoch} [{'#' * filled}{'.' * (width - filled)}] {done}/{self._total} "
                          f"loss {float(loss):.4f}")
        self.stream.flush()

    def epoch_done(self, epoch: int, epochs: int, row: dict) -> None:
        if self.quiet:
            return
        shown = ", ".join(f"{k} {v:.4f}" for k, v in row.items()
                          if isinstance(v, float) and k not in ("lr", "seconds", "train_seconds"))
        prefix = "\r" if self.live else ""
        self.stream.write(f"{prefix}epoch {epoch}/{epochs}: {shown} ({row.get('seconds', 0):.1f} s)\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        if not self.quiet:
            self.stream.write(text + "\n")
