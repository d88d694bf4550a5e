"""Compiling a spec on the command line: its warnings go to stderr, its errors raise SpecError (exit 2)."""

import os
import sys
from collections.abc import Iterable
from pathlib import Path

from dlc import api
from dlc.cli.errors import EXIT_SPEC, CommandError, error_line


def show_diagnostics(result) -> None:
    """Every diagnostic of a compiled spec (errors and warnings, in spec order) on stderr."""
    if result.diagnostics.items:
        print(result.render(), file=sys.stderr)


def compiled(path: str, folds_given: bool = False):
    """The compiled spec, its warnings printed; SpecError with every diagnostic when it has errors.
    `folds_given`: see tasks.checked."""
    named(("SPEC", path))  # ('' was "cannot read spec file '': it is a directory")
    result = api.checked(path, folds_given=folds_given)
    show_diagnostics(result)
    return result


def training_spec(path: str, seed=None, dtype=None, epochs=None, folds_given: bool = False):
    """The spec as `dlc run` trains it: compiled, runnable as it is, with the command line's overrides."""
    return api.trainable(compiled(path, folds_given), seed=seed, dtype=dtype, epochs=epochs)


def _is_folder(option: str, output: str, example: str) -> bool:
    """Whether `output` is a folder; a usage error (exit 2, one line) where even that cannot be asked: a name
    over the file system's limit, a folder that may not be looked in (OSError, which Path.is_dir raises)."""
    try:
        return Path(output).is_dir()
    except OSError as e:
        raise CommandError(error_line(f"{option} {output}: cannot write there ({e.strerror}); give another "
                                      f"file, such as {example}"), EXIT_SPEC) from None


def named(*given: tuple[str, str | None]) -> None:
    """Each (option, value) given names something: an empty value is a usage error (exit 2), not the
    current folder that Path("") is ("--output  is a folder"; export wrote RUN/model.onnx)."""
    for option, value in given:
        if value is not None and not value.strip():
            raise CommandError(error_line(f"{option} is empty; give a path"), EXIT_SPEC)


def not_a_folder(option: str, output: str, example: str) -> None:
    """An output FILE whose name ends in a slash names a folder: Path() drops the slash, and a missing `new/`
    was written as a file named `new` (a folder that is there is check_output_file's)."""
    if output.endswith(("/", os.sep)) and not _is_folder(option, output, example):
        raise CommandError(error_line(f"{option} {output} names a folder (it ends in /); give a file, such "
                                      f"as {Path(output) / example}"), EXIT_SPEC)


def check_output_file(option: str, output: str, example: str, *, makes_folder: bool = False,
                      stdout: bool = False) -> None:
    """An output FILE that cannot be written (a folder, a parent that is a file, or, unless the command
    `makes_folder`, a parent that is missing) is a usage error (exit 2: the path given is wrong), one line,
    found before any work is done. `example`: a file name to suggest inside a folder. `-` too, the Unix name
    of the standard output, which was written as a file named `-` (`stdout`: the command prints there
    without the option)."""
    if output.strip() == "-":
        instead = f", or leave out {option} to print to the standard output" if stdout else ""
        raise CommandError(error_line(f"{option} -: dlc does not take `-` for the standard output (it would "
                                      f"write a file named '-'); give a file name, such as {example}"
                                      f"{instead}"), EXIT_SPEC)
    not_a_folder(option, output, example)
    path = Path(output)
    if _is_folder(option, output, example):
        raise CommandError(error_line(f"{option} {output} is a folder; give a file, such as "
                                      f"{path / example}"), EXIT_SPEC)
    parent = path.parent
    if makes_folder:  # (the nearest folder that is there, or a file in the way of the folders to make)
        parent = api.nearest_existing(parent)
    if not parent.is_dir():
        why = "is a file, not a folder" if parent.exists() else "does not exist"
        raise CommandError(error_line(f"{option} {output}: {parent} {why}"), EXIT_SPEC)
    if not _written_in_place(path):
        check_can_write_in(option, output, parent)


def _written_in_place(path: Path) -> bool:
    """Whether an output is written as it is, not as a file made beside it and renamed over it: a link, a
    device or a pipe (`/dev/stdout`; rundir.output_file), whose folder need not be writable."""
    return path.is_symlink() or path.exists() and not path.is_file()


def check_can_write_in(option: str, given: str, folder: Path, fix: str | None = None) -> None:
    """A usage error (exit 2, one line) when no file can be made in `folder`, where the command writes
    `given` (a read-only mount, a folder of another user): found before the work, not after it, as lr-find
    finds it. `fix`: what to do instead (default: another place)."""
    why = api.cannot_write_in(folder)
    if why is not None:
        raise CommandError(error_line(f"{option} {given}: cannot write in {os.path.abspath(folder)} ({why}); "
                                      f"{fix or f'give {option} a place you can write'}"), EXIT_SPEC)


def check_out_folder(out: str | None) -> None:
    """The --out DIR of a command that trains into it (run, cv, tune) in a folder no file can be made in is a
    usage error (exit 2) before the spec is compiled, as lr-find's --out is, not a failure (exit 1) once its
    first file is written. A file in the way, and what the folder holds, are the runtime's checks (exit 2
    too: rundir.prepare_out)."""
    if out is not None and not out.strip():
        return
    if out is None:  # a fresh folder under runs/ in the current folder: the same checks, in those words
        fix = "give --out DIR, or run dlc from another folder"
        inside = api.inside_run(f"{DEFAULT_ROOT}/", "without --out, the default folder", fix)
        if inside is not None:
            raise CommandError(error_line(inside), EXIT_SPEC)
        folder = api.nearest_existing(Path(DEFAULT_ROOT))
        if folder.is_dir():
            check_can_write_in("the default folder", f"{DEFAULT_ROOT}/ (no --out)", folder, fix)
        return
    if (inside := api.inside_run(out)) is not None:
        raise CommandError(error_line(inside), EXIT_SPEC)
    folder = api.nearest_existing(Path(out))
    if folder.is_dir():
        check_can_write_in("--out", out, folder)


DEFAULT_ROOT = "runs"  # where run, cv and tune make a fresh run folder without --out (rundir.new_run_dir)


RUN_FOLDER = "a run directory (the folder `dlc run` wrote)"


def check_run_folder(option: str, given: str | None, what: str = RUN_FOLDER,
                     made_by: str | None = "dlc run") -> None:
    """A run folder argument (RUN, --resume RUN, --refine RUN, runs' DIR) that cannot be one, as the path
    alone tells: a file, a device or pipe, or a path through a file, is a usage error (exit 2), one line,
    before any work, as an output FILE that is a folder is. A path that is not there is left to the command
    (exit 1, "no such run directory"), as a missing input file is: the path is well formed, and what it names
    may be mistyped or gone; a folder that holds no run is the command's too (exit 1, as a damaged run).
    `what`: the folder it takes, in words; `made_by`: the command that takes a spec instead (a .dlspec given
    as the run: how to run it), None for no such hint."""
    if given is None or not given.strip():
        return  # (named() says an empty one)
    path = Path(given)
    try:
        found = api.nearest_existing(path)
        if found.is_dir():
            return
    except OSError:  # (a name too long, a folder it may not look in: the command says so)
        return
    if found != path:
        raise CommandError(error_line(f"{option} {given}: {found} is a file, not a folder"), EXIT_SPEC)
    kind = "a file" if path.is_file() else "a special file (a pipe, a socket or a device)"
    hint = f"; a spec is given as SPEC: `{made_by} {given}`" if made_by and path.suffix == ".dlspec" else ""
    raise CommandError(error_line(f"{option} {given} is {kind}, not {what}{hint}"), EXIT_SPEC)


def check_input_file(option: str, given: str | None, kinds: str) -> None:
    """An input FILE option that names a folder, something that is not a regular file (/dev/null, a pipe) or
    a file of a kind dlc does not read (by its name's ending) is a usage error (exit 2), before any work; a
    file that is missing is left to the command (exit 1). `kinds`: the files it takes, as its line says
    them, e.g. "a .csv, .npz or .npy file"."""
    if given is None:
        return
    refusal = api.feature_file_refusal(Path(given), kinds)
    if refusal is not None:
        raise CommandError(error_line(f"{option} {given}{refusal}"), EXIT_SPEC)


def check_output_target(option: str, output: str, example: str, *,
                        inputs: Iterable[str | Path | tuple[str | Path, str]] = (),
                        suffix: str | None = None) -> None:
    """The one rule of every command's output FILE option (predict, export and compile --output, plot and
    lr-find --out), checked before anything is written: a usage error (exit 2, one line naming the path and
    why) when `output` is the same file as one of the command's `inputs` (its --input, SPEC, the spec's data
    files), when it is a file dlc writes in a run, cv or tune folder (RUN/model.pt, RUN/run.json,
    RUN/fold_1/history.json; a new name such as RUN/predictions.csv is fine), or, with `suffix` (".png"),
    when its name does not end with it. A folder is left to the command's own check. `example`: a file
    name to suggest instead. An input given as (path, what it is), such as (spec, "the run's spec"), is
    named so in the line ("it is the run's spec /.../m.dlspec"), not as "the input"."""
    path = Path(output)
    if _is_folder(option, output, example):
        return
    instead = path.parent / example
    given = [g if isinstance(g, tuple) else (g, None) for g in inputs]
    if (same := next(((str(g), what) for g, what in given if _same_file(path, Path(g))), None)) is not None:
        what = f"{same[1]} {same[0]}" if same[1] else f"the same file as the input {same[0]}"
        why = f"it is {what}: writing it would overwrite it; give another file, such as {instead}"
    elif (owner := api.run_file_owner(path)) is not None:
        why = (f"it is the {path.name} of {owner} folder: writing it would damage the run; give a "
               f"new name, such as {instead}")
    elif suffix is not None and path.suffix.lower() != suffix:
        has_name = path.name and not path.name.startswith(".")  # (`.png` is a hidden file named '.png')
        kind = suffix[1:].upper()
        why = (f"the file it writes is {'an' if kind[0] in 'AEIOU' else 'a'} {kind}: give a name ending in "
               f"{suffix}, such as "
               f"{path.with_suffix(suffix) if has_name else path.with_name(Path(example).name)}")
    else:
        return
    raise CommandError(error_line(f"{option} {output}: {why}"), EXIT_SPEC)


def run_inputs(run: str) -> list[tuple[Path, str]]:
    """The files the run RUN was trained from (its spec file, its data files), each with what it is ("the
    run's spec", "the run's data file"): what predict's and export's --output must not overwrite, as
    compile's must not overwrite its SPEC and data."""
    return api.run_inputs(run, named=True)


def _same_file(a: Path, b: Path) -> bool:
    """Whether `a` and `b` name one file (links and relative paths resolved; os.path.samefile when both
    exist)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except (OSError, ValueError, RuntimeError):  # (RuntimeError: a link that loops, from Path.resolve)
        return False


def write_output(option: str, output: str, text: str) -> None:
    """`text` written to the file `output` (checked first), an OSError as one line."""
    check_output_file(option, output, "out.txt")
    try:
        with api.output_file(output) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
    except OSError as e:
        raise CommandError(error_line(f"cannot write {option} {output}: {e.strerror or e}")) from None
