"""The tune folder, and the database the study lives in.

    runs/fnn-tune-20261127-101500/
      tune.yaml       the spec as given (its tune: section included), so --resume needs no spec
      tune.json       the study's name, its storage (without a password), --trials, --timeout and
                      the options every trial's run gets
      study.db        the Optuna study (SQLite), unless --storage names another database
      trials/003/     one run folder per trial, with train.log (its epoch lines)
      trials.json, trials.csv, best.yaml, history.png, importances.png, report.html

The study is Optuna's: every trial's state, values and parameters are in the database, so a
killed search resumes from it, and several machines given one database share one study.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import yaml

from ..errors import SpecError

SETTINGS = "tune.json"
SPEC = "tune.yaml"
DATABASE = "study.db"
HEARTBEAT_S, GRACE_S = 60, 300     # a trial whose process sent no heartbeat for GRACE_S is failed


class TuneFolder:
    def __init__(self, path):
        self.path = Path(path)

    @classmethod
    def new(cls, out: str | None, spec_name: str) -> "TuneFolder":
        """`out`, or a new runs/<name>-tune-<time>; a folder already holding a study is refused."""
        if out is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            out, suffix = os.path.join("runs", f"{spec_name}-tune-{stamp}"), 1
            while os.path.exists(out):
                out, suffix = os.path.join("runs", f"{spec_name}-tune-{stamp}-{suffix}"), suffix + 1
        folder = cls(out)
        if folder.path.exists() and not folder.path.is_dir():
            raise SpecError(f"--out {out} is a file, not a folder", hint="give a new folder for the study")
        if (folder.path / SETTINGS).exists():
            raise SpecError(f"--out {out} already holds a study", hint=f"continue it with: specbuild tune --resume "
                                                                        f"{out}, or give another --out")
        try:
            (folder.path / "trials").mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise SpecError(f"cannot make the tune folder {out}: {error.strerror}",
                            hint="give --out a folder you can write to") from None
        return folder

    @classmethod
    def existing(cls, path: str) -> "TuneFolder":
        folder = cls(path)
        if not (folder.path / SETTINGS).is_file() or not (folder.path / SPEC).is_file():
            raise SpecError(f"--resume {path}: no study to continue here (it holds no {SETTINGS} and {SPEC})",
                            file=str(path), hint="give the tune folder that `specbuild tune` printed")
        return folder

    def trial_dir(self, number: int) -> Path:
        return self.path / self.run_name(number)

    @staticmethod
    def run_name(number: int) -> str:
        return f"trials/{number:03d}"

    def default_storage(self) -> str:
        return f"sqlite:///{(self.path / DATABASE).resolve()}"

    def write_spec(self, spec) -> None:
        """The spec as given: its own text when it has one, so lines in messages stay the file's."""
        text = spec.text if spec.text is not None else yaml.safe_dump(spec.data, sort_keys=False)
        (self.path / SPEC).write_text(text, encoding="utf-8")

    def write_settings(self, settings: dict) -> None:
        (self.path / SETTINGS).write_text(json.dumps(settings, indent=1) + "\n")

    def read_settings(self) -> dict:
        try:
            return json.loads((self.path / SETTINGS).read_text())
        except (OSError, ValueError) as error:
            raise SpecError(f"cannot read {self.path / SETTINGS}: {error}", file=str(self.path / SETTINGS),
                            hint="it is written by specbuild tune; start a new study if it was lost") from None


def redact(url: str) -> str:
    """The storage URL without its password, fit to be written into files and printed."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url
    return parsed.set(password=None).render_as_string(hide_password=False) if parsed.password else url


def open_storage(url: str):
    """Optuna's database storage at `url`, with heartbeats (a trial of a machine that died is
    failed after GRACE_S by whichever process of the study starts a trial next)."""
    import optuna
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)    # heartbeats are
            return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
    except ModuleNotFoundError as error:
        driver = {"psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient", "pymysql": "pymysql"}.get(
            error.name, error.name)
        raise SpecError(f"--storage {redact(url)}: its database driver {error.name} is not installed",
                        hint=f"pip install {driver}") from None
    except (ArgumentError, ValueError) as error:
        raise SpecError(f"--storage {redact(url)} is no database URL Optuna can open: {error}",
                        hint="e.g. sqlite:///study.db or postgresql://user:password@host/dbname") from None
    except (SQLAlchemyError, OSError) as error:
        first = str(error).splitlines()[0][:200]
        raise SpecError(f"cannot open the study's database {redact(url)}: {first}",
                        hint="check that the database server is up and the URL right") from None
