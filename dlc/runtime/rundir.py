"""The run directory: the spec, ir.json, history.csv/json, curves.png, metrics.json, env.json, the model.

A run directory holds one run. `dlc run --out DIR` (and `dlc cv`) refuses a folder that is not empty unless
asked to replace it, and replaces only a folder dlc wrote (see prepare_out); `dlc tune --out DIR` continues
the search of a tune folder. Every file is written to a temporary name and renamed over its target, and
run.json's `finished` (written last) says the run is complete: see dlc.runtime.runs.run_state."""

from __future__ import annotations

import contextlib
import csv
import errno
import fnmatch
import hashlib
import io
import json
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from dlc.compiler.diagnostics import DlcError
from dlc.runtime.runlock import FolderBusy, busy


class OutFolderError(DlcError):
    """An --out folder that cannot be used as it is (not empty, not a dlc folder, a file): a usage error."""


# what dlc writes in a run folder (cv folds and tune trials included); anything else is someone else's
DLC_FILES = ("*.dlspec", "ir.json", "run.json", "env.json", "history.json", "history.csv", "metrics.json",
             "curves.png", "checkpoint.npz", "model.pt", "model.keras", "model.json", "log.txt",
             "events.out.tfevents.*", "cv.json", "tune.json", "study.db", "study.db-*", "result.json",
             "job.json", "evidence.json", "gradients.png", "importance.png", "*.dlc-lock", "*.tmp",
             "*.tmp.*")
# what dlc's commands on a finished run write in its folder by default (`dlc export`'s model.onnx; doctor's
# doctor.dlspec, gradients.png and importance.png are in DLC_FILES): still dlc's for --replace, but not a
# file a run writes, so an output option may name it (`dlc export RUN --output RUN/model.onnx`)
RUN_OUTPUTS = ("model.onnx",)
DLC_DIRS = re.compile(r"fold_\d+|trials|\d+|model\.tmp")
KIND_NAMES = {"run": "a dlc run", "cv": "a dlc cross-validation run", "tune": "a dlc tune run"}


def folder_kind(p: Path) -> str | None:
    """"tune", "cv" or "run" for a folder dlc wrote (by the files that mark each), None otherwise."""
    names = {c.name for c in p.iterdir()}
    if names & {"tune.json", "study.db"} or (p / "trials").is_dir():
        return "tune"
    if "cv.json" in names or any(re.fullmatch(r"fold_\d+", n) and (p / n).is_dir() for n in names):
        return "cv"
    if names & {"ir.json", "run.json", "history.json"}:
        return "run"
    return None


def dlc_file_kind(path: str | Path) -> str | None:
    """"run", "cv" or "tune" when `path` (a file, written or not) is one of dlc's own files in a folder dlc
    wrote: a name DLC_FILES matches, in a run, cv or tune folder or in one of its folds or trials
    (RUN/model.pt, RUN/fold_1/history.json), links resolved. None otherwise (RUN/predictions.csv)."""
    p = Path(path).resolve()
    if not any(fnmatch.fnmatchcase(p.name, pat) for pat in DLC_FILES):
        return None
    folder = p.parent
    while True:
        try:
            kind = folder_kind(folder) if folder.is_dir() else None
        except OSError:
            kind = None
        if kind is not None or not DLC_DIRS.fullmatch(folder.name) or folder.parent == folder:
            return kind
        folder = folder.parent


def foreign_entries(p: Path, prefix: str = "") -> list[str]:
    """The entries under `p` that dlc never writes, a run's exports included (links included: never
    followed), as relative paths."""
    out = []
    for c in sorted(p.iterdir()):
        rel = prefix + c.name
        if c.is_symlink():
            out.append(rel)
        elif c.is_dir():
            out.extend(foreign_entries(c, rel + "/") if DLC_DIRS.fullmatch(c.name) else [rel + "/"])
        elif not any(fnmatch.fnmatchcase(c.name, pat) for pat in DLC_FILES) and c.name not in RUN_OUTPUTS:
            out.append(rel)
    return out


def folder_in_the_way(run: Path, but: tuple[str, ...] = ()) -> str | None:
    """The first name of a file dlc writes in a run folder (DLC_FILES without a wildcard, nor in `but`) that
    is a folder there (a link to one too): writing the file over it fails. None when there is none."""
    for name in DLC_FILES:
        if not any(c in name for c in "*?[") and name not in but and (run / name).is_dir():
            return name
    return None


def _listed(names: list[str], most: int = 3) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def prepare_out(out: str | Path, *, replace: bool = False, kind: str = "run",
                spec_file: str | Path | None = None, check_only: bool = False) -> Path:
    """The folder `out`, ready for a new run of `kind` ("run", "cv" or "tune"): created when missing; a
    non-empty one is refused (OutFolderError) unless `replace` (then a folder dlc wrote is deleted whole
    first, never one with other files, the spec being run or the current directory in it). For "tune", a
    folder of an earlier tune run is used as it is (the search continues). `check_only`: refuse as it
    would, but change nothing."""
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise OutFolderError(f"--out {out} is a file, not a folder")
    if p.is_symlink() and not p.exists():  # (mkdir said only "File exists")
        raise OutFolderError(f"--out {out} is a symbolic link that leads nowhere (or in a loop); give a "
                             "folder, or make the one it points to")
    if not p.exists():
        if not check_only:
            try:
                p.mkdir(parents=True)
            except OSError as e:
                raise OutFolderError(f"cannot create --out {out}: {e.strerror or e}") from None
        return p
    if not any(p.iterdir()):
        return p
    if (taken := _taken(p, kind)) is not None:  # (never replaced, nor trained into, while another dlc trains)
        raise OutFolderError(f"--out {taken}")
    if kind == "tune":
        _check_tune_folder(out, p, spec_file)
        return p
    found, foreign = folder_kind(p), foreign_entries(p)
    if found is None or foreign:
        held = _listed(foreign or [c.name for c in sorted(p.iterdir())])
        also = "; --replace deletes only a folder dlc wrote" if replace else ""
        raise OutFolderError(f"--out {out} is not empty and is not a dlc run folder (it holds {held}); give "
                             f"a new or empty folder{also}")
    if not replace:
        raise OutFolderError(_in_use(out, p, found))
    _check_replace(out, p, spec_file)
    if not check_only:
        # (an --out that is a link to a run folder replaces that run and keeps the link; rmtree refuses links)
        target = p.resolve()
        shutil.rmtree(target)
        target.mkdir(parents=True)
    return p


def _taken(p: Path, kind: str) -> FolderBusy | None:
    """Why the folder `p` cannot take a run of `kind` now: the process holding its lock (runlock.busy), None
    when free. A `dlc tune` searching a tune folder holds it (for `dlc runs`), and another `dlc tune` shares
    its study there (README: they take turns through the study's lock), so it is free to a search."""
    if kind == "tune" and folder_kind(p) == "tune":
        return None
    return busy(p)


def _check_replace(out, p: Path, spec_file: str | Path | None) -> None:
    """--replace never deletes the spec being run or the current directory."""
    if spec_file is not None and _inside(Path(spec_file), p):
        raise OutFolderError(f"--replace would delete {out}, which holds the spec being run ({spec_file}); "
                             "copy the spec out of it first, or give another --out")
    if _inside(Path.cwd(), p):
        raise OutFolderError(f"--replace would delete {out}, the current directory or one above it; run from "
                             "elsewhere or give another --out")


def _check_tune_folder(out, p: Path, spec_file: str | Path | None) -> None:
    """A non-empty --out of `dlc tune` must be an earlier tune run's folder (its search continues). Files a
    user put there beside dlc's (notes, a `dlc plot` PNG) are left alone: a search writes only its own."""
    found, foreign = folder_kind(p), foreign_entries(p)
    if found == "tune":
        return
    if spec_file is not None and [c.name for c in p.iterdir()] == [Path(spec_file).name] \
            and (p / Path(spec_file).name).read_bytes() == Path(spec_file).read_bytes():
        return  # an earlier `dlc tune` stopped right after copying its spec
    what = KIND_NAMES[found] if found and not foreign else \
        f"files dlc did not write: {_listed(foreign or [c.name for c in sorted(p.iterdir())])}"
    raise OutFolderError(f"--out {out} is not empty and is not a dlc tune run (it holds {what}); give a new "
                         "or empty folder (the --out of an earlier `dlc tune` continues that search)")


def _in_use(out, p: Path, found: str) -> str:
    """The refusal of an --out that holds a dlc folder: an unfinished run is offered `--resume` (unless that
    would be refused too: runs.check_out says why instead)."""
    resume = ""
    if found == "run" and not _finished_mark(p):
        resume = f", or continue it with `dlc run --resume {out}`"
    return (f"--out {out} already holds {KIND_NAMES[found]}; give a new folder, add --replace to delete it "
            f"first{resume}")


def _finished_mark(p: Path) -> bool:
    """run.json says finished (a run folder without a readable run.json counts as not finished)."""
    if not (p / "run.json").is_file():  # (reading a pipe would wait forever)
        return False
    try:
        return bool(json.loads((p / "run.json").read_text()).get("finished"))
    except (OSError, ValueError, AttributeError):
        return False


def new_run_dir(spec_name: str, backend: str, out: str | None, root: str = "runs", *, replace: bool = False,
                kind: str = "run", spec_file: str | Path | None = None) -> Path:
    """`out` made ready by prepare_out, or a fresh folder under `root` named after the spec, the backend and
    the time."""
    if out:
        return prepare_out(out, replace=replace, kind=kind, spec_file=spec_file)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{_folder_name(spec_name)}-{backend}-{stamp}"
    p, i = base, 1
    while p.exists():
        i += 1
        p = Path(f"{base}-{i}")
    p.mkdir(parents=True)
    return p


# the most characters of a model's name a fresh run folder's name takes: a name may be as long as the spec
# (a file system takes 255 bytes per name), and the folder's name is the name, the backend and the time
MAX_FOLDER_NAME = 100


def _folder_name(spec_name: str) -> str:
    """`spec_name` (with its `-cv`/`-tune` suffix) as a run folder's name begins: a name longer than
    MAX_FOLDER_NAME keeps its start and its end, joined by `...`."""
    if len(spec_name) <= MAX_FOLDER_NAME:
        return spec_name
    return f"{spec_name[:MAX_FOLDER_NAME - 23]}...{spec_name[-20:]}"


@contextlib.contextmanager
def replacing(path: Path, suffix: str = ".tmp"):
    """The temporary name to write `path` under: renamed over `path` when the block ends (a reader never sees
    half a file), deleted when it fails, so a full disk or a Ctrl-C leaves no half-written copy taking the
    space that writing it again needs."""
    tmp = path.with_name(path.name + suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp)
            else:
                tmp.unlink()
        raise


def disk_full(exc: BaseException) -> str | None:
    """Why `exc`, or an exception it was raised from, says the disk (or quota) is full: an OSError's text,
    or SQLite's 'database or disk is full' under Optuna's StorageInternalError ("An exception is raised
    during the commit. This typically happens due to invalid data ..."). None when it does not."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return e.strerror or str(e)
        if "database or disk is full" in str(e):
            return "the database or disk is full"
        e = e.__cause__ or e.__context__
    return None


@contextlib.contextmanager
def output_file(path: str | Path):
    """The name to write a user's output file under (`predict --output`, `export`, `plot --out`, `compile
    -o`): a temporary one beside it, renamed over it when done (see `replacing`; it ends as the file does,
    `.npz`, `.png`), so that a failure such as a full disk keeps the file it would have replaced and leaves
    no half-written one. A device, pipe or link (`/dev/stdout`) is written as it is."""
    path = Path(path)
    if path.is_symlink() or path.exists() and not path.is_file():
        yield path
        return
    with replacing(path, ".tmp" + path.suffix) as tmp:
        yield tmp


def write_text(path: Path, text: str) -> None:
    """Atomic: write a temporary file, then rename it over the target (a reader never sees half a file)."""
    with replacing(path) as tmp:  # (surrogateescape: a folder's name not in UTF-8, quoted in the text)
        tmp.write_text(text, encoding="utf-8", errors="surrogateescape")


def save_model(run: Path, session) -> list[str]:
    """The session's model files, atomically as every file of a run: the backend writes them into
    `run/model.tmp/`, then each is renamed over its target (a kill never leaves half a model.keras)."""
    tmp = run / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        names = session.save(tmp)
        record_digests(run, tmp, names)
        for name in names:
            os.replace(tmp / name, run / name)
    finally:  # (a half-written model left behind would hold the space a full disk needs back)
        shutil.rmtree(tmp, ignore_errors=True)
    return names


def record_digests(run: Path, tmp: Path, names: list[str]) -> None:
    """model.json's `sha256`: the digest of each model file just written to `tmp` and of the run's ir.json,
    so that loading the run (dlc.runtime.serve.check_digests) notices a file copied from another run of the
    same shapes, which would load without error."""
    meta = tmp / "model.json"
    if "model.json" not in names:
        return
    model = json.loads(meta.read_text())
    model["sha256"] = {name: file_digest(tmp / name) for name in names if name != "model.json"}
    if (run / "ir.json").is_file():
        model["sha256"]["ir.json"] = file_digest(run / "ir.json")
    meta.write_text(json.dumps(model, indent=2))


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def matplotlib_config() -> None:
    """Before matplotlib is first imported: where its config and cache folder (MPLCONFIGDIR, else
    ~/.config/matplotlib) cannot be written (HOME unset or read-only, a container run as another user),
    matplotlib made a temporary one and printed a warning of two long lines on stderr, on every command that
    draws. It gets a folder of its own in the temporary directory instead, kept between commands (its font
    cache is built once), owned by this user."""
    if "MPLCONFIGDIR" in os.environ or "matplotlib" in sys.modules or not hasattr(os, "getuid"):
        return
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "matplotlib"
    try:
        config.mkdir(parents=True, exist_ok=True)
        if os.access(config, os.W_OK | os.X_OK):
            return
    except (OSError, RuntimeError):  # (RuntimeError: Path.home() without HOME or a passwd entry)
        pass
    import tempfile

    own = Path(tempfile.gettempdir()) / f"dlc-matplotlib-{os.getuid()}"
    try:
        own.mkdir(mode=0o700, exist_ok=True)
        st = own.lstat()
    except OSError:
        return
    if own.is_dir() and not own.is_symlink() and st.st_uid == os.getuid():
        os.environ["MPLCONFIGDIR"] = str(own)


def drawn_literally(text: str) -> str:
    """A run's name (or a title holding one) as matplotlib draws it literally: `$` escaped (a folder `r$x^$`
    was parsed as mathtext and failed to draw), bytes that are not UTF-8 (a folder named in another
    encoding) as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("$", r"\$")


def figure(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (6.4, 4.8)):
    """(figure, axes: an nrows x ncols array) drawn with Agg, through matplotlib's object-oriented API: no
    pyplot (its backend selection and figure manager), no global state; the figure is freed with its last
    reference, nothing to close."""
    matplotlib_config()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def save_figure(fig, path: Path) -> Path:
    """A matplotlib figure as a PNG, atomically (temporary file, then rename)."""
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return path


def write_json(path: Path, obj) -> None:
    """Atomic: write a temporary file, then rename it over the target."""
    write_text(path, json.dumps(obj, indent=2, default=float))


def update_json(path: Path, **changes) -> None:
    """Set keys of a JSON object file, atomically."""
    obj = json.loads(path.read_text())
    obj.update(changes)
    write_json(path, obj)


def json_rows(rows: list, **dumps) -> str:
    """A JSON array of per-epoch rows (dicts whose first key is "epoch"), a row per line, encoded in one call
    of the C encoder: a file rewritten after every epoch with `indent=2` (Python's own encoder, item by item)
    made a long run quadratic (400 epochs of specs/guide/overfit_none: 21 of 43 s re-encoding history.json
    and evidence.json). The line breaks go where a row's "epoch" key starts; any other array is one line."""
    return _rows_laid_out(json.dumps(rows, **dumps))


def _rows_laid_out(text: str) -> str:
    """json_rows' layout of an encoded array."""
    if len(text) <= 2:
        return text
    return "[\n  " + text[1:-1].replace('}, {"epoch": ', '},\n  {"epoch": ') + "\n]"


class EncodedRows:
    """Rows (dicts) as last encoded for one file, each once: copies of the rows and their JSON. A file
    rewritten after every epoch with every row re-encoded made a long run quadratic (history.json,
    checkpoint.npz's loop state: 600 epochs of a small model, 7 ms an epoch by the end, more than its
    training)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.json: list[str] = []

    def update(self, rows: list[dict]) -> int:
        """Encode what differs from the rows last seen: the rows from the first that changed (a resumed
        history is cut back; a row is compared by value). The number of rows kept."""
        same = _same_start(self.rows, rows)
        del self.rows[same:], self.json[same:]
        for row in rows[same:]:
            self.rows.append(dict(row))
            self.json.append(json.dumps(row, default=float))
        return same

    def joined(self) -> str:
        """json.dumps(rows, default=float) without its brackets: a list's items' encodings joined by ", "."""
        return ", ".join(self.json)


def _same_start(old: list[dict], new: list[dict]) -> int:
    """How many rows at the start of `new` equal those of `old`: compared all at once in C when they all
    do (a run's rows only grow), else one by one."""
    n = min(len(old), len(new))
    if old[:n] == new[:n]:
        return n
    return next(i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b)


class _EncodedRows(EncodedRows):
    """A history's rows as last written to one run folder, each encoded once: their JSON (EncodedRows), laid
    out as json_rows lays them out (`lines`: laying out the whole array again was most of the time left) and
    their CSV lines (under `keys`)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.keys: list[str] = []
        self.csv: list[str] = []

    def update(self, rows: list[dict]) -> int:
        """EncodedRows.update; the CSV lines all again when the columns change."""
        had = len(self.rows)
        same = super().update(rows)
        del self.lines[same:]
        for i in range(len(self.lines), len(self.json)):
            self.lines.append(_laid_out(self.json[i - 1] if i else None, self.json[i]))
        # (the columns of the rows added, after those of the rows before, when none was cut)
        keys = list(dict.fromkeys([*self.keys, *(k for r in rows[same:] for k in r)] if same == had
                                  else (k for r in rows for k in r)))
        if keys != self.keys:
            self.keys, self.csv = keys, []
        del self.csv[min(same, len(self.csv)):]
        for row in rows[len(self.csv):]:
            self.csv.append(_csv_line(keys, row))
        return same

    def history_json(self) -> str:
        """json_rows(rows, default=float)."""
        return "[\n  " + "".join(self.lines) + "\n]" if self.lines else "[]"

    def history_csv(self) -> str:
        return _csv_line(self.keys, {k: k for k in self.keys}) + "".join(self.csv)


def _laid_out(before: str | None, row: str) -> str:
    """An encoded row's part of _rows_laid_out's text: the separator from the row `before` it (encoded; None
    for the first), then the row, each '}, {"epoch": ' broken after its comma. (The pattern cannot overlap
    itself, nor span more than one separator: replacing it row by row is replacing it in the whole.)"""
    laid = row.replace('}, {"epoch": ', '},\n  {"epoch": ')
    if before is None:
        return laid
    return (",\n  " if before.endswith("}") and row.startswith('{"epoch": ') else ", ") + laid


def _csv_line(keys: list[str], row: dict) -> str:
    """One row as csv.DictWriter writes it (missing keys empty, \\r\\n at its end)."""
    out = io.StringIO()
    csv.DictWriter(out, fieldnames=keys).writerow(row)
    return out.getvalue()


# the histories written by this process, by run folder (a few: cv folds and tune trials write theirs in turn)
_WRITTEN: dict[Path, _EncodedRows] = {}
_WRITTEN_MOST = 8


def recent(cache: dict, key, make):
    """cache[key], made when missing, kept as the most recent of the cache's _WRITTEN_MOST entries."""
    value = cache.pop(key, None) or make()
    cache[key] = value  # (the most recent last)
    while len(cache) > _WRITTEN_MOST:
        del cache[next(iter(cache))]
    return value


def write_history(run: Path, rows: list[dict]) -> None:
    """history.json and history.csv, atomically, each row encoded once (_EncodedRows)."""
    enc = recent(_WRITTEN, run, _EncodedRows)
    enc.update(rows)
    write_text(run / "history.json", enc.history_json() + "\n")
    if not rows:
        return
    with replacing(run / "history.csv") as tmp, open(tmp, "w", newline="") as fh:
        fh.write(enc.history_csv())


def copy_spec(run: Path, spec_path: str) -> None:
    with replacing(run / Path(spec_path).name) as tmp:
        shutil.copyfile(spec_path, tmp)


def env_info(backend: str, device: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:
        dlc_version = version("dlc")
    except PackageNotFoundError:  # running from a source tree that is not installed
        dlc_version = None
    info = {"dlc": dlc_version, "python": sys.version.split()[0], "platform": platform.platform(),
            "machine": platform.machine(), "processor": platform.processor() or None,
            "cpu_count": os.cpu_count(), "backend": backend, "device": device}
    for mod in ("torch", "tensorflow", "keras", "numpy"):
        m = sys.modules.get(mod)
        if m is not None:
            info[mod] = getattr(m, "__version__", None)
    return info


STAMP = "%Y-%m-%dT%H:%M:%S"  # the local time a run, cv or tune folder records (`started`, `finished`)


def stamp() -> str:
    """Now, as the run folders record it (STAMP): `dlc runs` reads it back to date and order them."""
    return time.strftime(STAMP)


def run_info(args, spec, data) -> dict:
    """What `dlc evaluate`, `dlc predict` and `--resume` need to rebuild the run: where the spec and its data
    live, the backend, and the input preprocessing fitted on the training part."""
    spec_path = Path(args.spec).resolve()
    return {"spec": str(spec_path), "spec_dir": str(spec_path.parent), "backend": args.backend,
            "device": getattr(args, "device", "auto"), "dtype": spec.dtype, "precision": spec.train.precision,
            "processes": getattr(args, "processes", 1),  # dlc run --nproc: the data-parallel processes
            "compile": getattr(args, "compile", False),  # dlc run --compile: the torch step compiled
            "seed": spec.seed,
            "input": list(spec.input), "num_classes": data.num_classes, "normalize": spec.data.normalize,
            "preprocessing": data.preprocessing(),
            # what was read (file, rows, whether a header row was skipped) and a CSV target's class names
            "data_read": getattr(data, "read", None), "class_names": getattr(data, "class_names", None),
            "started": stamp(),
            # set when the run ends: the time its last file was written, or why it failed
            "finished": None, "failed": None}


def plot_curves(run: Path, rows: list[dict], title: str, best_epoch: int | None = None) -> None:
    """curves.png: one panel for the loss and one per metric, train vs validation against epochs, and a panel
    for the learning rate; a dotted line marks the best epoch when early stopping kept one."""
    if not rows:
        return
    skip = {"epoch", "lr", "time_s", "samples_per_s"}
    bases = [k for k in rows[0] if k not in skip and not k.startswith("val_")]
    panels = bases + ["lr"]
    ncols = 2 if len(panels) == 4 else min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = figure(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows))
    epochs = [r["epoch"] for r in rows]
    marker = "o" if len(rows) <= 30 else None
    for ax, key in zip(axes.flat, panels, strict=False):  # the grid may have more cells than panels
        if key == "lr":
            _plot_lr(ax, epochs, [r["lr"] for r in rows], marker)
        else:
            _plot_metric(ax, key, rows, epochs, marker)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="tab:green", linestyle=":", linewidth=1.2,
                       label=f"best epoch ({best_epoch})" if key != "lr" else None)
        if key == panels[0]:
            ax.legend(fontsize="small")  # the same colours in every panel
        epoch_axis(ax, epochs)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, run / "curves.png")


def epoch_axis(ax, epochs: list[int]) -> None:
    """An x axis of whole epochs: matplotlib labels a run of one epoch 0.945 to 1.050, so its one epoch gets
    the one tick, centred."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if epochs and min(epochs) == max(epochs):
        ax.set_xticks([epochs[0]])
        ax.set_xlim(epochs[0] - 1, epochs[0] + 1)


def lr_scale(ax, lrs: list[float]) -> None:
    """The learning rate's y axis: a log scale when it spans more than a factor of 10, with plain tick labels
    (0.01, not 10^-2) either way."""
    if min(lrs) > 0 and max(lrs) / min(lrs) > 10:
        log_y(ax, lrs)
    else:
        ax.yaxis.set_major_formatter(_plain_ticks())


def _plain_ticks():
    """Tick labels without scientific notation: 12,345 or 0.01234."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}")


def log_y(ax, values: list) -> None:
    """A log y axis for `values` (curves.png, `dlc runs --plot`, gradients.png), with as many labelled ticks
    as a panel holds without their labels touching: plain steps within a decade (its multiples 1..9 left
    the top of 0.075..0.19 unlabelled), 1, 2, 3, 5 of each decade over up to 1.5 decades, 1, 2, 5 up to 3,
    1 and 3 up to 4 (an update ratio of 1e-4..0.3 had no label above 0.1), the powers of 10 beyond (every
    few of them over more than 11 decades). A fixed 1, 2, 3, 5 put 24 labels on top of each other on a loss
    going from 2 to 5e-6 over 1,500 epochs."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    finite = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    decades = math.log10(max(finite) / min(finite)) if finite else 0.0
    subs = tuple(map(float, range(1, 10))) if decades < 1 else (1.0, 2.0, 3.0, 5.0) if decades <= 1.5 \
        else (1.0, 2.0, 5.0) if decades <= 3 else (1.0, 3.0) if decades <= 4 else (1.0,)
    ax.set_yscale("log")
    # (within a decade, the 1..9 multiples left the top of 0.075..0.19 unlabelled: plain steps there)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6) if decades < 1 else
                               LogLocator(base=10, subs=subs, numticks=12))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: tick_text(v)))
    ax.yaxis.set_minor_formatter(NullFormatter())


def tick_text(v: float) -> str:
    """A log axis' tick label: 2,000 and 0.05, and a power of ten as 1e21 (a diverged loss's 1e21 written
    out, 1,000,000,000,000,000,042,420,637,374,017,961,984, took half the figure's width)."""
    if v != 0 and not 1e-4 <= abs(v) < 1e6:
        mantissa, _, exponent = f"{v:.3g}".partition("e")
        return f"{mantissa}e{int(exponent)}" if exponent else mantissa
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def _plot_lr(ax, epochs: list[int], lrs: list[float], marker: str | None) -> None:
    """The learning rate per epoch as steps; a log scale when it spans more than a factor of 10."""
    ax.step(epochs, lrs, where="mid", color="tab:gray")
    if marker:
        ax.plot(epochs, lrs, marker, color="tab:gray", markersize=3)
    lr_axis(ax, lrs)
    ax.set_title("learning rate")


def lr_axis(ax, lrs: list[float]) -> None:
    """The learning rate's axis (curves.png, `dlc runs --plot`): a log scale when it spans more than a factor
    of 10, else padded around its values, and a constant one labelled with its one value (not 0.00096 to
    0.00104)."""
    lr_scale(ax, lrs)
    lo, hi = min(lrs), max(lrs)
    if lo > 0 and hi / lo > 10:
        return
    pad = (hi - lo) * 0.1 or abs(hi) * 0.1 or 1.0
    ax.set_ylim(max(lo - pad, 0) if lo >= 0 else lo - pad, hi + pad)
    if hi == lo:
        ax.set_yticks([lo])


def loss_axis(ax, values: list) -> None:
    """The loss's axis (curves.png, `dlc runs --plot`): a log scale when its finite values span more than a
    factor of 10."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 10:
        log_y(ax, finite)


def _plot_metric(ax, key: str, rows: list[dict], epochs: list[int], marker: str | None) -> None:
    """A quantity on the training part and, when the rows have it, on the validation part; the loss on a log
    scale when it spans more than a factor of 10."""
    train = [r.get(key) for r in rows]
    val = [r.get(f"val_{key}") for r in rows] if f"val_{key}" in rows[0] else None
    ax.plot(epochs, train, label="train", color="tab:blue", marker=marker, markersize=3)
    if val is not None:
        ax.plot(epochs, val, label="validation", color="tab:orange", marker=marker, markersize=3)
    if key == "loss":
        loss_axis(ax, train + (val or []))
    ax.set_title(key)


def cannot_write_in(folder: str | Path) -> str | None:
    """Why no file can be made in the existing `folder` (the system's words), or None when one can: the one
    write probe of the commands that work first and write last (lr-find; the command line's output checks,
    dlc.cli.common), so that a folder they cannot write in is said before the work, not after it.
    A file is made and removed, as the output will be (os.access says yes to root on /proc, and its no does
    not say why: a read-only mount, permissions)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".dlc-write-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return e.strerror or str(e)
    return None


def nearest_existing(path: Path) -> Path:
    """`path`, or the nearest of its parents that is there (a folder, or a file in the way of the folders a
    command would make): what the output checks of the command line and lr-find look at."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
