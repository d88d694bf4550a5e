"""Nothing is lost: a run folder holds one run (`--out` reuse is refused unless --replace, which deletes
only a folder dlc wrote), a run's end is written in an order a kill cannot confuse (run.json's `finished`
last), one notion of "finished" for --resume, evaluate, predict and runs, and a damaged folder is one line
naming the file and what to do. Kills are simulated by deleting or truncating files of a finished tiny run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPEC = """\
model tiny {
  seed: 3
  data {
    source: iris
    normalize: standard
    split: holdout(val=0.2, test=0.2, stratify=true)
  }
  input: (4)
  layers {
    Dense(8, activation=relu)
    Dense(3, activation=softmax)
  }
  loss: categorical_crossentropy
  metrics: [accuracy]
  optimizer: Adam(lr=0.01)
  train {
    epochs: EPOCHS
    batch_size: 32
  }
}
"""

CV_SPEC = SPEC.replace("holdout(val=0.2, test=0.2, stratify=true)", "kfold(k=3, stratify=true)") \
    .replace("model tiny", "model tiny_cv")


def write_spec(folder: Path, epochs: int = 2, text: str = SPEC, name: str = "tiny.dlspec") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text.replace("EPOCHS", str(epochs)))
    return path


def one_line(err: str) -> str:
    """The single error line of a failed command (never a traceback)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith("dlc: error: "), err
    return lines[0]


def train(spec: Path, out: Path, *extra) -> tuple[int, str, str]:
    return run_cli("run", spec, "--out", out, "--quiet", *extra)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 2-epoch run to copy (each test damages its own copy)."""
    base = tmp_path_factory.mktemp("finished")
    run = base / "run"
    rc, out, err = train(write_spec(base / "spec"), run)
    assert rc == 0, err
    return run


@pytest.fixture
def run(finished, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


def unfinish(run: Path) -> None:
    """As if killed after metrics.json but before run.json's `finished`."""
    info = json.loads((run / "run.json").read_text())
    info["finished"] = None
    (run / "run.json").write_text(json.dumps(info))


def status(run: Path) -> str:
    rc, out, err = run_cli("runs", run, "--json")
    assert rc == 0, err
    (row,) = json.loads(out)
    return row["status"]


# -------------------------------------------------------------------------------------------- --out reuse


def test_a_finished_run_folder_is_refused_and_left_as_it_is(run):
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    rc, _, err = train(write_spec(run.parent / "other", epochs=1), run)
    assert rc == 2
    assert one_line(err) == (f"dlc: error: --out {run} already holds a dlc run; give a new folder, add "
                             "--replace to delete it first")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_an_unfinished_run_folder_is_refused_with_the_resume_hint(run):
    unfinish(run)
    rc, _, err = train(write_spec(run.parent / "other", epochs=1), run)
    assert rc == 2 and one_line(err).endswith(f"or continue it with `dlc run --resume {run}`")


def test_a_run_folder_being_trained_into_is_refused(run):
    """Another dlc training into the folder (its flock on RUN/.dlc-lock held): --resume is one line, exit 1,
    and --out --replace is refused (exit 2), both leaving the folder as it is; once it ends, both work."""
    import subprocess
    import sys

    unfinish(run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".dlc-lock"}
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from dlc.runtime.runlock import held\n"
                               "with held(Path(sys.argv[1])):\n print('held', flush=True); time.sleep(60)",
                               str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        rc, _, err = run_cli("run", "--resume", run, "--quiet")
        want = (f"dlc: error: {run} is being trained into by another dlc process (pid {holder.pid}); "
                "wait for it to end, or use another folder")
        assert rc == 1 and one_line(err) == want
        rc, _, err = run_cli("run", "--resume", run)  # (not quiet: it said "resuming ..." first)
        assert rc == 1 and err == want + "\n", err
        rc, _, err = train(write_spec(run.parent / "other", epochs=1), run, "--replace")
        assert rc == 2 and "is being trained into by another dlc process" in one_line(err)
        after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
        assert {k: v for k, v in after.items() if k != ".dlc-lock"} == before
    finally:
        holder.kill()
        holder.wait()
    rc, _, err = run_cli("run", "--resume", run, "--quiet")
    assert rc == 0, err
    assert status(run) == "done"


def test_replace_replaces_the_whole_folder(run):
    (run / "log.txt").write_text("OLD RUN\n")
    stale = run / "events.out.tfevents.1.old"
    stale.write_text("x")
    rc, out, err = train(write_spec(run.parent / "other", epochs=1), run, "--replace")
    assert rc == 0, err
    assert not stale.exists() and "OLD RUN" not in (run / "log.txt").read_text()
    assert len(json.loads((run / "history.json").read_text())) == 1
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 1


def test_a_failing_run_replacing_a_finished_one_leaves_nothing_of_it(run):
    """The bug: a failing run in a finished run's folder left its metrics.json and model next to the new
    ir.json, and `dlc runs` and --resume believed them."""
    spec = write_spec(run.parent / "diverge", text=SPEC.replace("Adam(lr=0.01)", "SGD(lr=1e6)"))
    rc, _, err = train(spec, run, "--replace")
    assert rc == 1 and "loss became" in one_line(err)
    assert not (run / "metrics.json").exists() and not (run / "model.pt").exists()
    assert status(run).startswith("failed: loss became")
    rc, _, err = run_cli("evaluate", run)
    assert rc == 1 and f"'{run}' failed (loss became" in one_line(err)


def test_a_folder_dlc_did_not_write_is_never_deleted(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    spec = write_spec(tmp_path / "spec")
    for extra in ((), ("--replace",)):
        rc, _, err = train(spec, folder, *extra)
        assert rc == 2
        line = one_line(err)
        assert f"--out {folder} is not empty and is not a dlc run folder (it holds notes.txt)" in line
        assert ("--replace deletes only a folder dlc wrote" in line) == bool(extra)
    assert (folder / "notes.txt").read_text() == "keep me" and len(list(folder.iterdir())) == 1


def test_a_run_folder_with_a_foreign_file_is_not_replaced(run):
    (run / "data").mkdir()
    (run / "data" / "mine.csv").write_text("1,2\n")
    rc, _, err = train(write_spec(run.parent / "other"), run, "--replace")
    assert rc == 2 and "(it holds data/)" in one_line(err)
    assert (run / "data" / "mine.csv").is_file()


def test_a_spec_inside_its_own_run_folder_is_not_destroyed(run):
    spec = run / "tiny.dlspec"
    text = spec.read_text()
    rc, _, err = train(spec, run, "--replace")
    assert rc == 2
    assert one_line(err) == (f"dlc: error: --replace would delete {run}, which holds the spec being run "
                             f"({spec}); copy the spec out of it first, or give another --out")
    assert spec.read_text() == text and (run / "metrics.json").is_file()


def test_an_out_that_is_a_file_and_an_empty_folder(tmp_path):
    spec = write_spec(tmp_path / "spec", epochs=1)
    (tmp_path / "file").write_text("x")
    rc, _, err = train(spec, tmp_path / "file")
    assert rc == 2 and one_line(err) == f"dlc: error: --out {tmp_path / 'file'} is a file, not a folder"
    (tmp_path / "empty").mkdir()
    assert train(spec, tmp_path / "empty")[0] == 0


def test_cv_out_reuse_is_refused_unless_replace(tmp_path):
    spec = write_spec(tmp_path / "spec", epochs=1, text=CV_SPEC)
    out = tmp_path / "cv"
    assert run_cli("cv", spec, "--out", out, "--quiet")[0] == 0
    rc, _, err = run_cli("cv", spec, "--out", out, "--quiet")
    assert rc == 2 and one_line(err) == (f"dlc: error: --out {out} already holds a dlc cross-validation run; "
                                         "give a new folder, add --replace to delete it first")
    (out / "fold_1" / "stale.txt").write_text("x")
    rc, _, err = run_cli("cv", spec, "--out", out, "--quiet", "--replace")
    assert rc == 2 and "fold_1/stale.txt" in one_line(err)
    (out / "fold_1" / "stale.txt").unlink()
    rc, _, err = run_cli("cv", spec, "--out", out, "--quiet", "--replace")
    assert rc == 0, err
    assert json.loads((out / "cv.json").read_text())["k"] == 3


def test_tune_out_must_be_a_tune_run(run, tmp_path):
    spec = tmp_path / "t.dlspec"
    spec.write_text(SPEC.replace("EPOCHS", "1").replace("Dense(8,", "Dense(choice(4, 8),")
                    .replace("  train {", "  search {\n    method: grid\n    objective: minimize val_loss\n"
                             "  }\n  train {"))
    rc, _, err = run_cli("tune", spec, "--out", run, "--quiet")
    assert rc == 2
    assert one_line(err) == (f"dlc: error: --out {run} is not empty and is not a dlc tune run (it holds a "
                             "dlc run); give a new or empty folder (the --out of an earlier `dlc tune` "
                             "continues that search)")
    assert (run / "metrics.json").is_file()
    # a tune folder the user put a file in (a `dlc plot` PNG, notes) continues its search, the file kept
    tune = tmp_path / "tune"
    rc, _, err = run_cli("tune", spec, "--out", tune, "--quiet", "--trials", "1")
    assert rc == 0, err
    (tune / "notes.txt").write_text("mine")
    rc, _, err = run_cli("tune", spec, "--out", tune, "--quiet", "--trials", "2")
    assert rc == 0, err
    assert (tune / "notes.txt").read_text() == "mine" and len(json.loads((tune / "tune.json").read_text())
                                                          ["trials"]) == 2


def test_model_save_refuses_a_used_folder_unless_replace(tmp_path):
    import dlc

    model = dlc.Model(dlc.load(write_spec(tmp_path / "spec", epochs=1)), device="cpu")
    model.fit()
    first = model.save(tmp_path / "saved")
    with pytest.raises(dlc.api.OutFolderError, match="already holds a dlc run"):
        model.save(tmp_path / "saved")
    assert model.save(tmp_path / "saved", replace=True) == first
    assert json.loads((first / "run.json").read_text())["finished"]


# --------------------------------------------------------------------------------------- atomic finish


def test_a_finished_run_says_so_last(run):
    info = json.loads((run / "run.json").read_text())
    assert info["finished"] and info["failed"] is None
    assert status(run) == "done"
    assert not [p for p in run.iterdir() if ".tmp" in p.name]
    rc, out, _ = run_cli("run", "--resume", run)
    assert rc == 0 and "already finished" in out


def _finish_again(run: Path, reference: Path) -> None:
    """--resume writes the final files of a run whose epochs are all trained, the same as the reference."""
    rc, out, err = run_cli("run", "--resume", run)
    assert rc == 0, err
    assert f"finishing {run}: all 2 epochs are trained; writing its final metrics and model" in err
    want = json.loads((reference / "metrics.json").read_text())
    assert json.loads((run / "metrics.json").read_text()) == want
    assert (run / "model.pt").read_bytes() and json.loads((run / "run.json").read_text())["finished"]
    assert status(run) == "done"
    rc, out, err = run_cli("evaluate", run, "--json")
    assert rc == 0, err
    assert json.loads(out)["test"] == pytest.approx(want["test"])


def test_killed_before_the_finished_mark(run, finished):
    unfinish(run)
    assert status(run) == "incomplete: 2 of 2 epochs"
    rc, _, err = run_cli("evaluate", run)
    assert rc == 1
    assert one_line(err) == (f"dlc: error: '{run}' did not finish (2 of 2 epochs trained; no final model): "
                             f"continue it with `dlc run --resume {run}`")
    rc, _, err = run_cli("predict", run, "--input", run / "nothing.csv")
    assert rc == 1 and "did not finish" in one_line(err)
    _finish_again(run, finished)


@pytest.mark.parametrize("damage", ["model deleted", "model.json deleted", "metrics truncated",
                                    "metrics empty", "metrics not utf-8", "history truncated"])
def test_damaged_final_files_are_named_and_resume_writes_them_again(run, finished, damage):
    if damage == "model deleted":
        (run / "model.pt").unlink()
        want = "model.pt is missing"
    elif damage == "model.json deleted":
        (run / "model.json").unlink()
        want = "model.json is missing"
    elif damage == "metrics truncated":
        (run / "metrics.json").write_text((run / "metrics.json").read_text()[:40])
        want = "metrics.json is not valid JSON"
    elif damage == "metrics empty":
        (run / "metrics.json").write_text("")
        want = "metrics.json is empty"
    elif damage == "metrics not utf-8":
        (run / "metrics.json").write_bytes(b"\xff")
        want = "metrics.json is not UTF-8 text"
    else:
        (run / "history.json").write_text("[{\"epoch\": 1, ")
        want = "history.json is not valid JSON"
    assert status(run).startswith(f"damaged: {want}")
    rc, _, err = run_cli("evaluate", run)
    line = one_line(err)
    assert rc == 1 and want in line and f"`dlc run --resume {run}` writes its final files again" in line
    _finish_again(run, finished)
    assert len(json.loads((run / "history.json").read_text())) == 2


def test_resume_continues_from_the_epoch_it_reached(tmp_path):
    """A 2-epoch run made a 4-epoch one (as if killed after epoch 2): --resume says where it continues and
    ends with the history of an uninterrupted 4-epoch run."""
    spec2, spec4 = write_spec(tmp_path / "s2", epochs=2), write_spec(tmp_path / "s4", epochs=4)
    cut, full = tmp_path / "cut", tmp_path / "full"
    assert train(spec2, cut)[0] == 0 and train(spec4, full)[0] == 0
    ir = json.loads((cut / "ir.json").read_text())
    ir["train"]["epochs"] = 4
    (cut / "ir.json").write_text(json.dumps(ir))
    unfinish(cut)
    (cut / "metrics.json").unlink()
    rc, out, err = run_cli("run", "--resume", cut)
    assert rc == 0, err
    assert f"resuming {cut} from epoch 3 of 4" in err
    assert "resuming" in (cut / "log.txt").read_text()

    def losses(r):
        return [(h["loss"], h["val_loss"]) for h in json.loads((r / "history.json").read_text())]

    assert losses(cut) == losses(full)
    assert json.loads((cut / "metrics.json").read_text()) == json.loads((full / "metrics.json").read_text())


# ----------------------------------------------------------------------------------------- damaged folders


@pytest.mark.parametrize("name,content,want", [
    ("run.json", "", "run.json is empty"),
    ("run.json", '{"spec": "/x", "spec_', "run.json is not valid JSON"),
    ("ir.json", "", "ir.json is empty"),
    ("ir.json", '{"name": "tiny", "la', "ir.json is not valid JSON"),
    ("run.json", "\udcff", "run.json is not UTF-8 text"),
    ("ir.json", "\udcff", "ir.json is not UTF-8 text"),
])
def test_truncated_run_json_and_ir_json(run, name, content, want):
    (run / name).write_bytes(content.encode("utf-8", "surrogateescape"))
    rc, _, err = run_cli("run", "--resume", run)
    assert rc == 1
    assert one_line(err).startswith(f"dlc: error: '{run}' cannot be resumed: {want}")
    assert one_line(err).endswith(f"train the spec again (`dlc run SPEC --out {run} --replace`)")
    for command in ("evaluate", "export"):
        rc, _, err = run_cli(command, run)
        assert rc == 1 and f"'{run}' cannot be used: {want}" in one_line(err)
    assert status(run).startswith(f"damaged: {want}")


def _npz_without_loop(path: Path) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, weights=np.zeros(3))


@pytest.mark.parametrize("damage,want", [
    ("empty", "checkpoint.npz is empty"),
    ("truncated", "checkpoint.npz is damaged (truncated or not a dlc checkpoint"),
    ("garbage", "checkpoint.npz is damaged (truncated or not a dlc checkpoint"),
    ("foreign", "checkpoint.npz is not a dlc checkpoint (no loop state)"),
    ("objects", "an array holds Python objects, which dlc never unpickles"),
])
def test_a_damaged_checkpoint_is_one_line(run, damage, want):
    unfinish(run)
    ckpt = run / "checkpoint.npz"
    if damage == "empty":
        ckpt.write_bytes(b"")
    elif damage == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:300])
    elif damage == "garbage":
        ckpt.write_text("not a checkpoint\n")
    elif damage == "objects":  # (it was "not a complete .npz archive"; never unpickled)
        with np.load(ckpt) as f:
            arrays = {k: f[k] for k in f.files}
        with open(ckpt, "wb") as fh:
            np.savez(fh, **{**arrays, "loop": np.array([{"epoch": 1}], dtype=object)})
    else:
        _npz_without_loop(ckpt)
    rc, _, err = run_cli("run", "--resume", run)
    assert rc == 1
    line = one_line(err)
    assert line.startswith(f"dlc: error: {ckpt}") and want in line, line
    assert line.endswith(f"it cannot be resumed from: train the spec again (`dlc run SPEC --out {run} "
                         "--replace`)")


def test_a_lost_checkpoint_after_several_epochs(run):
    unfinish(run)
    (run / "checkpoint.npz").unlink()
    rc, _, err = run_cli("run", "--resume", run)
    assert rc == 1 and "checkpoint.npz is missing although history.json has 2 epochs" in one_line(err)


def test_runs_lists_damaged_folders_and_plot_names_the_file(run, tmp_path):
    (run / "history.json").write_text("[{")
    rc, out, err = run_cli("runs", run.parent)
    assert rc == 0, err
    assert "damaged: history.json is not valid JSON" in out
    rc, _, err = run_cli("plot", run, "--out", tmp_path / "p.png")
    assert rc == 1 and f"{run / 'history.json'} is not valid JSON" in one_line(err)


def test_plot_makes_the_folder_of_out(finished, tmp_path):
    out = tmp_path / "new" / "deeper" / "p.png"
    rc, stdout, err = run_cli("plot", finished, "--out", out)
    assert rc == 0, err
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and stdout.strip() == str(out)
    rc, _, err = run_cli("plot", finished, "--out", tmp_path / "new")
    assert rc == 2 and "is a folder; give a file, such as" in one_line(err)  # (a usage error)


def test_evaluate_and_resume_explain_a_folder_that_is_not_a_run(tmp_path):
    rc, _, err = run_cli("evaluate", tmp_path / "nowhere")
    assert rc == 1 and one_line(err) == f"dlc: error: no such run directory '{tmp_path / 'nowhere'}'"
    rc, _, err = run_cli("run", "--resume", tmp_path)
    assert rc == 1 and "is not a dlc run directory" in one_line(err)


# ------------------------------------------------------------------------------------- cv and tune folders


@pytest.fixture(scope="module")
def cv_and_tune(tmp_path_factory, finished) -> Path:
    """A folder of runs: the finished run, a cv run and a tune run."""
    base = tmp_path_factory.mktemp("kinds")
    shutil.copytree(finished, base / "plain")
    spec = write_spec(base / "spec", epochs=1, text=CV_SPEC)
    rc, _, err = run_cli("cv", spec, "--out", base / "cv", "--quiet")
    assert rc == 0, err
    tune = base / "spec" / "t.dlspec"
    tune.write_text(SPEC.replace("EPOCHS", "1").replace("Dense(8,", "Dense(choice(4, 8),")
                    .replace("  train {", "  search {\n    method: grid\n    objective: minimize val_loss\n"
                             "  }\n  train {"))
    rc, _, err = run_cli("tune", tune, "--out", base / "tune", "--quiet", "--threads", "1")
    assert rc == 0, err
    return base


def test_runs_lists_cv_and_tune_runs(cv_and_tune):
    rc, out, err = run_cli("runs", cv_and_tune, "--json")
    assert rc == 0, err
    rows = {Path(r["run"]).name: r for r in json.loads(out)}
    assert set(rows) == {"plain", "cv", "tune"}  # not the folds or the trials
    assert rows["cv"]["kind"] == "cv" and rows["cv"]["epochs"] == "3 folds" and rows["cv"]["status"] == "done"
    cv = json.loads((cv_and_tune / "cv" / "cv.json").read_text())
    assert rows["cv"]["final"]["cv_accuracy"] == cv["mean"]["accuracy"]
    assert rows["cv"]["std"]["cv_accuracy"] == cv["std"]["accuracy"]
    tune = json.loads((cv_and_tune / "tune" / "tune.json").read_text())
    assert rows["tune"]["best_trial"] == tune["best"]["number"]
    assert rows["tune"]["final"] == {"val_loss": tune["best"]["value"]}
    rc, out, err = run_cli("runs", cv_and_tune)
    assert rc == 0, err
    line = next(x for x in out.splitlines() if x.startswith("cv "))
    assert f"cv_accuracy {cv['mean']['accuracy']:.4f}±{cv['std']['accuracy']:.4f}" in line
    assert f"(trial {tune['best']['number']})" in next(x for x in out.splitlines() if x.startswith("tune "))


def test_plot_draws_the_folds_and_the_best_trial(cv_and_tune, tmp_path):
    from dlc.runtime.runs import histories

    labels = [label for label, _ in histories([cv_and_tune / "cv", cv_and_tune / "tune"])]
    best = json.loads((cv_and_tune / "tune" / "tune.json").read_text())["best"]["number"]
    assert labels == ["cv/fold_1", "cv/fold_2", "cv/fold_3", f"tune trial {best} (best)"]
    rc, _, err = run_cli("plot", cv_and_tune / "cv", cv_and_tune / "tune", "--out", tmp_path / "p.png")
    assert rc == 0, err


def test_evaluate_and_resume_explain_cv_and_tune_folders(cv_and_tune):
    cv, tune = cv_and_tune / "cv", cv_and_tune / "tune"
    rc, _, err = run_cli("evaluate", cv)
    assert rc == 1
    assert one_line(err).startswith(f"dlc: error: '{cv}' is a cross-validation run (cv.json): its folds keep "
                                    "no model to load")
    rc, _, err = run_cli("predict", tune, "--input", tune / "x.csv")
    assert rc == 1 and f"train its best spec with `dlc run {tune / 'best.dlspec'}`" in one_line(err)
    rc, _, err = run_cli("run", "--resume", tune)
    assert rc == 1 and f"run the same `dlc tune SPEC --out {tune}` again" in one_line(err)


def test_runs_piped_is_plain_and_never_cut(cv_and_tune, tmp_path):
    """stdout is not a terminal here: plain aligned text, each run on one line, nothing cut however long."""
    long = tmp_path / "runs" / ("a-very-long-run-folder-name-" * 4).rstrip("-")
    shutil.copytree(cv_and_tune / "plain", long)
    unfinish(long)
    rc, out, err = run_cli("runs", long.parent)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == f"runs in {long.parent}"
    assert lines[1].split() == ["run", "spec", "backend", "date", "epochs", "final", "metrics", "status"]
    (row,) = [x for x in lines if x.startswith(long.name)]
    assert row.endswith("incomplete: 2 of 2 epochs") and "…" not in out and "─" not in out


@pytest.mark.parametrize("command", ["run", "cv"])
def test_replace_without_out_is_a_usage_error(command):
    rc, out, err = run_cli(command, ROOT / "specs" / "iris.dlspec", "--replace")
    assert rc == 2 and err.strip().splitlines()[-1] == \
        "dlc: error: --replace replaces the --out folder; give --out DIR with it"


@pytest.mark.parametrize("content", ["text", "pickled code"])
def test_a_model_pt_that_is_not_tensors_is_named_and_never_unpickled(run, content, capfd):
    """model.pt is read with weights_only=True: a text file or a pickle carrying code is one line saying the
    file is damaged, and torch's advice to retry with weights_only=False (which runs the file's code) is not
    passed on."""
    import torch

    if content == "text":
        (run / "model.pt").write_text("1,2,3\n")
    else:
        torch.save({"dense_0.kernel": _Executes()}, run / "model.pt")
    for command in ("evaluate", "export"):
        rc, out, err = run_cli(command, run)
        line = one_line(err)
        assert rc == 1 and "model.pt is damaged or not a PyTorch state_dict of tensors" in line, line
        assert "weights_only=False" not in err and "EXECUTED" not in out + err + capfd.readouterr().out


class _Executes:
    def __reduce__(self):
        return (print, ("EXECUTED",))


def test_a_model_name_longer_than_a_file_name_gets_a_run_folder(tmp_path, monkeypatch):
    """A model's name may be as long as the spec: `model maaa...az` (300 characters) without --out failed
    making `runs/<name>-torch-<time>` ("OSError: [Errno 36] File name too long", exit 1, the 300-character
    path printed); the folder's name now keeps the name's start and end, and the run trains."""
    from dlc.runtime.rundir import MAX_FOLDER_NAME

    name = "m" + "a" * 298 + "z"
    (tmp_path / "long.dlspec").write_text(SPEC.replace("model tiny", f"model {name}").replace("EPOCHS", "1"))
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli("run", "long.dlspec", "--backend", "torch", "--quiet")
    assert rc == 0, err
    run = Path(out.strip())
    assert run.parent == Path("runs") and (tmp_path / run / "metrics.json").is_file()
    assert run.name.startswith("maaa") and run.name.split("-torch-")[0].endswith("a...aaaaaaaaaaaaaaaaaaaz")
    assert len(run.name) <= MAX_FOLDER_NAME + len("-torch-20261129-000000")
