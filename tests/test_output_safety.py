"""An output option never overwrites what the command reads or a run's own files: predict's, export's and
compile's --output, plot's and lr-find's --out refuse (exit 2, one line naming the path and why, nothing
written) a file that is one of the command's inputs (the --input, the SPEC, the spec's data file) or one
dlc writes in a run, cv or tune folder (RUN/model.pt, RUN/run.json, RUN/fold_N/...); a new name in a run
folder (RUN/predictions.csv) is fine. plot and lr-find write a PNG only under a .png name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IRIS = ROOT / "specs" / "iris.dlspec"
FOUR = "5.1,3.5,1.4,0.2\n6.2,2.9,4.3,1.3\n7.7,3.0,6.1,2.3\n5.0,3.4,1.5,0.2\n"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with a copy of the iris spec, a CSV of four rows of features, `run/` (iris, 1 epoch, torch)
    and `cv/` (a cross-validation folder: cv.json and fold_1/, a copy of the run)."""
    folder = tmp_path_factory.mktemp("outputs")
    shutil.copy(IRIS, folder / "iris.dlspec")
    (folder / "four.csv").write_text(FOUR)
    rc, _, err = run_cli("run", folder / "iris.dlspec", "--backend", "torch", "--out", folder / "run",
                         "--epochs", "1", "--quiet")
    assert rc == 0, err
    (folder / "cv").mkdir()
    (folder / "cv" / "cv.json").write_text("{}")
    shutil.copytree(folder / "run", folder / "cv" / "fold_1")
    return folder


def refused(result: tuple[int, str, str], path: Path, *facts: str) -> None:
    """Exit 2 and one line on stderr naming `path` (and each fact), no traceback."""
    rc, _, err = result
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1, err
    assert lines[0].startswith("dlc: error: ") and str(path) in lines[0], lines[0]
    for fact in facts:
        assert fact in lines[0], lines[0]


def unchanged(*paths: Path):
    """The bytes of `paths` now, to compare after a refusal (a file that does not exist: None)."""
    return [p.read_bytes() if p.exists() else None for p in paths]


# ------------------------------------------------------------------------------------------------ predict

@pytest.mark.parametrize("name", ["model.pt", "run.json", "metrics.json", "history.json", "iris.dlspec"])
def test_predict_refuses_the_files_of_its_run(work, name):
    target = work / "run" / name
    before = unchanged(target)
    refused(run_cli("predict", work / "run", "--input", work / "four.csv", "--output", target), target,
            "dlc run folder")
    assert unchanged(target) == before


def test_predict_refuses_the_files_of_a_cv_folder_and_its_folds(work):
    (work / "cv" / "fold_2").mkdir(exist_ok=True)
    for target in (work / "cv" / "fold_1" / "history.json", work / "cv" / "fold_2" / "metrics.json",
                   work / "cv" / "cv.json"):
        before = unchanged(target)
        refused(run_cli("predict", work / "run", "--input", work / "four.csv", "--output", target), target)
        assert unchanged(target) == before


def test_predict_refuses_its_own_input(work, tmp_path, monkeypatch):
    before = unchanged(work / "four.csv")
    refused(run_cli("predict", work / "run", "--input", work / "four.csv", "--output", work / "four.csv"),
            work / "four.csv", "same file as the input")
    # another spelling of the same file, and a link to it
    monkeypatch.chdir(work)
    refused(run_cli("predict", "run", "--input", "four.csv", "--output", "./run/../four.csv"),
            Path("./run/../four.csv"), "same file as the input")
    (tmp_path / "link.csv").symlink_to(work / "four.csv")
    refused(run_cli("predict", "run", "--input", "four.csv", "--output", tmp_path / "link.csv"),
            tmp_path / "link.csv", "same file as the input")
    assert unchanged(work / "four.csv") == before


def test_predict_writes_a_new_file_in_the_run_folder(work):
    target = work / "run" / "predictions.csv"
    rc, _, err = run_cli("predict", work / "run", "--input", work / "four.csv", "--output", target)
    try:
        assert rc == 0, err
        assert len(target.read_text().splitlines()) == 5  # a header and four rows
    finally:
        target.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------- export

def test_export_refuses_the_model_of_its_run(work):
    target = work / "run" / "model.pt"
    before = unchanged(target)
    refused(run_cli("export", work / "run", "--format", "onnx", "--output", target), target, "model.pt")
    assert unchanged(target) == before


def test_export_writes_elsewhere(work, tmp_path):
    pytest.importorskip("onnx")
    rc, out, err = run_cli("export", work / "run", "--format", "onnx", "--output", tmp_path / "m.onnx")
    assert rc == 0, err
    assert (tmp_path / "m.onnx").stat().st_size > 0


# ------------------------------------------------------------------------------------------------ lr-find

@pytest.mark.parametrize("name", ["run/model.pt", "run/curves.png", "cv/fold_1/curves.png"])
def test_lr_find_refuses_the_files_of_a_run(work, name):
    target = work / name
    before = unchanged(target)
    refused(run_cli("lr-find", work / "iris.dlspec", "--steps", "10", "--out", target), target)
    assert unchanged(target) == before


@pytest.mark.parametrize("name", ["lf.txt", "lf", "new/lf.pdf"])
def test_lr_find_writes_a_png_only_under_a_png_name(tmp_path, name):
    target = tmp_path / name
    refused(run_cli("lr-find", IRIS, "--steps", "10", "--out", target), target, "ending in .png")
    assert not target.exists() and not (tmp_path / "new").exists()


def test_lr_find_writes_a_new_png(work, tmp_path):
    target = tmp_path / "made" / "lf.png"  # its folder made, as documented
    rc, _, err = run_cli("lr-find", work / "iris.dlspec", "--steps", "10", "--out", target)
    assert rc == 0, err
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------------ compile

@pytest.mark.parametrize("emit", ["torch", "ir"])
def test_compile_refuses_its_own_spec(work, emit):
    spec = work / "iris.dlspec"
    before = unchanged(spec)
    refused(run_cli("compile", spec, "--emit", emit, "-o", spec), spec, "same file as the input")
    assert unchanged(spec) == before


def test_compile_refuses_the_spec_data_file(tmp_path):
    rows = "".join(f"{i % 7}.5,{i % 5}.25,{i % 3}.0,{i % 2}.75,{i % 3}\n" for i in range(30))
    (tmp_path / "d.csv").write_text("a,b,c,d,y\n" + rows)
    spec = tmp_path / "m.dlspec"
    spec.write_text(IRIS.read_text().replace("source: iris ", "source: csv(\"d.csv\") "))
    assert 'csv("d.csv")' in spec.read_text()
    before = unchanged(tmp_path / "d.csv")
    refused(run_cli("compile", spec, "--emit", "torch", "-o", tmp_path / "d.csv"), tmp_path / "d.csv",
            "same file as the input")
    assert unchanged(tmp_path / "d.csv") == before


def test_compile_refuses_the_spec_of_a_run(work):
    target = work / "run" / "iris.dlspec"
    before = unchanged(target)
    refused(run_cli("compile", IRIS, "--emit", "torch", "-o", target), target, "dlc run folder")
    assert unchanged(target) == before


def test_compile_writes_a_new_script(work, tmp_path):
    rc, _, err = run_cli("compile", work / "iris.dlspec", "--emit", "torch", "-o", tmp_path / "train.py")
    assert rc == 0, err
    assert "import torch" in (tmp_path / "train.py").read_text()


# --------------------------------------------------------------------------------------------------- plot

@pytest.mark.parametrize("name", ["run/curves.png", "run/history.json", "cv/fold_1/curves.png"])
def test_plot_refuses_the_files_of_a_run(work, name):
    target = work / name
    before = unchanged(target)
    refused(run_cli("plot", work / "run", "--out", target), target)
    assert unchanged(target) == before


@pytest.mark.parametrize("name, instead", [("p.txt", "p.png"), ("p", "p.png"), ("p.pdf", "p.png"),
                                           (".png", "plot.png")])
def test_plot_writes_a_png_only_under_a_png_name(work, tmp_path, name, instead):
    target = tmp_path / name
    refused(run_cli("plot", work / "run", "--out", target), target, "ending in .png",
            f"such as {tmp_path / instead}")  # (not '.png.png' for the hidden file '.png')
    assert sorted(tmp_path.iterdir()) == []


def test_plot_writes_a_new_png_in_a_run_folder(work):
    target = work / "run" / "overlay.png"
    rc, out, err = run_cli("plot", work / "run", "--out", target)
    try:
        assert rc == 0, err
        assert out.strip() == str(target) and target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        target.unlink(missing_ok=True)


# ---------------------------------------------------------------------- the spec and data of a run

@pytest.fixture(scope="module")
def csv_run(tmp_path_factory) -> Path:
    """`run/` trained (1 epoch, torch) from m.dlspec, which reads d.csv: run.json records both."""
    folder = tmp_path_factory.mktemp("csvrun")
    rows = "".join(f"{i % 7}.5,{i % 5}.25,{i % 3}.0,{i % 2}.75,{i % 3}\n" for i in range(30))
    (folder / "d.csv").write_text("a,b,c,d,y\n" + rows)
    (folder / "m.dlspec").write_text(IRIS.read_text().replace("source: iris ", "source: csv(\"d.csv\") "))
    (folder / "four.csv").write_text(FOUR)
    rc, _, err = run_cli("run", folder / "m.dlspec", "--backend", "torch", "--out", folder / "run",
                         "--epochs", "1", "--quiet")
    assert rc == 0, err
    return folder / "run"


@pytest.mark.parametrize("name", ["m.dlspec", "d.csv"])
def test_predict_refuses_the_spec_and_data_file_of_its_run(csv_run, name):
    target = csv_run.parent / name
    before = unchanged(target)
    refused(run_cli("predict", csv_run, "--input", csv_run.parent / "four.csv", "--output", target), target,
            "it is the run's spec" if name.endswith(".dlspec") else "it is the run's data file")
    assert unchanged(target) == before


@pytest.mark.parametrize("name", ["m.dlspec", "d.csv", "run/m.dlspec"])
def test_export_refuses_the_spec_and_data_file_of_its_run(csv_run, name, monkeypatch):
    target = csv_run.parent / name
    before = unchanged(target)
    refused(run_cli("export", csv_run, "--format", "onnx", "--output", target), target)
    monkeypatch.chdir(csv_run.parent)  # a relative spelling of the same file
    refused(run_cli("export", "run", "--format", "onnx", "--output", f"./run/../{name}"),
            Path(f"./run/../{name}"))
    assert unchanged(target) == before


LONG = "a" * 300  # (over the 255 bytes a file name may have: Path.is_dir raised OSError, a bare errno line)


@pytest.mark.parametrize("argv,option", [
    (["predict", "{run}", "--input", "{csv}", "--output", LONG + ".csv"], "--output"),
    (["export", "{run}", "--output", LONG + ".onnx"], "--output"),
    (["compile", "{spec}", "--emit", "torch", "-o", LONG + ".py"], "--output"),
    (["plot", "{run}", "--out", LONG + ".png"], "--out"),
    (["lr-find", "{spec}", "--out", LONG + ".png"], "--out"),
], ids=lambda v: v[0] if isinstance(v, list) else None)
def test_an_output_name_too_long_is_one_line(work, argv, option):
    names = {"run": work / "run", "csv": work / "four.csv", "spec": work / "iris.dlspec"}
    rc, out, err = run_cli(*[a.format(**names) if a.startswith("{") else a for a in argv])
    assert rc in (1, 2) and out == "" and "Traceback" not in err and "OSError" not in err, err
    assert err.startswith(f"dlc: error: {option} {LONG}") and "File name too long" in err, err
    assert err.count("\n") == 1, err
