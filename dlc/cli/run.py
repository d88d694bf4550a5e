"""`dlc run SPEC`: train a spec on one backend into a run directory, with a progress display; `dlc run
--resume RUN` continues a killed run. A spec with a kfold split runs cross-validation (`dlc cv`)."""

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional, TextIO

import typer

from dlc import api
from dlc.cli import cv
from dlc.cli import options as o
from dlc.cli.common import check_can_write_in, check_out_folder, check_run_folder, named, training_spec
from dlc.cli.errors import EXIT_SPEC, CommandError, error_line

if TYPE_CHECKING:
    from dlc.cli.display import EpochTable

NAME = "run"
COMPILE_NOT_PARALLEL = ("--compile and --nproc cannot be used together yet: the data-parallel step is not "
                        "compiled; use one of them")


def command(
    ctx: typer.Context,
    spec: Annotated[Optional[str], typer.Argument(
        metavar="SPEC", show_default=False, help="the .dlspec file to train (not with --resume)")] = None,
    resume: Annotated[Optional[str], typer.Option(
        "--resume", metavar="RUN", show_default=False,
        help="continue a killed run from its last finished epoch")] = None,
    backend: o.BackendOpt = o.Backend.torch,
    device: o.Device = "auto",
    out: o.Out = None,
    replace: o.Replace = False,
    epochs: o.Epochs = None,
    seed: o.Seed = None,
    dtype: o.DtypeOpt = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet",
        help="no progress display, epoch table or summary (the run directory is still printed)")] = False,
    no_evidence: Annotated[bool, typer.Option(
        "--no-evidence",
        help="do not record the training evidence (evidence.json: per layer and epoch gradient and weight "
             "norms, update ratios, activation statistics, dead and saturated units; read by dlc doctor)"
    )] = False,
    compile: o.Compile = False,
    nproc: Annotated[Optional[int], typer.Option(
        "--nproc", metavar="N", min=1, show_default=False, rich_help_panel="Several processes",
        help="train data-parallel on N processes on this machine (torch: gloo on the CPU, NCCL with one GPU "
             "per process; keras: tf.distribute, one machine, no BatchNorm): each takes its share of every "
             "batch, gradients are summed; the same per-epoch losses, metrics and weights as one process. "
             "Rank 0 prints and writes the run directory"
    )] = None,
    nnodes: Annotated[int, typer.Option(
        "--nnodes", metavar="M", min=1, rich_help_panel="Several processes",
        help="machines in the run (torch): start the same command on each, with its --node-rank")] = 1,
    node_rank: Annotated[int, typer.Option(
        "--node-rank", metavar="K", min=0, rich_help_panel="Several processes",
        help="this machine's number, 0 to M-1 (0 holds rank 0, which writes the run directory)")] = 0,
    master_addr: Annotated[Optional[str], typer.Option(
        "--master-addr", metavar="HOST", show_default=False, rich_help_panel="Several processes",
        help="the address of machine 0, for the rendezvous (default: this machine)")] = None,
    master_port: Annotated[Optional[int], typer.Option(
        "--master-port", metavar="PORT", show_default=False, min=1, max=65535,
        rich_help_panel="Several processes",
        help="a free port on machine 0 (default: one picked on this machine)")] = None,
) -> int:
    """Train a spec and write its run directory.

    The run directory holds the spec, ir.json, history.csv/json, curves.png, metrics.json, env.json,
    run.json, TensorBoard events, checkpoint.npz, log.txt (the console's lines) and the model. A folder
    holds one run: an --out that is not empty is refused unless --replace. A failure while training is one
    line on stderr, exit 1, with the run directory kept. A spec with a kfold split runs cross-validation
    (`dlc cv`).

    --nproc N trains on N processes (several machines: --nnodes, --node-rank, --master-addr/--master-port,
    the same command on each); --resume works with it. A worker that dies stops the others: one line on
    stderr, exit 1."""
    backend_name, dtype_name = o.value(backend), o.value(dtype)
    launch = _Launch(nproc or 1, nnodes, node_rank, master_addr, master_port)
    if node_rank >= nnodes:  # (one process on one machine ignored it: the user meant another launch)
        raise CommandError(error_line(f"--node-rank must be between 0 and {nnodes - 1}, one less than "
                                      f"--nnodes {nnodes} (got --node-rank {node_rank})"), EXIT_SPEC)
    named(("--resume", resume), ("SPEC", spec))  # (an empty one read as not given: "needs a SPEC")
    if resume:
        settings = (("SPEC", spec), ("--out", out), ("--replace", replace or None), ("--epochs", epochs),
                    ("--seed", seed), ("--dtype", dtype), ("--compile", compile or None))
        given = [name for name, v in settings if v is not None]
        given += [f"--{name}" for name in ("backend",) if _on_command_line(ctx, name)]
        if given:  # (they would be ignored: a resumed run keeps the settings it started with)
            raise CommandError(error_line(f"--resume continues a run with its own settings; "
                                          f"{', '.join(given)} cannot be given with it"), EXIT_SPEC)
        check_run_folder("--resume", resume)
        if launch.parallel:
            return launch.resume(resume, device, quiet, no_evidence)
        return _resume(resume, device, quiet, not no_evidence)
    if not spec:
        raise CommandError(error_line("dlc run needs a SPEC (or --resume RUN)"), EXIT_SPEC)
    o.require_out_for_replace(replace, out)
    o.require_compiles(compile, backend_name)
    check_out_folder(out)
    loaded = training_spec(spec, seed, dtype_name, epochs)
    if launch.parallel:
        if compile:
            raise CommandError(error_line(COMPILE_NOT_PARALLEL), EXIT_SPEC)
        launch.check(loaded, backend_name, device)
        passed = (("--out", out), ("--epochs", epochs), ("--seed", seed), ("--dtype", dtype_name))
        return launch.run(["run", spec, "--backend", backend_name, "--device", device,
                           *[a for name, v in passed if v is not None for a in (name, str(v))],
                           *(["--replace"] if replace else []), *(["--quiet"] if quiet else []),
                           *(["--no-evidence"] if no_evidence else []), *(["--compile"] if compile else [])],
                          folder=out)
    if loaded.data is not None and loaded.data.split.kind == "kfold":
        # kfold: cross-validation
        return cv.cross_validate(loaded, backend_name, device, out, None, quiet, replace,
                                 evidence=not no_evidence, compile=compile)
    return _train(loaded, backend_name, quiet, lambda observer: api.run(
        loaded, backend_name, device=device, out=out, replace=replace, observer=observer,
        evidence=not no_evidence, compile=compile))


class _Launch:
    """--nproc and its companions: whether the run is data-parallel, and starting it (dlc.api.launch)."""

    def __init__(self, nproc: int, nnodes: int, node_rank: int, master_addr: Optional[str],
                 master_port: Optional[int]):
        self.nproc, self.nnodes, self.node_rank = nproc, nnodes, node_rank
        self.master_addr, self.master_port = master_addr, master_port

    @property
    def parallel(self) -> bool:
        return self.nproc * self.nnodes > 1

    def check(self, spec, backend: str, device: str) -> None:
        """What stops the spec training data-parallel (exit 2), then a device this machine's processes cannot
        train on (exit 1, as one process says it): before the workers start, not in each of them."""
        problems = api.parallel_blockers(spec, backend, self.nnodes)
        if problems:
            raise CommandError(error_line(problems[0]), EXIT_SPEC)
        api.check_device(backend, device, self.nproc)

    def resume(self, run: str, device: str, quiet: bool, no_evidence: bool) -> int:
        target = api.resumable(run)
        if target.finished:
            print(f"{target.run}: this run already finished; nothing to resume")
            return 0
        _check_can_resume_in(run)
        if target.compiled:  # (each worker failed with `ValueError: a compiled run ...`)
            raise CommandError(error_line(f"{target.run} was started with --compile, which --nproc cannot "
                                          "train yet (the data-parallel step is not compiled): resume it "
                                          "without --nproc"), EXIT_SPEC)
        self.check(target.spec, target.backend, target.device(device))
        return self.run(["run", "--resume", run, "--device", device, *(["--quiet"] if quiet else []),
                         *(["--no-evidence"] if no_evidence else [])], folder=run)

    def run(self, args: list[str], folder: str | None) -> int:
        """The workers of the run, each `dlc *args`; the launcher's line when a worker stopped. `folder`:
        the run folder, where the command line names it (for the line that says how to continue)."""
        import sys

        try:
            code, line = api.launch(args, self.nproc, nnodes=self.nnodes, node_rank=self.node_rank,
                                    master_addr=self.master_addr, master_port=self.master_port,
                                    quiet_args=["--quiet"])
        except ValueError as e:
            raise CommandError(error_line(str(e)), EXIT_SPEC) from None
        except KeyboardInterrupt as e:
            folder = folder or getattr(e, "run_folder", None)  # (rank 0's, when the command line names none)
            if folder is not None and self.nnodes == 1 and (Path(folder) / "checkpoint.npz").is_file():
                e.hint = f"; `dlc run --resume {folder} --nproc {self.nproc}` continues it"  # type: ignore[attr-defined]
            raise
        if line:
            print(error_line(line), file=sys.stderr)
        return code


def _on_command_line(ctx: typer.Context | None, param: str) -> bool:
    """Whether option `param` was written on the command line (not its default)."""
    source = ctx.get_parameter_source(param) if ctx is not None else None
    return source is not None and source.name == "COMMANDLINE"


def _check_can_resume_in(run: str) -> None:
    """A run folder no file can be made in (a read-only mount) is refused before an epoch is trained (it
    failed on its first write, naming metrics.json and --out)."""
    check_can_write_in("--resume", run, Path(run), "copy the run folder where you can write and resume the "
                                                   "copy")


def _resume(run: str, device: str, quiet: bool, evidence: bool = True) -> int:
    target = api.resumable(run)
    if target.finished:
        print(f"{target.run}: this run already finished; nothing to resume")
        return 0
    _check_can_resume_in(run)
    from rich.markup import escape

    shown = escape(api.terminal_safe(str(target.run)))  # (rich markup; control characters escaped)
    if target.complete:
        how = f"its {target.epochs_done} epochs (early stopping ended it)" if target.stopped_early else \
            f"all {target.epochs_done} epochs"
        note = f"finishing {shown}: {how} are trained; writing its final metrics and model"
    else:
        note = f"resuming {shown} from epoch {target.epochs_done + 1} of {target.epochs_total}"
    return _train(target.spec, target.backend, quiet,
                  lambda observer: api.resume(target, device=device, observer=observer, evidence=evidence),
                  note, target.rows,
                  table=not target.complete)


def _train(spec, backend: str, quiet: bool, train: "Callable[[api.Observer], api.Finished]",
           note: str = "", before: Optional[list] = None, table: bool = True) -> int:
    """Train with the display watching: `train(observer)` is api.run or api.resume; `note` comes first once
    training starts (a resumed run says where it continues; a resume refused on its data or checkpoint is
    its error line alone), `before` are the rows of the epochs already trained; `table`: False when no epoch
    is left to train (no header for an empty table)."""
    from rich.console import Console

    from dlc.cli.display import summary_lines

    secondary = api.secondary_worker()  # (torchrun's other workers: rank 0 alone reports, as under --nproc)
    console = Console(stderr=True, quiet=quiet or secondary, highlight=False)
    display = _Display(console, spec, backend, before or [], table, note)
    try:
        done = train(display)
        display.end()
        for line in summary_lines(spec, done.history, done.final, display.seconds(done.history)):
            display.say(line)
    except BaseException as e:
        display.end(failure=e)
        if isinstance(e, KeyboardInterrupt) and display.run is not None:  # (exits() prints it after its line)
            e.hint = f"; `dlc run --resume {display.run}` continues it"  # type: ignore[attr-defined]
        raise
    finally:
        display.close()
    if not secondary:
        print(done.run)
    return 0


class _Display(api.Observer):
    """What the run reports, printed: a header, the epoch table, the progress bar; the same lines, plain
    and with every column, in the run directory's log.txt."""

    def __init__(self, console, spec, backend: str, before: list[dict], header: bool = True, note: str = ""):
        from dlc.cli.display import Progress

        self.console, self.spec, self.backend, self.before = console, spec, backend, before
        self.header, self.note = header, note  # (the note waits for started(): nothing before a refusal)
        self.table: EpochTable | None = None  # fitted to the console
        self.full: EpochTable | None = None  # every column, for the log
        self.bar = Progress(console, spec.train.epochs)
        self.log: Optional[TextIO] = None
        self.ended = False
        self.pending: list[str] = []  # lines said before the run directory is known
        self.walls: dict[int, float] = {}  # epoch -> wall-clock seconds (steps, validation)
        self.doctor: Optional[api.LiveDoctor] = None  # a warning the first time a pathology shows
        self.recorder = None  # the run's evidence as it is recorded (the doctor's, in memory)
        self.run: Optional[Path] = None  # the run directory, once made

    def say(self, line: str, log_line: Optional[str] = None) -> None:
        """A line of rich markup on the console, and in log.txt as plain text (`log_line` instead)."""
        from dlc.cli.display import plain

        if not self.console.quiet:  # (rich renders a line before a quiet console drops it: 1 ms an epoch)
            self.console.print(line, soft_wrap=True)
        self.write_log(plain(line if log_line is None else log_line))

    def write_log(self, text: str) -> None:
        if self.log is None:
            self.pending.append(text)
            return
        self.log.write(text.rstrip() + "\n")
        self.log.flush()

    def started(self, run: Path, data, device_name: str) -> None:
        from rich.markup import escape

        from dlc.cli.display import EpochTable

        self.run = run
        sizes = " / ".join(f"{len(s.x):,} {part}" for part, s in
                           (("train", data.train), ("val", data.val), ("test", data.test)) if s is not None)
        read = f"; {escape(data.read_line())}" if data.read_line() else ""  # how many rows the file gave
        with contextlib.suppress(OSError):  # a log that cannot be written does not stop the run
            self.log = open(run / "log.txt", "a", encoding="utf-8", errors="surrogateescape")  # noqa: SIM115 - closed by close()
            for text in self.pending:
                self.write_log(text)
        if self.note:
            self.say(self.note)
        # mixed precision is named in the header (it is outside the equivalence contract)
        how = escape(device_name) + (f", {self.spec.train.precision}" if self.spec.train.mixed else "")
        self.say(f"[bold]{escape(self.spec.name)}[/] on [cyan]{self.backend}[/] ({how}): "
                 f"{sizes} samples{read}")
        # (an ESC in the folder's name coloured the terminal, and went to log.txt as it was)
        self.say(f"[dim]run directory:[/] {escape(api.terminal_safe(str(run)))}")
        for warning in data.warnings:
            self.say(f"[yellow]warning: {escape(warning)}[/]", f"warning: {warning}")
        has_val = data.val is not None
        self.table = EpochTable(self.spec, has_val, width=self.console.width)
        self.full = EpochTable(self.spec, has_val)
        for table in (self.table, self.full):
            table.seed(self.before)
        for shown, logged in zip(self.table.header(), self.full.header(), strict=True):
            if self.header:
                self.say(shown, logged)
        self.doctor = api.LiveDoctor(self.spec, run, self.before,
                                     evidence=self.recorder.to_json if self.recorder is not None else None)

    def evidence(self, recorder) -> None:
        self.recorder = recorder

    def training(self):
        return self.bar

    def progress(self, epoch: int, done: int, total: int, running: Optional[dict] = None) -> None:
        self.bar(epoch, done, total, running)

    def epoch(self, row: dict) -> None:
        assert self.table is not None and self.full is not None  # made by started(), called first
        seconds = self.walls[row["epoch"]] = self.bar.elapsed()
        self.say(self.table.row(row, seconds), self.full.row(row, seconds))
        for warning in self.doctor.epoch(row) if self.doctor is not None else []:
            from rich.markup import escape

            self.say(f"[yellow]{escape(warning)}[/]", warning)

    def seconds(self, history) -> float:
        """The wall-clock time of the history's epochs: measured here, or the history's own for earlier
        ones."""
        return sum(self.walls.get(r["epoch"], r["time_s"]) for r in history.rows)

    def end(self, failure: Optional[BaseException] = None) -> None:
        """After the table: what its '*' means; in the log, why the run failed."""
        if self.ended:
            return
        self.ended = True
        if self.table is not None and self.table.footnote():
            self.say(self.table.footnote() or "")
        if failure is None:
            return
        if isinstance(failure, KeyboardInterrupt):
            self.write_log("interrupted")
        elif isinstance(failure, (SystemExit, BrokenPipeError)):  # (rich's answer to a closed output: exit 1)
            self.write_log("stopped: the output it printed to was closed (`| head`: the reader of the pipe "
                           "ended); `dlc run --resume` continues it")
        else:
            cause = getattr(failure, "cause", failure)
            text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
            self.write_log(f"failed: {text}")

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None
