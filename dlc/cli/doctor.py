"""`dlc doctor RUN`: the tuning guides' diagnosis of a run (or a cv or tune folder), ranked, with the
evidence and the remedy; `--fix` writes the remedy as RUN/doctor.dlspec and prints it as a diff."""

import shutil
import sys
import textwrap
from enum import StrEnum
from typing import Annotated, Optional

import typer

from dlc import api
from dlc.cli.common import check_run_folder, named
from dlc.cli.errors import EXIT_SPEC, CommandError, error_line
from dlc.cli.jsonout import print_json

NAME = "doctor"


class Format(StrEnum):
    text = "text"
    json = "json"


def _fraction(value: Optional[float]) -> Optional[float]:
    """A number from 0 to 1 (nan is none: it is neither above 1 nor below 0, so a range alone lets it by)."""
    if value is not None and not 0.0 <= value <= 1.0:
        raise typer.BadParameter("must be a number between 0 and 1")
    return value


def command(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(
        metavar="RUN", show_default=False,
        help="a run folder of `dlc run`, `dlc cv` (each fold and the whole) or `dlc tune` (its best trial)")],
    fmt: Annotated[Format, typer.Option(
        "--format", help="text: the ranked report; json: {\"diagnoses\": [{\"id\", \"severity\", "
                         "\"evidence\", \"remedy\", \"spec_change\"}, ...]}, most severe first")] \
        = Format.text,
    as_json: Annotated[bool, typer.Option(
        "--json", help="print JSON: the same as --format json (the --json of the other commands)")] = False,
    target_accuracy: Annotated[Optional[float], typer.Option(
        "--target-accuracy", metavar="X", callback=_fraction, show_default=False,
        help="the accuracy the task can reach (human level, the best known), between 0 and 1, to judge the "
             "bias against; without it the train metric is its own reference")] = None,
    fix: Annotated[bool, typer.Option(
        "--fix", help="write RUN/doctor.dlspec: the run's spec with the top remedy applied (a minimal edit, "
                      "checked by compiling it), and print the change as a diff")] = False,
    plot: Annotated[bool, typer.Option(
        "--plot", help="write RUN/gradients.png: each layer's gradient norm and update ratio per epoch, from "
                       "evidence.json (in each fold of a cv folder, in a tune folder's best trial); a tune "
                       "folder also gets importance.png: which hyperparameter matters")] = False,
) -> int:
    """Diagnose a run: what the tuning guides would say, with the evidence and the remedy.

    Reads history.json, evidence.json (per-layer gradient norms, update ratios, dead and saturated units;
    without it the per-layer rules are skipped and the report says so), metrics.json and how the run ended.
    Prints each finding, most severe first, with the numbers and epochs it rests on and the remedy. On a tune
    folder, also which hyperparameter matters (fANOVA importance, seeded) and each one's best region: what
    `dlc tune --refine RUN` searches next. The rules (docs/DOCTOR.md has them at length):
    """
    named(("RUN", run))
    source = ctx.get_parameter_source("fmt")
    if as_json and fmt == Format.text and source is not None and source.name == "COMMANDLINE":
        raise CommandError(error_line("--format text and --json ask for two formats; give one of them"),
                           EXIT_SPEC)  # (--json won, silently)
    check_run_folder("RUN", run)
    report = api.doctor(run, target_accuracy)
    fixed = api.doctor_fix(report) if fix else None
    plots, plot_notes = api.doctor_plot(report) if plot else ([], [])
    if fmt == Format.json or as_json:
        out = report.to_json()
        if fix:
            out["fix"] = None if fixed is None else {
                "file": str(fixed.path), "id": fixed.diagnosis.id, "summary": fixed.change.summary,
                "diff": fixed.diff, "command": fixed.command, "notes": fixed.notes}
        if plot:
            out["plots"] = [str(p) for p in plots]
        print_json(out, indent=2)
    else:
        _show(report, plot)
        if fix:
            _show_fix(report, fixed)
        if plot:
            print()
            for path in plots:
                print(f"wrote {path}")
    for note in plot_notes:
        print(f"dlc doctor: {note}", file=sys.stderr)
    if fix and fixed is None:  # (a fold, a tune trial: their folder keeps no spec, a note says where it is)
        why = "no finding has a spec change" if report.text is not None else \
            "no spec to change here: see the notes"
        print(f"dlc doctor: nothing to fix automatically in {run} ({why}); nothing written", file=sys.stderr)
    return 0


# the rules, generated from the thresholds the doctor uses, end the --help text
command.__doc__ = (command.__doc__ or "") + "\n\n" + "\n\n".join(
    f"* **{ident}**: {rule}" for ident, rule in api.doctor_rules())


def _width() -> int:
    """The terminal's width (100 in a pipe), at most 110 to keep lines readable; a narrow terminal's own width
    down to 30 (text wrapped wider than the terminal would be wrapped again by it, into ragged lines)."""
    return max(30, min(110, shutil.get_terminal_size((100, 24)).columns))


def _para(label: str, text: str, width: int) -> str:
    pad = " " * 3
    head = f"{pad}{label:<10}"
    return textwrap.fill(text, width=width, initial_indent=head, subsequent_indent=" " * len(head))


def _show(report, plot: bool = False) -> None:
    width = _width()
    what = {"run": "run", "cv": "cross-validation run", "tune": "tune run"}[report.kind]
    if report.fold is not None:
        what = f"fold {report.fold} of a cross-validation run"
    head = f"dlc doctor {api.escaped(str(report.run))} ({what}"
    if report.trial is not None:
        head += f", its best trial {report.trial}"
    head += f"; per-layer evidence {'recorded' if report.evidence else 'missing'})"
    print(head)
    for note in report.notes:
        print(textwrap.fill(note, width=width, initial_indent="  note: ", subsequent_indent=" " * 8))
    for n, d in enumerate(report.diagnoses, start=1):
        print()
        print(f"{n}. {d.id} ({d.severity})" if d.id != "healthy" else f"{n}. healthy")
        print(_para("evidence", d.evidence, width))
        print(_para("remedy", d.remedy, width))
        if d.spec_change is not None:
            print(_para("fix", d.spec_change["summary"] + " (dlc doctor --fix writes it to doctor.dlspec)",
                        width))
    if report.folds:
        print()
        print("by fold:")
        for i, ds in report.folds:
            shown = ", ".join(f"{d.id} ({d.severity})" if d.id != "healthy" else "healthy" for d in ds)
            print(f"  fold {i}: {shown}")
    if report.importance is not None:
        _show_importance(report, report.importance, width, plot)


def _show_importance(report, imp, width: int, plot: bool) -> None:
    """Which hyperparameter matters: each one's fANOVA importance and best region, the advice, the plot."""
    print()
    if imp.importance is None:
        print("which hyperparameter matters:")
        print(textwrap.fill(imp.note or "not measured", width=width, initial_indent="  ",
                            subsequent_indent="  "))
    else:
        print(textwrap.fill(f"which hyperparameter matters (fANOVA importance over the {imp.completed} "
                            f"completed trials, seed {imp.to_json()['seed']}; the importances add up to 1):",
                            width=width, subsequent_indent="  "))
    names = list(imp.importance) if imp.importance else [sp.name for sp in imp.spaces]
    searched = {sp.name: sp.brief() for sp in imp.spaces}
    pad = max(len(n) for n in names)
    for name in names:
        r = imp.best_region.get(name)
        share = (imp.importance or {}).get(name)
        bar = f"{share:4.2f} {'#' * round(20 * share):<20}  " if share is not None else ""
        where = f"searched {searched[name]}" if not r else \
            f"best region: all of {searched[name]}" if r.get("whole") else \
            f"best region {r['text']} of {searched[name]}"
        print(f"  {name:<{pad}}  {bar}{where}")
    if imp.advice:
        print("next (coarse to fine):")
        for line in imp.advice:
            print(textwrap.fill(line, width=width, initial_indent="  - ", subsequent_indent="    "))
    if imp.importance is not None and not plot:
        print(f"  (dlc doctor {report.run} --plot draws it: importance.png)")


def _show_fix(report, fixed) -> None:
    if fixed is None:
        return
    print()
    print(f"wrote {fixed.path}: {fixed.change.summary} (for {fixed.diagnosis.id})")
    for note in fixed.notes:
        print(f"  note: {note}")
    print(fixed.diff, end="" if fixed.diff.endswith("\n") else "\n")
    print(f"run it: {fixed.command}")
