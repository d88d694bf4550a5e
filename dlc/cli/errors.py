"""Exit codes, and the one mapping from exceptions to them that every command shares.

    0    done
    1    a runtime failure: bad data, training failed (a non-finite loss), a missing lowering or backend, a
         bad run directory or input file, out of memory, any unexpected error; one line on stderr,
         `dlc: error: ...` (with the run directory, when one was made: it is kept)
    2    a spec error (the diagnostics, positioned in the spec, never a traceback), a spec that cannot be used
         as it is, or a usage error (`dlc: error: ...`, after the usage line where the command line is
         wrong; a path of the wrong kind too: a folder given for a FILE, a file for a RUN folder)
    3    (internal) a worker of `dlc run --nproc` that lost another worker: the launcher prints the line
    130  interrupted (Ctrl-C)
    143  terminated (SIGTERM: `kill`, `timeout`, a job scheduler's stop), handled as Ctrl-C is
    141  the output went to a pipe that was closed early (`dlc schema | head -1`): no message, as a Unix tool
         killed by SIGPIPE (128 + 13)

A leaf of the command line: it imports no other dlc.cli module. The runtime raises exceptions and never picks
an exit code; `report` turns one into its line and code. DLC_TRACEBACK=1 re-raises an unexpected error.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import sys
from collections.abc import Callable

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_SPEC = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process the signal ended
EXIT_HUNG_UP = 129  # 128 + SIGHUP
EXIT_BROKEN_PIPE = 141
ERROR_PREFIX = "dlc: error: "


class Terminated(KeyboardInterrupt):
    """SIGTERM to the command (see stop_on_sigterm): it ends as Ctrl-C does, through the same handlers (a
    run's folder kept and its line saying how to continue it, a tune's trials marked interrupted)."""


class HungUp(Terminated):
    """SIGHUP (the terminal the command ran in was closed): it ends as SIGTERM does, the epochs trained so far
    written (the signal's default ended the process at once, exit 129, the history as of its last paced
    write). Not under `nohup`, which ignores the signal: the command then goes on."""


def stop_on_sigterm() -> Callable[[], None]:
    """Make SIGTERM raise Terminated (and SIGHUP HungUp, unless it is ignored) in the main thread; returns
    what restores the handlers before. Without it a `kill` or a `timeout` ended a run silently, exit 143, its
    run.json saying nothing. Not in a worker of a data-parallel run (RANK set): its launcher stops it with
    SIGTERM, which must end it at once, even inside a collective."""
    import signal

    if os.environ.get("RANK") is not None:
        return lambda: None

    def terminated(_signum, _frame):
        raise Terminated()

    def hung_up(_signum, _frame):
        raise HungUp()

    before: dict[int, object] = {}
    try:
        before[signal.SIGTERM] = signal.signal(signal.SIGTERM, terminated)
        if signal.getsignal(signal.SIGHUP) == signal.SIG_DFL:  # (nohup's SIG_IGN is left as it is)
            before[signal.SIGHUP] = signal.signal(signal.SIGHUP, hung_up)
    except ValueError:  # (only the main thread may set handlers)
        return lambda: None

    def restore() -> None:
        for sig, handler in before.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    return restore


def interrupted(e: KeyboardInterrupt) -> int:
    """Ctrl-C or SIGTERM: its line on stderr (with the exception's `hint`, if a command added one), and the
    exit code."""
    print(f"dlc: {stop_word(e)}{getattr(e, 'hint', '')}", file=sys.stderr)
    return stop_code(e)


def stop_word(e: KeyboardInterrupt) -> str:
    """What stopped the command, as its line says it: `interrupted` (Ctrl-C) or `terminated (SIGTERM)`."""
    if isinstance(e, HungUp):
        return "terminated (SIGHUP: the terminal was closed)"
    return "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"


def stop_code(e: KeyboardInterrupt) -> int:
    """The exit code of a command Ctrl-C (130), SIGTERM (143) or SIGHUP (129) stopped."""
    if isinstance(e, HungUp):
        return EXIT_HUNG_UP
    return EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED


class CommandError(Exception):
    """An error a command finds itself: `text` goes to stderr as it is (nothing when empty) and the command
    exits with `code`."""

    def __init__(self, text: str = "", code: int = EXIT_RUNTIME):
        super().__init__(text)
        self.text = text
        self.code = code


def error_line(message: str) -> str:
    """The one way every command starts an error on stderr (usage errors too: dlc.cli._usage_error)."""
    return f"{ERROR_PREFIX}{message}"


def _spec_errors() -> tuple[type, ...]:
    """Exceptions that mean the command's set-up is wrong: exit 2, `dlc: error: <message>` (a SpecError,
    exit 2 too, prints its positioned diagnostics as they are)."""
    from dlc import api

    return (api.TuneError, api.EmitUnsupported, api.OutFolderError)


def _runtime_errors() -> tuple[type, ...]:
    """Exceptions whose message is the whole story: exit 1, `dlc: error: <message>`."""
    from dlc import api

    return (api.DataError, api.TrainingFailed, api.LoweringMissing, api.BackendUnavailable, api.ServeError,
            api.RunDirError, FileNotFoundError)


def _unexpected(exc: BaseException) -> str:
    """One line for an error nobody planned for (DLC_TRACEBACK=1 shows where it came from)."""
    if os.environ.get("DLC_TRACEBACK"):
        raise exc
    text = str(exc).strip()
    msg = text.splitlines()[0] if text else type(exc).__name__
    if not isinstance(exc, RuntimeError):
        msg = f"{type(exc).__name__}: {msg} (set DLC_TRACEBACK=1 to see where)"
    return msg


def _not_writable(exc: OSError) -> str:
    """A folder dlc may not write in (a read-only current folder, where `dlc run` makes runs/): which path and
    why, instead of Python's OSError text."""
    if exc.errno == errno.EROFS:
        return (f"cannot write {exc.filename}: the file system is read-only; give --out a folder that can be "
                f"written")
    return f"{exc.filename}: permission denied"


def _printing(exc: BaseException) -> bool:
    """Whether `exc` was raised by a command's print() to the standard output (the line it fails in is a
    `print(...)` without `file=`): a disk error there is the output's, not a run folder's file."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    line = (frames[-1].line or "") if frames else ""
    return line.startswith("print(") and "file=" not in line


def classify(exc: BaseException) -> tuple[int, str]:
    """(exit code, text for stderr) of an exception raised by a command."""
    from dlc import api

    if isinstance(exc, CommandError):
        return exc.code, exc.text
    if isinstance(exc, api.SpecError):
        return EXIT_SPEC, str(exc)
    if isinstance(exc, _spec_errors()):
        return EXIT_SPEC, error_line(str(exc))
    if isinstance(exc, _runtime_errors()):
        return EXIT_RUNTIME, error_line(str(exc))
    if (memory := api.out_of_memory(exc)) is not None:
        return EXIT_RUNTIME, error_line(api.out_of_memory_line(memory))
    if full := api.disk_full(exc):
        if not (isinstance(exc, OSError) and exc.filename) and _printing(exc):
            # (`dlc run spec > /dev/full`: the run was done and kept; only its printed line was lost)
            return EXIT_RUNTIME, error_line(f"cannot write the output to the standard output: {full}")
        where = f" {exc.filename}" if isinstance(exc, OSError) and exc.filename else ""
        return EXIT_RUNTIME, error_line(f"cannot write{where}: {full}; free some space and run again")
    if isinstance(exc, OSError) and exc.filename and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return EXIT_RUNTIME, error_line(_not_writable(exc))
    return EXIT_RUNTIME, error_line(_unexpected(exc))


def report(exc: BaseException) -> int:
    """Print what an exception means on stderr; return the exit code."""
    from dlc import api

    if api.lost_worker(exc):  # a data-parallel worker whose peer is gone: its launcher says which, once
        return api.EXIT_WORKER_LOST
    run, where = None, None
    if isinstance(exc, api.RunFailed):
        run, where, exc = exc.run, exc.where, exc.cause
    code, text = classify(exc)
    if run is not None and code == EXIT_RUNTIME:
        text += f" ({where}; run directory kept: {run})" if where else f" (run directory kept: {run})"
    if text:  # (a name in it with an ESC would colour the terminal: shown escaped, line by line)
        print(api.terminal_safe(text), file=sys.stderr)
    return code


class OutputClosed(Exception):
    """The reader of dlc's output has gone (`dlc schema | head -1`): dlc.cli.main ends quietly. Not an
    OSError, so that Click lets it through."""


def closed_outputs() -> list[int]:
    """The file descriptors of stdout and stderr that are pipes whose reader has gone (a BrokenPipeError
    from elsewhere, e.g. a worker's pipe, is an error like any other). Where that cannot be asked: stdout."""
    import select

    fds = []
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):  # not a file (the tests' StringIO)
            fds.append(stream.fileno())
    if not hasattr(select, "poll"):
        return fds[:1]
    gone = []
    for fd in dict.fromkeys(fds):
        poller = select.poll()
        poller.register(fd, 0)
        if any(ev & select.POLLERR for _, ev in poller.poll(0)):
            gone.append(fd)
    return gone


def quiet_exit(fds: list[int]) -> int:
    """Nothing more goes to the closed outputs `fds` (none found: stdout), not even Python's flush at exit
    (which would print 'Exception ignored ... BrokenPipeError'): they are pointed at /dev/null. Returns the
    exit code."""
    if not fds:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            fds = [sys.stdout.fileno()]
    for fd in fds:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    return EXIT_BROKEN_PIPE


def exits(command):
    """A command body whose exceptions become their line and exit code (its return value, None: 0, is the
    exit code otherwise); Ctrl-C is `dlc: interrupted` and 130."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs) -> int:
        try:
            code = command(*args, **kwargs)
        except KeyboardInterrupt as e:
            return interrupted(e)
        except BrokenPipeError as e:
            if closed_outputs():
                raise OutputClosed() from None  # dlc.cli.main ends quietly
            return report(e)
        except Exception as e:  # noqa: BLE001 - every error is one line and an exit code
            return report(e)
        return EXIT_OK if code is None else code

    return wrapper
