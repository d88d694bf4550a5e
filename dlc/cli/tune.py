"""`dlc tune SPEC`: search a spec's hyperparameters (its search block) with Optuna, each trial in a process of
its own; prints each trial, a table of the best ones and the best parameters."""

import os
from typing import Annotated, Optional

import typer

from dlc import api
from dlc.cli import options as o
from dlc.cli.common import check_out_folder, check_run_folder, compiled, named
from dlc.cli.errors import EXIT_RUNTIME, EXIT_SPEC, CommandError, error_line, stop_code, stop_word
from dlc.cli.tables import print_table

NAME = "tune"
TABLE_ROWS = 10  # best trials in the final table


def _study_name(name: Optional[str]) -> Optional[str]:
    """An empty --study fell back to the model's name silently: a usage error."""
    if name is not None and not name.strip():
        raise typer.BadParameter("a study needs a name")
    return name


def command(
    spec: Annotated[Optional[str], typer.Argument(
        metavar="SPEC", show_default=False,
        help="the .dlspec file with a search block (with --refine, default: the spec that run searched)")] \
        = None,
    backend: o.BackendOpt = o.Backend.torch,
    device: o.Device = "auto",
    out: Annotated[Optional[str], typer.Option(
        "--out", metavar="DIR", show_default=False,
        help="the run directory (default: a fresh one under runs/); the same --out resumes the search")] \
        = None,
    trials: Annotated[Optional[int], typer.Option(
        "--trials", metavar="N", show_default=False, min=1,
        help="trials in all (default: the search block's trials)")] = None,
    workers: Annotated[int, typer.Option("--workers", metavar="N", min=1,
                                         help="trials run at once, each in its own process")] = 1,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", metavar="N", show_default=False, min=1,
        help="CPU threads per trial process (default: the cores / (--workers × --trial-nproc))")] = None,
    trial_nproc: Annotated[int, typer.Option(
        "--trial-nproc", metavar="N", min=1,
        help="train each trial data-parallel on N processes of this machine, as `dlc run --nproc N` (the "
             "same results as one process; its rank 0 reports to the study)")] = 1,
    refine: Annotated[Optional[str], typer.Option(
        "--refine", metavar="RUN", show_default=False,
        help="search around the best trials of an earlier tune run")] = None,
    study: Annotated[Optional[str], typer.Option(
        "--study", metavar="NAME", show_default=False, callback=_study_name,
        help="the Optuna study's name (default: the model's name)")] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", help="no trial lines or tables (errors and the run directory are still printed)")] = False,
) -> int:
    """Search a spec's hyperparameters (its search block) with Optuna.

    Each trial runs in a process of its own (--trial-nproc N: N processes, data-parallel). Prints each
    trial, a table of the best ones and the best parameters; writes DIR/best.dlspec (ready for `dlc run`),
    DIR/tune.json and DIR/trials/NNNN/."""
    from rich.console import Console

    named(("SPEC", spec), ("--refine", refine), ("--out", out))
    check_refined_run(refine)
    check_out_folder(out)
    _check_utf8_name(out)
    console = Console(stderr=True, quiet=quiet, soft_wrap=True)  # a long trial line is never wrapped
    result = compiled(api.tune_target(spec, refine))
    display = _Display(console)
    try:
        done = api.tune(result, backend=o.value(backend), device=device, out=out, trials=trials,
                        workers=workers, threads=threads, refine=refine, study=study, reporter=display,
                        trial_nproc=trial_nproc)
    finally:
        display.close()
    return _finish(console, result.spec.name, done, quiet)


def _check_utf8_name(out: Optional[str]) -> None:
    """An --out whose name is not UTF-8 (bytes of another encoding) is a usage error: the study's storage is
    an SQLite URL naming DIR/study.db, which cannot hold it (it failed as "UnicodeEncodeError: 'utf-8'
    codec can't encode ... surrogates not allowed", exit 1)."""
    if out is None:
        return
    try:
        os.path.abspath(out).encode("utf-8")
    except UnicodeEncodeError:
        why = "the study's storage (an SQLite URL naming DIR/study.db) cannot hold it"
        raise CommandError(error_line(f"--out {out}: the name is not UTF-8 text, and {why}; give a folder "
                                      "named in UTF-8"), EXIT_SPEC) from None


def check_refined_run(refine: Optional[str]) -> None:
    """--refine RUN as every run folder argument is (check_run_folder): a file there is a usage error (exit
    2), a folder that is not there a failure (exit 1), both said before the spec is read."""
    check_run_folder("--refine", refine, "a tune run directory (the folder `dlc tune` wrote)", "dlc tune")
    if refine is not None and not os.path.lexists(refine):
        raise CommandError(error_line(f"no such run directory '{refine}'"), EXIT_RUNTIME)


class _Display(api.Reporter):
    """What the search reports (api.Reporter's methods), printed on stderr."""

    def __init__(self, console):
        self.console = console
        self.plan = None
        self.live = _LiveLine(console)

    def started(self, plan) -> None:
        from rich.markup import escape as e  # names, paths and values: shown as they are, never as markup

        self.plan = plan
        grid = f" over a grid of {_count(plan.grid_size, 'point')}" if plan.grid_size is not None else ""
        workers = f"{plan.workers} worker{'s' if plan.workers > 1 else ''}"
        if plan.trial_nproc > 1:
            workers += f", {plan.trial_nproc} processes per trial"
        pruning = ", median pruning" if plan.prune == "median" else ""
        trials = _count(plan.target, "trial")
        self.console.print(f"[bold]{e(plan.spec_name)}[/]: {plan.method} search{grid}, {trials} "
                           f"on [cyan]{plan.backend}[/] ({workers}), {plan.direction} {e(plan.metric)}"
                           f"{pruning} → {e(str(plan.run))}")
        self.console.print(f"[dim]study '{e(plan.study)}' in {e(plan.storage)}[/]")
        if plan.refined:
            for sp in plan.spaces:
                self.console.print(f"  refine {e(sp.name)}: {e(str(plan.refined['from'][sp.name]))} → "
                                   f"{e(sp.brief())}")
        if plan.grid_size is not None and plan.grid_size > plan.trials:
            self.console.print(f"[yellow]the grid has {plan.grid_size} points; running the first "
                               f"{plan.trials} (--trials {plan.grid_size} runs them all)[/]")
        if plan.earlier:
            self.console.print(f"  {_count(plan.earlier, 'trial')} of {e(str(plan.refined['run']))} in the "
                               "refined space carried over: their scores guide the search, not trained again")
        points = plan.points
        if points is not None and plan.target < plan.trials:
            scored = f", {plan.earlier} scored already" if plan.earlier else ""
            self.console.print(f"[yellow]the search space has only {_count(points, 'point')}{scored}: "
                               f"{_count(plan.target, 'trial')}, not {plan.trials} (no point is trained "
                               "twice)[/]")
        if plan.done_before or plan.requeued:
            again = plan.requeued
            queued = f", {again} crashed or interrupted trial{'s' if again > 1 else ''} queued again" \
                if again else ""
            if plan.done_before >= plan.target:  # (`4 of 2 trials done` read as a miscount)
                size = plan.grid_size if plan.grid_size is not None else points
                more = (f"every point of the {'grid' if plan.grid_size is not None else 'search space'} "
                        "is done") if size is not None and plan.target >= size \
                    else "a larger --trials continues the search"
                self.console.print(f"resuming: {plan.done_before} trials done, {plan.target} asked for: "
                                   f"nothing to run ({more}){queued}")
            else:
                self.console.print(f"resuming: {plan.done_before} of {plan.target} trials done{queued}")

    def standing(self, standing) -> None:
        self.live.show(standing)

    def trial(self, trial) -> None:
        self.console.print(trial_line(trial, self.outcome(trial), self.plan.metric, self.plan.spaces))

    def interrupted(self, stop: KeyboardInterrupt) -> None:
        self.live.close()
        self.console.print(f"[yellow]{stop_word(stop)}: run the same command again to continue[/]")

    def close(self) -> None:
        self.live.close()


class _LiveLine:
    """A sign of life while trials train, on a terminal only (display.can_redraw; a pipe or a file gets the
    trial rows alone): `2/20 done · trial 3 running 0:42 (2 running) · best 0.0512 (trial 1)`, redrawn every
    second by rich's Live (its own thread) and erased while a trial's row is printed above it; refitted to the
    terminal's width at every redraw (status_text), so a narrow or resized terminal gets less, never a cut
    line."""

    def __init__(self, console):
        from dlc.cli.display import can_redraw

        self.console = console
        self.enabled = can_redraw(console) and not console.quiet
        self.standing = None
        self.live = None

    def show(self, standing) -> None:
        """The search's new standing, drawn at once (not at the next second's redraw, which would leave the
        last standing shown meanwhile); the line starts with the first standing that has a running trial and
        is erased with the first that has none (the search's last: every trial is done)."""
        from rich.live import Live

        self.standing = standing
        if not self.enabled:
            return
        if not standing.running:
            self.close()
        elif self.live is None:
            self.live = Live(self, console=self.console, refresh_per_second=1, transient=True,
                             redirect_stdout=False, redirect_stderr=False)
            self.live.start()
        else:
            self.live.refresh()

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def __rich_console__(self, console, options):
        from rich.text import Text

        line = status_text(self.standing, options.max_width) if self.standing is not None else ""
        yield Text(line, no_wrap=True, overflow="ellipsis")  # (cut only where even the counts do not fit)


def _finish(console, name: str, done, quiet: bool) -> int:
    """The best trials' table (stdout), the counts and the best parameters (stderr), the run directory."""
    from rich.markup import escape

    from dlc.api import value_text

    if done.problem is not None:
        said = escape(error_line("the best spec does not check (a bug):"))
        console.print(f"[red]{said}[/]\n{escape(done.problem)}")
    if done.interrupted and done.best is None:  # Ctrl-C before a trial ended: the 'interrupted' line says it
        raise CommandError(f"dlc: {stop_word(done.interrupted)}" if console.quiet else "",
                           stop_code(done.interrupted))
    columns = ["trial", done.metric, *labels(done.spaces), "time"]
    rows = []
    for t in done.ranked[:TABLE_ROWS]:
        dur = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete \
            else float("nan")
        number = str(t.number)
        if isinstance(earlier := t.user_attrs.get("dlc_earlier"), dict):  # (its number and time there)
            number, dur = f"{t.number} (earlier {earlier.get('number')})", earlier.get("duration_s") or dur
        rows.append([number, f"{t.value:.4f}", *(short(sp, t.params[sp.name]) for sp in done.spaces),
                     f"{dur:.1f} s"])
    print_table(f"{name}: best trials ({done.direction} {done.metric})", columns, rows, right=columns,
                quiet=quiet or not rows)  # (no table without a row: the line below says why)
    console.print(f"{_count(len(done.trials), 'trial')}: {counts_text(done.counts, done.ran_again)}")
    if done.counts.get("crashed") or done.counts.get("interrupted"):
        console.print(f"[dim]{RUN_AGAIN_RULE}[/]")
    code = stop_code(done.interrupted) if done.interrupted else 0
    stopped = f"stopped: {done.stopped}; fix the cause and run the same command again to continue" \
        if done.stopped is not None else None
    best = done.best
    if best is None:
        fails = [t.user_attrs.get("failure") for t in done.trials if t.user_attrs.get("failure")]
        why = f", {stopped}" if stopped else f" (e.g. {fails[0]})" if fails else ""
        raise CommandError(error_line(f"no trial completed{why} (run directory kept: {done.run})"),
                           code or EXIT_RUNTIME)
    earlier = best.user_attrs.get("dlc_earlier")
    there = f" (trial {earlier.get('number')} of {escape(str(earlier.get('run')))}, carried over)" \
        if isinstance(earlier, dict) else ""
    console.print(f"[bold green]best[/] trial {best.number}{there}: {escape(done.metric)} {best.value:.4f}")
    for sp in done.spaces:
        console.print(f"  {escape(sp.name)} = {escape(value_text(sp, best.params[sp.name]))}")
    console.print(f"best spec: {escape(str(done.run / 'best.dlspec'))}")
    print(done.run)
    if stopped:  # (the last line, --quiet or not: the search did not reach its --trials)
        raise CommandError(error_line(stopped), code or EXIT_RUNTIME)
    return code


# ---------------------------------------------------------------------------------------------- formatting


def short(sp, value) -> str:
    """A value for display: floats to 4 significant digits (best.dlspec and tune.json keep them exact)."""
    from dlc.api import value_text

    return f"{value:.4g}" if isinstance(value, float) else value_text(sp, value)


def labels(spaces) -> list[str]:
    """Column labels: the shortest ending of each parameter's path that no other parameter shares."""
    parts = [sp.name.split(".") for sp in spaces]
    out = []
    for p in parts:
        for k in range(1, len(p) + 1):
            tail = p[-k:]
            if sum(q[-k:] == tail for q in parts) == 1:
                break
        out.append(".".join(tail))
    return out


# the trial counts of the summary, in this order, each with what it means to the search
OUTCOMES = ("complete", "pruned", "failed", "crashed", "interrupted", "earlier", "waiting", "running")
SAID = {"earlier": "carried over"}  # an outcome as the summary says it (a refined search's earlier trials)
RUN_AGAIN = ("crashed", "interrupted")  # outcomes whose parameters are queued again, said of each
RUN_AGAIN_RULE = ("a crashed or interrupted trial does not count towards --trials: its parameters are queued "
                  "again, to run in this search or when the same command continues it (a failed trial, e.g. "
                  "a loss that became nan, counts: that is its parameters' result)")


def _count(n: int, noun: str) -> str:
    """`1 trial`, `4 trials`: a search of one point said `a grid of 1 points, 1 trials`."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def counts_text(counts: dict[str, int], ran: dict[str, int] | None = None) -> str:
    """`5 complete, 1 failed, 1 interrupted (queued again)`; `2 interrupted (1 ran again, 1 queued again)`
    where `ran` (TuneResult.ran_again) says some reruns have started already."""
    order = list(OUTCOMES) + sorted(set(counts) - set(OUTCOMES))
    return ", ".join(f"{counts[k]} {SAID.get(k, k)}{_reruns(k, counts[k], ran or {})}" for k in order
                     if counts.get(k))


def _reruns(outcome: str, n: int, ran: dict[str, int]) -> str:
    """What became of the reruns of `n` crashed or interrupted trials: ` (queued again)`, ` (ran again)` or
    both counted; nothing for another outcome."""
    if outcome not in RUN_AGAIN:
        return ""
    again = min(ran.get(outcome, 0), n)
    if again in (0, n):
        return " (ran again)" if again else " (queued again)"
    return f" ({again} ran again, {n - again} queued again)"


def clock(seconds: float) -> str:
    """0:42, 12:05, 1:02:09."""
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def status_text(standing, width: int | None = None) -> str:
    """The live line: the trials counted of the target, the longest-running trial (numbered as the trial rows
    are) and for how long, the best so far; in `width` columns, the fullest of status_variants that fits."""
    from rich.cells import cell_len

    variants = status_variants(standing)
    if width is None or not variants:
        return variants[0] if variants else ""
    return next((v for v in variants if cell_len(v) <= width), variants[-1])


def status_variants(standing) -> list[str]:
    """The live line from the fullest to the shortest, each without the least useful part left in the one
    before: the best trial's number, how many run, the word `running`, the best value, the trial's number,
    its clock (the sign of life) and last the word `done`; the counts stay first. Empty while none runs."""
    import time

    if not standing.running:
        return []
    number, since = min(standing.running.items(), key=lambda item: item[1])
    ran = clock(time.monotonic() - since)
    counts = f"{standing.done}/{standing.target}"
    others = f" ({len(standing.running)} running)" if len(standing.running) > 1 else ""
    best = f" · best {standing.best[1]:.4f}" if standing.best is not None else ""
    of_best = f" (trial {standing.best[0]})" if standing.best is not None else ""
    variants = [f"{counts} done · trial {number} running {ran}{others}{best}{of_best}",
                f"{counts} done · trial {number} running {ran}{others}{best}",
                f"{counts} done · trial {number} running {ran}{best}",
                f"{counts} done · trial {number} {ran}{best}",
                f"{counts} done · trial {number} {ran}",
                f"{counts} done · {ran}",
                f"{counts} done",
                counts]
    return list(dict.fromkeys(variants))  # (without a best or other trials, some are the same)


def trial_line(t, outcome: str, metric: str, spaces) -> str:
    """One finished trial (`outcome`: what it is to the search, api.Reporter.outcome): its value (or why it
    has none), its parameters and how long it took (rich markup; the names, values and reasons in it
    escaped)."""
    from rich.markup import escape

    params = "  ".join(escape(f"{label}={short(sp, t.params[sp.name])}")
                       for sp, label in zip(spaces, labels(spaces), strict=True)
                       if sp.name in t.params)
    failure = escape(str(t.user_attrs.get("failure", "unknown reason")))
    if outcome == "complete":
        what = f"{escape(metric)} {t.value:.4f}"
    elif outcome == "pruned":
        # (a cv_ objective is reported after each fold, another after each epoch: "step 2" said neither)
        unit = "fold" if metric.startswith("cv_") else "epoch"
        what = f"pruned after {unit} {t.user_attrs.get('pruned_at', '?')}"
    elif outcome == "interrupted":
        what = f"interrupted ({escape(str(t.user_attrs['dlc_interrupted']))}); queued again"
    elif outcome == "crashed":
        what = f"failed: {failure}; not counted, queued again"
    else:
        what = f"failed: {failure}"
    dur = ""
    if t.datetime_start and t.datetime_complete:
        dur = f"  [dim]{(t.datetime_complete - t.datetime_start).total_seconds():.1f} s[/]"
    return f"trial {t.number:>3}  {what}  [dim]{params}[/]{dur}"
