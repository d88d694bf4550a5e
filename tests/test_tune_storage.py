"""A SQLite study on a local disk keeps a write-ahead log (tune_worker._write_ahead): in SQLite's default
rollback journal every `trial.report`, after every epoch, fsynced the database several times (17-19 ms a
report, more than an iris epoch). On a network file system, or one that cannot be told, the database is
left as it is. The log is folded back into study.db when `dlc tune` ends."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dlc.runtime import tune_worker
from dlc.runtime.tune_worker import filesystem, make_storage

from conftest import ROOT, edited_spec, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw 0 0
server:/export /tmp/shared nfs4 rw 0 0
/dev/vdb /tmp/my\\040disk xfs rw 0 0
"""


def test_the_file_system_is_that_of_the_longest_mount_point_above(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(MOUNTS)
    assert filesystem(Path("/home/u/study.db"), str(mounts)) == "ext4"
    assert filesystem(Path("/tmp/x/study.db"), str(mounts)) == "tmpfs"
    assert filesystem(Path("/tmp/shared/runs/study.db"), str(mounts)) == "nfs4"
    assert filesystem(Path("/tmp/sharedness/study.db"), str(mounts)) == "tmpfs"  # (not below /tmp/shared)
    assert filesystem(Path("/tmp/my disk/study.db"), str(mounts)) == "xfs"  # (a blank, written \040)
    assert filesystem(Path("/x/study.db"), str(tmp_path / "none")) is None  # (no /proc/mounts)


def _journal(db: Path) -> str:
    with sqlite3.connect(db) as c:
        return c.execute("PRAGMA journal_mode").fetchone()[0]


@pytest.mark.parametrize("fs,mode", [("ext4", "wal"), ("nfs4", "delete"), (None, "delete")])
def test_a_study_on_a_local_disk_keeps_a_write_ahead_log(tmp_path, monkeypatch, fs, mode):
    import optuna

    monkeypatch.setattr(tune_worker, "filesystem", lambda path: fs)
    db = tmp_path / "study.db"
    storage = make_storage(f"sqlite:///{db}")
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    trial.report(1.0, 1)
    with storage.engine.connect() as c:
        synchronous = c.exec_driver_sql("PRAGMA synchronous").scalar()
    assert _journal(db) == mode and synchronous == (1 if mode == "wal" else 2)  # (NORMAL; FULL by default)
    storage.engine.dispose()


def test_dlc_tune_leaves_no_log_beside_its_study(tmp_path, monkeypatch):
    monkeypatch.setattr(tune_worker, "filesystem", lambda path: "ext4")
    spec = tmp_path / "iris.dlspec"
    spec.write_text(edited_spec(ROOT / "specs" / "iris.dlspec", ("epochs: 40", "epochs: 3"),
                                ("Adam(lr=0.01)", "Adam(lr=choice(0.01, 0.02))"),
                                ("batch_size: 16", "batch_size: 16\n  }\n  search {\n    method: grid")))
    rc, out, err = run_cli("tune", spec, "--out", tmp_path / "t", "--quiet")
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "t").glob("study.db*")) == ["study.db"]
    assert _journal(tmp_path / "t" / "study.db") == "wal"
