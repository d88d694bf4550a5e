"""The `dlc` command line, on Typer: one module per command (argument parsing, a call into the public API
`dlc.api`, the printing), the exit codes and the exception → exit code mapping in dlc.cli.errors.

`main(argv)` runs a command and returns its exit code (the tests call it in-process); `entry()`, the `dlc`
script and `python -m dlc`, runs main on the command line and ends the process; see dlc.cli.errors for what
each code means.
"""
# ruff: noqa: E402 - the imports after _interrupted_while_starting's handler is set (see there)

import io
import os
import signal
import sys
from typing import TYPE_CHECKING, Annotated, NoReturn, Optional


def _interrupted_while_starting(signum, frame) -> None:
    """Ctrl-C while the `dlc` command imports what it needs (the first half second, before main() handles
    it: a Python traceback ending in KeyboardInterrupt, exit -2): dlc's one line and exit 130, as later."""
    try:
        os.write(2, b"dlc: interrupted\n")
    finally:
        os._exit(130)


def _is_the_command() -> bool:
    """Whether this process is the `dlc` command (its script, or `python -m dlc`), not a program that imports
    dlc.cli (the tests, a notebook)."""
    here = os.path.dirname(os.path.abspath(__file__))
    arg0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    return os.path.basename(arg0) == "dlc" or \
        os.path.abspath(arg0) == os.path.join(os.path.dirname(here), "__main__.py")


if _is_the_command() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)  # (until main() starts: see there)

import typer  # (this import and dlc's below come after the handler: they are most of the command's start)

from dlc.cli import (
    catalogue,
    check,
    compare,
    cv,
    doctor,
    evaluate,
    export,
    lr_find,
    plot,
    predict,
    run,
    runs,
    schema,
    tune,
)
from dlc.cli import compile as compile_
from dlc.cli.ascii import make_streams_safe
from dlc.cli.errors import (
    EXIT_INTERRUPTED,
    EXIT_SPEC,
    OutputClosed,
    closed_outputs,
    error_line,
    exits,
    interrupted,
    quiet_exit,
    stop_on_sigterm,
)
from dlc.cli.examples import examples_epilog

if TYPE_CHECKING:  # (rich is imported when a help page is drawn)
    from rich.table import Table

# in the order `dlc --help` lists them
COMMANDS = [check, compile_, schema, run, cv, tune, lr_find, runs, plot, doctor, evaluate, predict, export,
            compare, catalogue]
HELP_OPTION_NAMES = ["-h", "--help"]

app = typer.Typer(
    name="dlc",
    help="Compile and train .dlspec model specs on Keras or PyTorch, with matching results.",
    epilog="Start with `dlc check specs/iris.dlspec`, then `dlc run specs/iris.dlspec` and `dlc runs`.\n\n"
           "Exit codes: 0 done, 1 a failure while running (one line on stderr), 2 a spec or usage error, "
           "130 interrupted, 143 terminated (SIGTERM), 141 the output's reader closed it early (`| head`). "
           "`dlc COMMAND --help` tells more.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": HELP_OPTION_NAMES},
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dlc")
    except PackageNotFoundError:  # a source tree that is not installed
        import dlc

        return getattr(dlc, "__version__", "unknown")


def _print_version(value: bool) -> None:
    if value:
        print(f"dlc {_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_print_version, is_eager=True,
                                                    help="print dlc's version and exit")] = None,
) -> None:
    """Compile and train .dlspec model specs on Keras or PyTorch, with matching results."""


for _module in COMMANDS:
    app.command(_module.NAME, epilog=examples_epilog(_module.NAME))(exits(_module.command))


# a range bound beyond this is left out of the help: `--epochs N [x>=1]`, not `[1<=x<=9223372036854775807]`
SHOWN_BOUND = 2**32


def _flags_without_a_type(command) -> None:
    """A flag's help line shows no type: Typer labels `--replace`, `--quiet` and `--help` `<bool>`, which
    reads as if they took a value (`--replace true` is an error). An argument is shown by its name alone
    (`SPEC`, `RUN...`), as Unix usage lines write it: not with Python's type (`SPEC <str>`, `RUN
    <list[str]>`) nor in braces (`dlc predict [OPTIONS] {RUN}`). A bound no one types (2^63 - 1) is left
    out of a range."""
    for param in [*getattr(command, "params", []), _help_option(command)]:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
        if getattr(param, "param_type_name", None) == "argument":
            _argument_by_name(param)
        if getattr(param, "max", None) is not None and abs(param.max) >= SHOWN_BOUND:
            _range_without_its_max(param)
    for sub in getattr(command, "commands", {}).values():
        _flags_without_a_type(sub)


def _argument_by_name(param) -> None:
    """The help and usage of an argument: its name (`RUN`, `[SPEC]` when it may be left out, `RUN...` for
    one or more), no type. (Typer's hooks, replaced on this one parameter; a Typer without them is left
    as it is.)"""
    if not all(hasattr(param, hook) for hook in ("display_type_rich", "_usage_display_name",
                                                 "_rich_display_name", "display_name_raw")):
        return
    name = param.display_name_raw + ("..." if param.nargs != 1 else "")
    param.display_type_rich = lambda ctx=None: None
    param._rich_display_name = lambda: name
    param._usage_display_name = lambda: name if param.required else f"[{name}]"


def _range_without_its_max(param) -> None:
    """`[x>=1]` for a range whose maximum is only the integer's limit."""
    if hasattr(param, "_get_number_range_help_str"):
        low = param.min
        param._get_number_range_help_str = lambda: None if low is None else f"x>={low}"


def _help_option(command):
    """The command's -h/--help option (None where there is none): Click makes it when a help page asks for it,
    and keeps that one (a Click that makes a new one each time gives no `<bool>` to hide)."""
    get_help_option = getattr(command, "get_help_option", None)
    if get_help_option is None:
        return None
    return get_help_option(command.context_class(command, help_option_names=HELP_OPTION_NAMES))


def _asks_for_help(args: list[str]) -> bool:
    """Whether a help page may be drawn (only then is rich's Table worth importing)."""
    return any(a in HELP_OPTION_NAMES for a in args)


def _help_keeps_option_names() -> None:
    """On a narrow terminal Typer's help tables shrank every column alike, cutting option names
    (`--backe…` at 40 columns): its option and argument tables (typer.rich_utils.Table, where this Typer
    draws them with rich's Table) become _help_table_class()'s, which never cuts a name. Once per process."""
    from rich.table import Table
    from typer import rich_utils

    if getattr(rich_utils, "Table", None) is Table:  # (not done already, and a Typer that draws so)
        rich_utils.Table = _help_table_class(Table)  # type: ignore[misc]  # (a class, on purpose)


MIN_HELP_WIDTH = 24  # a help column narrower than this puts each help text under its option instead


def _help_table_class(table: "type[Table]") -> "type[Table]":
    """A subclass of rich's Table for the help panels: the names (every column but the last two: the `*` of
    a required one, the option or argument names) keep their full width, the value and the help text wrap
    into what is left; where that leaves less than MIN_HELP_WIDTH columns for the help text, each option is
    one line (its names and value) with its help below, indented."""
    from rich.padding import Padding
    from rich.text import Text

    class HelpTable(table):  # type: ignore[valid-type,misc]
        def __rich_console__(self, console, options):
            names = self.columns[:-1]
            if len(self.columns) < 3 or not all(isinstance(c, str | Text) for n in names for c in n.cells):
                yield from super().__rich_console__(console, options)  # (not an option panel's)
            elif options.max_width - sum(_width(col) for col in names) >= MIN_HELP_WIDTH:
                for column in self.columns[:-2]:
                    column.no_wrap = True
                yield from super().__rich_console__(console, options)
            else:
                for *cells, help_text in zip(*(col.cells for col in self.columns), strict=True):
                    yield Text(" ").join(Text(c) if isinstance(c, str) else c for c in cells if str(c))
                    yield Padding(help_text, (0, 0, 0, 4))

    def _width(column) -> int:
        """A column's width in the table: its widest cell and the padding around it."""
        return max((len(str(c)) for c in column.cells), default=0) + 2

    return HelpTable


def _click_exception() -> type[Exception]:
    """Click's base exception class, wherever this Typer keeps Click (newer Typers vendor it)."""
    return next(c for c in typer.BadParameter.__mro__
                if c.__name__ == "ClickException" and issubclass(c, Exception))


def _usage_error(e, fallback=None, args: list[str] | tuple[str, ...] = ()) -> int:
    """A usage error (unknown option, bad value, missing argument): the usage line and one error line.
    `fallback`: the context to name when Click gave none (an option missing its value: `--out` last)."""
    if type(e).__name__ == "NoArgsIsHelpError":  # the help is printed already
        return e.exit_code
    ctx = getattr(e, "ctx", None) or fallback
    if ctx is not None:
        print(ctx.get_usage(), file=sys.stderr)
        print(f"Try '{ctx.command_path} --help' for help.", file=sys.stderr)
    print(error_line(_plain_usage_message(e, args)), file=sys.stderr)  # (the usage line names the command)
    return e.exit_code


def _command_context(command, args: list[str]):
    """A context of the subcommand `args` name (None where they name none), for the usage line of an error
    Click raises without one."""
    name = next((a for a in args if not a.startswith("-")), None)
    sub = getattr(command, "commands", {}).get(name)
    if sub is None:
        return None
    root = command.context_class(command, info_name="dlc")
    return sub.context_class(sub, info_name=name, parent=root)


# an option another command has, and what this one calls it (`dlc compile SPEC --backend torch`, as `dlc run`
# takes it, is compile's --emit torch)
SAID_ELSEWHERE = {"--backend": "--emit"}
# what an option other commands have is, in a command without it: (command, option) -> the hint
SAID_OTHERWISE = {("predict", "--json"): "predict writes JSON with --output FILE.json",
                  ("predict", "--format"): "predict writes by --output's ending: .csv, .json or .npz"}


def _plain_usage_message(e, args: list[str] | tuple[str, ...] = ()) -> str:
    """Click's message in dlc's words: an unknown option suggests only a close name (Click offers any option
    sharing a letter or two), an unknown command is said as an unknown option is (`no such command: rnu; did
    you mean run?`, not `No such command 'rnu'. Did you mean 'run'?`), an option written with one dash
    (`-epochs 3`, which Click reads as `-e`) is named as it was typed, with the option it meant, a value
    that is not one of the choices gets the close one, and the validators' wording ("Value error, ...",
    "Input should be ...") is plain."""
    import difflib
    import re

    name = getattr(e, "option_name", None)
    if type(e).__name__ == "NoSuchOption" and name:
        ctx = getattr(e, "ctx", None)
        taken = {o for p in (ctx.command.params if ctx is not None else []) for o in getattr(p, "opts", [])}
        hint = SAID_OTHERWISE.get((str(ctx.info_name) if ctx is not None else "", str(name)))
        if hint is not None:
            return f"no such option: {name}; {hint}"
        typed = next((a for a in args if re.fullmatch(r"-[A-Za-z][\w-]+(=.*)?", a, re.DOTALL)
                      and a.startswith(name)), None)
        meant = "-" + typed.split("=")[0] if typed is not None else None
        if not name.startswith("--") and meant is not None and meant in taken:  # (`-epochs 3`)
            return f"no such option: {meant[1:]}; did you mean {meant}?"
        close = [SAID_ELSEWHERE[name]] if SAID_ELSEWHERE.get(name) in taken else \
            difflib.get_close_matches(name, list(getattr(e, "possibilities", None) or []), n=1, cutoff=0.75)
        return f"no such option: {name}" + (f"; did you mean {close[0]}?" if close else "")
    text = e.format_message()
    if m := re.search(r"'([^']*)' is not one of ('[^']*'(?:, '[^']*')*)\.$", text):
        choices, given = re.findall(r"'([^']*)'", m[2]), m[1].strip().lower()
        close = difflib.get_close_matches(given, choices, n=2, cutoff=0.6)
        ratio = [difflib.SequenceMatcher(None, given, c).ratio() for c in close]
        if close and (len(close) == 1 or ratio[0] > ratio[1]):  # (none for `float`: float32 or float64?)
            text = f"{text[:-1]}; did you mean {close[0]}?"
    if m := re.fullmatch(r"No such command '(.*)'\.(?: Did you mean '(.*)'\?)?", text, re.DOTALL):
        return f"no such command: {m[1]}" + (f"; did you mean {m[2]}?" if m[2] else "")
    text = text.replace("Value error, ", "")
    text = re.sub(r"Input should be a valid integer(, unable to parse string as an integer)?",
                  "must be a whole number", text)
    text = re.sub(r"Input should be a valid number(, unable to parse string as a number)?",
                  "must be a number", text)
    text = re.sub(r"Input should be greater than or equal to (\S+)", r"must be at least \1", text)
    return re.sub(r"Input should be less than or equal to (\S+)", r"must be at most \1", text)


def main(argv: list[str] | None = None) -> int:
    """Run `dlc` with these arguments (default: the command line's) and return the exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:  # (Ctrl-C is KeyboardInterrupt again,
        signal.signal(signal.SIGINT, signal.default_int_handler)     # which each command handles)
    _no_zero_terminal_size()
    _closed_streams_to_devnull()
    make_streams_safe()
    if not args:  # plain `dlc`: the help, as a usage error (on stderr, as Click does: exit 2 is not data)
        import contextlib

        with contextlib.redirect_stdout(sys.stderr):
            main(["--help"])
        return EXIT_SPEC
    command = typer.main.get_command(app)
    _flags_without_a_type(command)
    if _asks_for_help(args):
        _help_keeps_option_names()
    from dlc import api

    restore = stop_on_sigterm()
    try:
        with api.on_the_command_line():
            return _main(command, args)
    finally:
        restore()


def _no_zero_terminal_size() -> None:
    """COLUMNS=0 (or LINES=0), as some environments without a terminal set it, is no size: rich took it as a
    width of 0 and printed nothing at all (`dlc run`'s whole display and summary were gone). Dropped, so
    that the terminal's size, or 80 columns, is used."""
    import os

    for name in ("COLUMNS", "LINES"):
        value = os.environ.get(name)
        if value is not None and value.strip().isdigit() and int(value) == 0:
            del os.environ[name]


def _main(command, args: list[str]) -> int:
    """main's command, its exit code and its failures' lines."""
    try:
        rv = command.main(args=args, prog_name="dlc", standalone_mode=False)
        try:
            sys.stdout.flush()  # now, not at exit: a reader that has gone is noticed where it can be handled
        except OSError as e:
            if isinstance(e, BrokenPipeError):
                raise
            print(error_line(f"cannot write the output: {e.strerror or e}"), file=sys.stderr)
            return 1
        if isinstance(sys.stdout, _ClosedOutput) and sys.stdout.written and rv in (0, None):
            print(error_line("cannot write the output: the standard output is closed"), file=sys.stderr)
            return 1
    except (OutputClosed, BrokenPipeError):  # (the flush above, or a command's output, via exits)
        # the reader of our output has gone (`dlc schema | head -1`): stop quietly, as Unix tools do
        return quiet_exit(closed_outputs())
    except _click_exception() as e:
        return _usage_error(e, _command_context(command, args), args)
    except KeyboardInterrupt as e:
        return interrupted(e)
    except typer.Abort:
        print("dlc: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as e:
        if not _rich_saw_a_closed_pipe(e):
            raise
        return quiet_exit([])  # (`dlc run --help | head -1`: rich has pointed stdout at /dev/null already)
    return rv if isinstance(rv, int) else 0


def _rich_saw_a_closed_pipe(e: SystemExit) -> bool:
    """Whether rich ended the process because the reader of its output had gone: the help pages are printed
    by rich (through Typer), whose Console.on_broken_pipe raises SystemExit(1) where dlc exits 141."""
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "on_broken_pipe" and "rich" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


class _ClosedOutput(io.TextIOWrapper):
    """A stdout that was closed when dlc started (`>&-`: Python makes it None): written into the void, as
    /dev/null, instead of failing on None, but remembering that output was lost (`written`)."""

    written = False

    def write(self, text: str) -> int:
        self.written = self.written or bool(text)
        return super().write(text)


def _closed_streams_to_devnull() -> None:
    """A command started with stdout or stderr closed (`dlc check s.dlspec >&-`) writes into the void
    instead of failing on None; output written to a closed stdout is then an error (_main), as `cat >&-`'s
    is: `dlc predict RUN --input x.csv >&-` exited 0 with its predictions lost."""
    import os

    if sys.stdout is None:
        sys.stdout = _ClosedOutput(open(os.devnull, "wb"))  # noqa: SIM115 - for the life of the process
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115


def entry() -> NoReturn:
    """The `dlc` command (pyproject's [project.scripts], and `python -m dlc`): main() on the command line,
    then the end of the process. Once main has returned, every file is written and closed (the run folder's
    files are written atomically and closed, log.txt is closed by the command), so after flushing stdout and
    stderr the process ends with os._exit: the interpreter's teardown (TensorFlow's and torch's atexit
    handlers and destructors, 0.5-1.3 s after a keras run) does nothing dlc needs. Where something could
    still be waiting for the interpreter's exit (a thread that is not a daemon, a multiprocessing child to
    join) it exits the ordinary way. The atexit handlers still run (0.4 ms): TensorFlow's remove the
    autograph modules it wrote to the temporary folder, 9 files a keras run."""
    from dlc import api

    api.as_the_command()
    end(main())


def end(code: int) -> NoReturn:
    """Flush stdout and stderr and end the process with `code` (141 when a reader of them has gone), without
    the interpreter's teardown unless a thread or child process still needs it (see entry)."""
    import atexit
    import threading

    mp = sys.modules.get("multiprocessing")
    waiting = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if waiting or (mp is not None and mp.active_children()):
        sys.exit(_flush_outputs(code))
    atexit._run_exitfuncs()  # what os._exit would skip that users see: files left in the temporary folder
    os._exit(_flush_outputs(code))


def _flush_outputs(code: int) -> int:
    """Flush stdout and stderr; `code`, or 141 when it was 0 and a reader of them has gone."""
    for stream in (sys.stdout, sys.stderr):
        if stream is None:
            continue
        try:
            stream.flush()
        except (OSError, ValueError):  # a pipe whose reader has gone (`dlc ... | head`), a closed stream
            code = quiet_exit(closed_outputs()) if code == 0 else code
    return code


if __name__ == "__main__":
    entry()
