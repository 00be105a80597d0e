"""specbuild.training.checkpoint: atomic writes, weights-only loads, RNG state."""
import collections
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from specbuild.training import checkpoint
from specbuild.training.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from specbuild.errors import SpecError

SPEC = {"specbuild": 1, "name": "tiny", "inputs": {"x": [3]}, "layers": [{"type": "Linear", "out_features": 2}]}


class Arbitrary:
    """Any class instance: a weights-only load must refuse it."""


def trained():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(2):
        opt.zero_grad()
        model(torch.randn(8, 3)).sum().backward()
        opt.step()
        sched.step()
    return model, opt, sched


def payload(**extra):
    model, opt, sched = trained()
    return {"spec": SPEC, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "rng": rng_state(), "epoch": 2, "step": 2,
            "metrics": {"accuracy": 0.5}, **extra}


def test_round_trip_restores_model_optimizer_and_scheduler(tmp_path):
    model, opt, sched = trained()
    path = tmp_path / "runs" / "last.pt"
    save_checkpoint(path, {"spec": SPEC, "model": model.state_dict(), "optimizer": opt.state_dict(),
                           "scheduler": sched.state_dict(), "epoch": 2, "step": 2,
                           "metrics": {"accuracy": np.float64(0.75)}})      # numpy scalars become floats
    data = load_checkpoint(path)
    assert data["spec"] == SPEC and data["epoch"] == 2 and data["metrics"] == {"accuracy": 0.75}
    assert data["format"] == "specbuild-checkpoint"
    fresh = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
    fresh.load_state_dict(data["model"])
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    opt2 = torch.optim.Adam(fresh.parameters(), lr=0.01)
    opt2.load_state_dict(data["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=1, gamma=0.5)
    sched2.load_state_dict(data["scheduler"])
    assert sched2.get_last_lr() == sched.get_last_lr()


def test_rng_state_survives_a_weights_only_round_trip(tmp_path):
    torch.manual_seed(1), random.seed(1), np.random.seed(1)
    np.random.normal()                        # leaves a cached gaussian in numpy's state
    save_checkpoint(tmp_path / "c.pt", {"spec": SPEC, "model": {}, "rng": rng_state()})
    first = (torch.rand(3), random.random(), np.random.normal(), np.random.rand())
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    again = (torch.rand(3), random.random(), np.random.normal(), np.random.rand())
    assert torch.equal(first[0], again[0]) and first[1:] == again[1:]


def test_failed_replace_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, payload(epoch=1))
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, payload(epoch=2))
    assert path.read_bytes() == before and load_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]        # the temp file is gone too


def test_writes_are_synced(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    save_checkpoint(tmp_path / "c.pt", {"spec": SPEC, "model": {}})
    assert len(synced) >= 2                           # the file, then the folder


def test_stray_temp_files_are_ignored_then_cleaned(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, payload(epoch=1))
    stray = tmp_path / ".last.pt.tmp-999999999-abc"   # a crashed writer's leftovers (no such pid)
    stray.write_bytes(b"half a checkpoint")
    live = tmp_path / f".last.pt.tmp-{os.getppid()}-xyz"   # a live process's: not ours to delete
    live.write_bytes(b"")
    assert load_checkpoint(path)["epoch"] == 1
    save_checkpoint(path, payload(epoch=2))
    assert not stray.exists() and live.exists() and load_checkpoint(path)["epoch"] == 2


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, payload())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint") as e:
        load_checkpoint(path)
    assert isinstance(e.value, SpecError) and "truncated" in e.value.hint


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"spec": SPEC, "model": Arbitrary()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="pickled Python objects .*Arbitrary.*refused"):
        load_checkpoint(tmp_path / "evil.pt")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path / "module.pt")


def test_foreign_and_missing_files(tmp_path):
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="not a specbuild checkpoint") as e:
        load_checkpoint(tmp_path / "bare.pt")
    assert "bare state_dict" in e.value.hint
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "notes.txt")
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="folder"):
        load_checkpoint(tmp_path)


def test_save_refuses_what_a_weights_only_load_could_not_read(tmp_path):
    with pytest.raises(CheckpointError, match="module"):
        save_checkpoint(tmp_path / "c.pt", {"spec": SPEC, "model": torch.nn.Linear(2, 2)})
    with pytest.raises(CheckpointError, match=r"checkpoint\['metrics'\]\['fn'\]"):
        save_checkpoint(tmp_path / "c.pt", {"spec": SPEC, "model": {}, "metrics": {"fn": lambda: 0}})
    with pytest.raises(CheckpointError, match="'spec' and 'model'"):
        save_checkpoint(tmp_path / "c.pt", {"model": {}})
    assert not (tmp_path / "c.pt").exists()


def test_spec_mapping_subclasses_are_stored_as_dicts(tmp_path):
    class Located(dict):              # e.g. a loader's mapping that remembers line numbers
        pass
    spec = Located(SPEC)
    save_checkpoint(tmp_path / "c.pt", {"spec": spec, "model": collections.OrderedDict(w=torch.ones(2))})
    data = load_checkpoint(tmp_path / "c.pt")
    assert type(data["spec"]) is dict and data["spec"] == SPEC


def test_module_exports():
    assert issubclass(checkpoint.CheckpointError, SpecError)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_rng_state_round_trip(tmp_path):
    torch.cuda.manual_seed_all(5)
    torch.rand(1, device="cuda")                    # CUDA in use: its generator is captured
    state = rng_state()
    assert "cuda" in state
    save_checkpoint(tmp_path / "c.pt", {"spec": SPEC, "model": {}, "rng": state})
    first = torch.rand(4, device="cuda")
    set_rng_state(load_checkpoint(tmp_path / "c.pt", map_location="cuda")["rng"])
    assert torch.equal(first, torch.rand(4, device="cuda"))


def test_a_run_folders_first_write_removes_temp_files_of_killed_saves(tmp_path):
    from specbuild.training.run_folder import RunFolder
    # a pid no process can have (above the kernel's pid_max): a pid of an exited child could be reused
    dead = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    stray = tmp_path / f".best.pt.tmp-{dead}-abcd"
    live = tmp_path / ".last.pt.tmp-1-efgh"                   # pid 1 is alive: its writer may still be saving
    stray.write_bytes(b"half a checkpoint")
    live.write_bytes(b"being written")
    folder = RunFolder(tmp_path)
    assert stray.exists()                                     # opening it writes nothing
    folder.write_spec({"name": "m"})
    assert not stray.exists() and live.exists()
