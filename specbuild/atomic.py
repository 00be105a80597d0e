"""Files written whole or not at all: a temporary file beside the target, filled, synced and
renamed over it in one step, so a reader (or a run killed mid-write) sees the old file or the
new one, never half of one.  Used for checkpoints, exported models and every text file a run
or a study writes (metrics, spec.yaml, report.html, trials.json)."""
from __future__ import annotations

import os
import tempfile

_UMASK = os.umask(0)
os.umask(_UMASK)               # read once: umask can only be read by setting it


def replace_atomically(path: str, write, *, tag: str = "", suffix: str = "") -> None:
    """write(temporary path) fills a file beside `path`, which then replaces `path`.  The temporary
    file is named `.NAME.tmp-TAG...` (a tag such as the process id lets a later run find what a
    killed one left) and is removed if writing fails."""
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.tmp-{tag}", suffix=suffix)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)     # mkstemp makes it private; the result is as readable as any file
        os.close(fd)
        write(tmp)
        with open(tmp, "rb+") as f:        # on the disk before the rename makes it the file
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_text_atomically(path, text: str) -> None:
    """`text`, as UTF-8, the whole of `path` (replace_atomically).  The temporary file is tagged
    with the process id, so a later run's remove_stray_temps clears one a killed writer left."""
    def fill(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    replace_atomically(os.fspath(path), fill, tag=f"{os.getpid()}-")
