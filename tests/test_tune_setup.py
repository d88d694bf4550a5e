"""`dlc tune`'s set-up before the first trial: the study's storage (a SQLite path's `~` expanded as a shell
expands it) and the one way a refused set-up leaves no tune folder behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli

SPEC = """
model tiny {
  seed: 5
  data {
    source: iris
    split: holdout(val=0.3)
  }
  input: (4)
  layers {
    Dense(choice(4, 8), activation=relu)
    Dense(3, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  optimizer: Adam
  train {
    epochs: 1
  }
  search {
    method: grid
    trials: 2
    storage: "sqlite:///shared.db"
  }
}
"""


def test_a_sqlite_path_under_home_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`sqlite:///~/studies/s.db` is the file in the home folder, as a shell reads `~/studies/s.db`."""
    from sqlalchemy.engine import make_url

    from dlc.runtime.tune import _storage_url

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    url = _storage_url("sqlite:///~/studies/s.db", tmp_path / "run", tmp_path / "specs")
    assert make_url(url).database == str(tmp_path / "home" / "studies" / "s.db")
    assert (tmp_path / "home" / "studies").is_dir()


def test_a_storage_scheme_in_capitals_is_the_same_storage(tmp_path: Path):
    """`SQLITE:///s.db` passed `dlc check` (URL schemes are case-insensitive) and then failed to open, after
    4 tries: "Can't load plugin: sqlalchemy.dialects:SQLITE"; its file was not relative to the spec either."""
    from dlc.runtime.tune import _storage_url

    assert _storage_url("SQLITE:///s.db", tmp_path / "run", tmp_path) == f"sqlite:///{tmp_path / 's.db'}"
    assert _storage_url("PostgreSQL://u@h/db", tmp_path / "run", tmp_path) == "postgresql://u@h/db"


def test_a_home_of_no_user_is_one_line_and_makes_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`sqlite:///~nobody/x.db` of a user that does not exist made a folder `~nobody` (relative to the spec's
    folder), as `mkdir -p ~nobody` does; for an API caller that skipped `dlc check` it is one TuneError."""
    from dlc.runtime.tune import TuneError, _storage_url

    monkeypatch.chdir(tmp_path)
    with pytest.raises(TuneError) as e:
        _storage_url("sqlite:///~dlc_no_such_user_x/x.db", tmp_path / "run", tmp_path)
    assert str(e.value).startswith("storage sqlite:///~dlc_no_such_user_x/x.db: there is no user "
                                   "'dlc_no_such_user_x' on this machine")
    assert list(tmp_path.iterdir()) == []


def test_a_study_refused_when_opened_leaves_no_fresh_folder(tmp_path: Path):
    """A shared storage whose study was made with another search is refused when the study is opened (exit
    2); the fresh --out made for it is removed, by the same path that removes it for a storage refused
    before (tests/test_tune.py::test_a_storage_folder_that_cannot_be_made_is_one_line)."""
    import optuna

    (tmp_path / "tiny.dlspec").write_text(SPEC)
    study = optuna.create_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'shared.db'}")
    study.set_user_attr("dlc_config", {"spaces": [], "method": "random"})
    rc, _, err = run_cli("tune", tmp_path / "tiny.dlspec", "--out", tmp_path / "t", "--quiet")
    assert rc == 2 and "was made with other search" in err, err
    assert not (tmp_path / "t").exists()
    # a tune folder that is there (a search stopped before its first trial) keeps only its own files: the
    # refused spec was copied into it
    (tmp_path / "t" / "trials").mkdir(parents=True)
    (tmp_path / "t" / "study.db").write_bytes(b"")
    rc, _, err = run_cli("tune", tmp_path / "tiny.dlspec", "--out", tmp_path / "t", "--quiet")
    assert rc == 2 and "was made with other search" in err, err
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["study.db", "trials"]
