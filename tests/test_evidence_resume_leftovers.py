"""Leftovers of the evidence and resume work: the live doctor judges the evidence kept in memory (it re-read
and re-parsed a growing evidence.json every epoch) and says what the files say; `--resume` refuses changed
feature values under `normalize: none` (no statistics stand for them); a device the resumed run cannot use is
worded from the backend's structured reason, not by cutting its message at ", but "."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from dlc import api
from dlc.runtime import doctor as D
from dlc.runtime.doctor.rules import Case, Model, live_findings

from conftest import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# ---------------------------------------------------------------------------------------------- live doctor

DEEP = """\
model deep {
  seed: 11
  data {
    source: digits
    normalize: standard
    split: holdout(val=0.2, test=0.2, stratify=true)
  }
  input: (64)
  layers {
    Dense(32, activation=sigmoid) * 6
    Dense(10, activation=softmax)
  }
  loss: categorical_crossentropy
  metrics: [accuracy]
  optimizer: SGD(lr=0.05)
  train {
    epochs: 3
    batch_size: 64
  }
}
"""


def test_the_live_doctor_reads_the_evidence_in_memory_and_says_what_the_files_say(tmp_path, monkeypatch):
    """`dlc run` hands the recorder's evidence to the live doctor (no evidence.json read during the run); the
    evidence it judged each epoch is the file's content up to that epoch (the file is written at
    dlc.runtime.epochfiles' pace, so not necessarily then), its warnings are those a doctor reading the files
    gives, and at the last epoch its findings are byte for byte those from the files."""
    (tmp_path / "deep.dlspec").write_text(DEEP)
    seen: list[dict] = []  # the evidence in memory at each epoch
    judged: list[list] = []
    original = D.LiveDoctor._findings

    def spying(self, evidence):
        assert self.source is not None  # the CLI gave it the recorder's evidence
        seen.append(json.loads(json.dumps(evidence)))
        out = original(self, evidence)
        judged.append(out)
        return out

    monkeypatch.setattr(D.LiveDoctor, "_findings", spying)
    run = tmp_path / "run"
    rc, _, err = run_cli("run", tmp_path / "deep.dlspec", "--out", run, "--device", "cpu", "--backend",
                         "torch")
    assert rc == 0, err
    monkeypatch.undo()
    disk = json.loads((run / D.EVIDENCE).read_text())
    assert len(seen) == 3
    for epoch, mem in enumerate(seen, start=1):
        assert mem["epochs"] == disk["epochs"][:epoch]
        assert mem["step_losses"] == disk["step_losses"][:mem["epochs"][-1]["last_step"]]
        assert {k: v for k, v in mem.items() if k not in ("epochs", "step_losses")} == \
            {k: v for k, v in disk.items() if k not in ("epochs", "step_losses")}
    said = re.findall(r"^epoch \d+: .*see dlc doctor$", err, re.M)
    assert any("vanishing gradients" in line for line in said), err
    # a doctor reading the files, epoch by epoch, says the same lines
    spec = api.checked(tmp_path / "deep.dlspec").spec
    rows = json.loads((run / "history.json").read_text())
    from_files = D.LiveDoctor(spec, run)
    assert [w for r in rows for w in from_files.epoch(r)] == said
    # the last epoch's findings, from the files, are the live ones
    ev = json.loads((run / D.EVIDENCE).read_text())
    files = live_findings(Case(rows, ev, model=Model.of(spec)).until(rows[-1]["epoch"]))
    assert [dataclasses.asdict(d) for d in files] == [dataclasses.asdict(d) for d in judged[-1]]
    vanish = next(d for d in D.diagnose(run).diagnoses if d.id == "vanishing_gradients")
    assert vanish.evidence == next(d for d in judged[-1] if d.id == "vanishing_gradients").evidence


def test_a_resumed_live_doctor_judges_the_earlier_epochs_with_the_evidence_it_is_given():
    """Resumed: what showed before is not news, judged (at the first epoch) from the evidence handed in, not
    from a file."""
    layers = [{"name": n, "kind": "Dense", "activation": "relu", "family": "relu"} for n in ("d0", "d1")]

    def epoch(e, dead):
        return {"epoch": e, "first_step": e, "last_step": e, "lr": 0.1,
                "layers": {"d0": {"grad_norm": 1.0, "dead_fraction": dead}, "d1": {"grad_norm": 1.0}}}

    ev = {"version": 1, "layers": layers, "epochs": [epoch(1, 0.9), epoch(2, 0.9), epoch(3, 0.9)],
          "step_losses": [1.0, 0.9, 0.8]}
    rows = [{"epoch": e, "loss": 1.0 - 0.1 * e} for e in (1, 2, 3)]
    fresh = D.LiveDoctor(None, evidence=lambda: ev)
    assert [fresh.epoch(r) for r in rows][0] == [
        "epoch 1: 90% of d0's ReLUs are dead: dead ReLUs, see dlc doctor"]
    resumed = D.LiveDoctor(None, Path("/nonexistent"), before=rows[:2], evidence=lambda: ev)
    assert resumed.epoch(rows[2]) == []


# ----------------------------------------------------------------------------------------- device refusal


def _resumable(backend: str, device: str = "cuda") -> api.Resumable:
    return api.Resumable(Path("runs/r"), {"backend": backend, "device": device}, finished=False)


def test_the_resume_device_message_is_composed_from_the_backends_reason(monkeypatch):
    import dlc.backends as B
    from dlc.backends.session import DeviceUnavailable

    e = DeviceUnavailable("cuda:1", "PyTorch sees 1 CUDA device (cuda:0)")
    assert str(e) == "--device cuda:1 was asked for, but PyTorch sees 1 CUDA device (cuda:0)"
    assert isinstance(e, RuntimeError)
    assert (e.device, e.why) == ("cuda:1", "PyTorch sees 1 CUDA device (cuda:0)")

    def refuse(backend, device, processes=1):
        raise DeviceUnavailable(device, "it sees a GPU, but not this one; try another")

    monkeypatch.setattr(B, "check_device", refuse)
    with pytest.raises(RuntimeError) as got:
        _resumable("torch", "cuda:3").device()
    assert str(got.value) == ("runs/r was started on --device cuda:3, but it sees a GPU, but not this one; "
                              "try another; add --device cpu (or auto) to continue it here")
    assert _resumable("torch").device("cpu") == "cpu"


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_the_resume_device_messages_are_unchanged(backend, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is here")
        why = "PyTorch sees no CUDA device"
    else:
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            pytest.skip("a GPU is here")
        why = ("the keras backend trains on the CPU here (TensorFlow sees no GPU); use --backend torch for "
               "CUDA")
    with pytest.raises(RuntimeError) as direct:
        api.check_device(backend, "cuda")
    assert str(direct.value) == f"--device cuda was asked for, but {why}"
    with pytest.raises(RuntimeError) as resumed:
        _resumable(backend).device()
    assert str(resumed.value) == (f"runs/r was started on --device cuda, but {why}; add --device cpu (or "
                                  "auto) to continue it here")


# ------------------------------------------------------------------------------- resume: the feature values

SPEC = """\
model plain {
  seed: 3
  data {
    source: SOURCE
    normalize: none
    split: holdout(val=0.2, test=0.2)
  }
  input: (4)
  layers {
    Dense(3, activation=softmax)
  }
  loss: sparse_categorical_crossentropy
  metrics: [accuracy]
  optimizer: SGD(lr=0.1)
  train {
    epochs: 2
    batch_size: 16
  }
}
"""


def _stopped_run(folder: Path, backend: str, source: str) -> Path:
    """A run of 1 epoch of its spec's 2, left as a killed one (not finished): `--resume` trains on."""
    (folder / "s.dlspec").write_text(SPEC.replace("SOURCE", source))
    run = folder / "run"
    rc, _, err = run_cli("run", folder / "s.dlspec", "--epochs", 1, "--out", run, "--quiet", "--backend",
                         backend, "--device", "cpu")
    assert rc == 0, err
    (run / "metrics.json").unlink()
    info = json.loads((run / "run.json").read_text())
    assert isinstance(info["features"], str)
    (run / "run.json").write_text(json.dumps({**info, "finished": None}))
    ir = json.loads((run / "ir.json").read_text())
    ir["train"]["epochs"] = 2
    (run / "ir.json").write_text(json.dumps(ir))
    return run


def _refused(run: Path) -> None:
    before = (run / "run.json").read_text()
    rc, _, err = run_cli("run", "--resume", run, "--quiet")
    assert rc == 1 and err.splitlines() == [
        f"dlc: error: '{run}' cannot be resumed: its data changed since the run started (the feature values "
        f"differ); put the data back as it was, or train the spec again (`dlc run SPEC --out {run} "
        "--replace`)"], err
    assert (run / "run.json").read_text() == before
    assert len(json.loads((run / "history.json").read_text())) == 1


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_resume_refuses_changed_feature_values_without_normalization(tmp_path, backend):
    """`normalize: none`: no statistics, so a data file whose values changed (same shape, same targets)
    resumed silently on the new values; now run.json's `features` digest refuses it, one line, exit 1, the
    folder as it was. The same data trains on."""
    rng = np.random.default_rng(0)
    x, y = rng.random((60, 4)), rng.integers(0, 3, 60)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    run = _stopped_run(tmp_path, backend, 'npz("data.npz")')
    x2 = x.copy()
    x2[7, 2] += 0.5  # one value of one sample
    np.savez(tmp_path / "data.npz", x=x2, y=y)
    _refused(run)
    np.savez(tmp_path / "data.npz", x=x, y=y)  # put back: it resumes
    rc, _, err = run_cli("run", "--resume", run, "--quiet")
    assert rc == 0, err
    assert len(json.loads((run / "history.json").read_text())) == 2


def test_resume_refuses_changed_values_of_a_streamed_npy_source(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.random((60, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", rng.integers(0, 3, 60))
    run = _stopped_run(tmp_path, "torch", 'npy("x.npy", "y.npy")')
    x[59, 0] = 9.0
    np.save(tmp_path / "x.npy", x)
    _refused(run)


class _CountedRows:
    """A part's features that count the bytes read (a 3.1 GB streamed part, never held)."""

    def __init__(self, n: int, width: int):
        self.shape, self.dtype, self.read = (n, width), np.dtype(np.float32), 0

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: slice) -> np.ndarray:
        lo, hi, _ = key.indices(len(self))
        self.read += (hi - lo) * self.shape[1] * 4
        return np.full((hi - lo, self.shape[1]), lo, np.float32)


def test_the_features_digest_samples_a_big_part_and_hashes_a_small_one_whole():
    from dlc.runtime.run import features_digest

    big = _CountedRows(1_000_000, 784)
    data = SimpleNamespace(train=SimpleNamespace(x=big), val=None, test=None, shift=None, scale=None)
    digest = features_digest(data)
    assert big.read <= 256 * (1 << 16) and digest == features_digest(data)  # 16 MiB of 3.1 GB
    small = np.arange(4000, dtype=np.float64).reshape(1000, 4)
    whole = SimpleNamespace(train=SimpleNamespace(x=small), val=None, test=None, shift=None, scale=None)
    changed = small.copy()
    changed[500, 1] += 1e-12
    assert features_digest(whole) != features_digest(
        SimpleNamespace(train=SimpleNamespace(x=changed), val=None, test=None, shift=None, scale=None))
    normalized = SimpleNamespace(**{**vars(whole), "shift": np.zeros(4), "scale": np.ones(4)})
    assert features_digest(normalized) is None


def test_evidence_json_written_a_new_epoch_at_a_time_is_the_whole_encoding(tmp_path):
    """Recorder.write encodes each epoch and step loss once (re-encoding them all after every epoch made a
    long run quadratic): the file is byte for byte the layout of encoding everything again."""
    from dlc.runtime.evidence import Recorder
    from dlc.runtime.rundir import json_rows

    def whole(rec) -> str:
        obj = rec.to_json()
        epochs, losses = obj.pop("epochs"), obj.pop("step_losses")
        return (json.dumps(obj, indent=2)[:-2] + ',\n  "epochs": ' + json_rows(epochs).replace("\n", "\n  ")
                + ',\n  "step_losses": ' + json.dumps(losses) + "\n}\n")

    (tmp_path / "deep.dlspec").write_text(DEEP)
    rec = Recorder(api.checked(tmp_path / "deep.dlspec").spec, tmp_path)
    rec.write()
    assert (tmp_path / "evidence.json").read_text() == whole(rec)
    for e in range(1, 5):
        rec.step_losses += [0.5 / e, None] if e != 3 else []
        rec.epochs.append({"epoch": e, "first_step": 2 * e - 1, "last_step": len(rec.step_losses), "lr": 0.1,
                           "layers": {"dense_0": {"grad_norm": 1e-3 * e, "weight_norm": None}}})
        rec.write()
        assert (tmp_path / "evidence.json").read_text() == whole(rec)


def test_history_files_encoded_once_are_byte_identical_to_a_whole_rewrite(tmp_path):
    """write_history encodes each row once (rundir._EncodedRows): after appends, a history cut back (a
    resume), a row changed in place, a new column and NaNs, both files equal what encoding every row again
    writes (json_rows and csv.DictWriter)."""
    import csv
    import io
    import random

    from dlc.runtime import rundir

    def whole(rows):
        out = io.StringIO()
        if rows:
            w = csv.DictWriter(out, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
            w.writeheader()
            w.writerows(rows)
        return rundir.json_rows(rows, default=float) + "\n", out.getvalue()

    r = random.Random(0)
    for trial in range(60):
        run = tmp_path / f"r{trial % 11}"  # (more folders than the writer keeps: some are written afresh)
        run.mkdir(exist_ok=True)
        rows: list[dict] = []
        for _ in range(r.randint(1, 25)):
            op = r.random()
            if op < 0.7 or not rows:
                row = {"epoch": len(rows) + 1, "loss": r.random(), "accuracy": np.float32(r.random())}
                if r.random() < 0.1:
                    row["val_loss"] = float("nan") if r.random() < 0.5 else r.random()
                rows.append(row)
            elif op < 0.85:
                rows = rows[:r.randint(0, len(rows))]
            else:
                rows[r.randrange(len(rows))]["loss"] = r.random()
            rundir.write_history(run, rows)
            want_json, want_csv = whole(rows)
            assert (run / "history.json").read_text() == want_json
            if rows:
                with open(run / "history.csv", newline="") as fh:
                    assert fh.read() == want_csv
