"""`dlc run --nproc N`: data-parallel training on N processes (on several machines with --nnodes).

The launcher (`launch`, imports no framework) starts N copies of the same `dlc run` command
(`python -m dlc run ...`) with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in their
environment (as torchrun does; a `dlc run` started by torchrun is a worker too) and watches them: rank 0
prints and writes the run directory, the others are silent; when one of them stops with an error the others
are stopped and the launcher tells which one in one line (exit 1), so a lost worker never hangs the run.

A worker (`from_env`) trains as the backend's data-parallel module says (backends/distributed.py): the
same per-epoch losses, metrics and weights as one process. Rank 0 runs the whole of `dlc run` (run
directory, checkpoints, evidence, final metrics); the other ranks only train (`follow`)."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from dlc.backends.distributed import Worker, WorkerLost

__all__ = ["LAUNCHED", "EXIT_WORKER_LOST", "PORTS", "Launch", "Worker", "WorkerLost", "blockers", "from_env",
           "launch", "note_run_folder"]

LAUNCHED = "DLC_NPROC_LAUNCHED"  # set by `launch` in its workers' environment
PORTS = "DLC_WORKER_PORTS"  # one free port per worker on this machine (the keras backend's cluster)
RUN_NOTE = "DLC_RUN_FOLDER_NOTE"  # a file where rank 0 writes the run folder it trains into, for the launcher
TIMEOUT = "DLC_COLLECTIVE_TIMEOUT"  # seconds a collective waits for the other processes (default 300)
EXIT_WORKER_LOST = 3  # a worker whose peer was lost: the launcher reports it (the worker prints nothing)
GRACE_S = 15.0  # how long rank 0 may take to end on its own after another worker stopped


def from_env() -> Worker | None:
    """This process's place in a data-parallel run, from the environment `launch` (or torchrun) sets; None
    outside one."""
    env = os.environ
    if not _launched():
        return None
    return Worker(rank=int(env.get("RANK", "0")), world=int(env["WORLD_SIZE"]),
                  local_rank=int(env.get("LOCAL_RANK", "0")), master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
                  master_port=int(env.get("MASTER_PORT", "29500")),
                  timeout_s=collective_timeout(), launched=bool(env.get(LAUNCHED)))


def secondary_worker() -> bool:
    """Whether this process is a worker of a data-parallel run other than rank 0 (which alone reports and
    writes the run): under torchrun every worker shares the terminal, and its lines would repeat rank 0's."""
    return _launched() and os.environ.get("RANK", "0").strip() not in ("", "0")


def _launched() -> bool:
    """Whether this process is a worker of a data-parallel run, started by `launch` or by torchrun."""
    env = os.environ
    return bool(env.get(LAUNCHED) or env.get("TORCHELASTIC_RUN_ID")) and "WORLD_SIZE" in env


def collective_timeout() -> float:
    """DLC_COLLECTIVE_TIMEOUT, in seconds (300 when unset); ValueError naming it when it is not a number of
    seconds above 0 (0 or less failed every rendezvous with pages of c10d's C++ stack, `abc` with a bare
    ValueError, `inf` overflowed)."""
    text = os.environ.get(TIMEOUT, "").strip() or "300"
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{TIMEOUT}={text!r} is not a finite number of seconds above 0 (how long a data-"
                         "parallel process waits for the others; 300 when unset)")
    return seconds


def blockers(spec, backend: str, nnodes: int = 1) -> list[str]:
    """Why the spec cannot train data-parallel on `backend` (empty: it can)."""
    out = []
    if backend == "keras" and nnodes > 1:
        out.append("--nproc on the keras backend runs on one machine (no --nnodes): use --backend torch")
    if backend == "keras" and any(info.layer.kind == "BatchNorm" for info in spec.walk()):
        out.append("--nproc on the keras backend does not support BatchNorm (Keras' synchronized BatchNorm "
                   "computes another variance formula): use --backend torch, which synchronizes it exactly")
    if backend == "keras" and spec.data is not None and spec.data.source.name == "npy":
        out.append("--nproc on the keras backend needs the features in memory, not a streamed npy(...) "
                   "source: use --backend torch, or an npz(...) source")
    if getattr(spec.train, "precision", None) == "mixed_float16":
        out.append("--nproc does not support precision: mixed_float16 (its dynamic loss scale is not "
                   "synchronized across processes); use mixed_bfloat16 or float32")
    if per_occurrence_embedding(spec):
        out.append(f"--nproc with an Embedding and {spec.optimizer.kind}: Keras squares or clips each "
                   "occurrence's gradient row before the rows are summed, which needs every process's rows; "
                   "summed across the processes first it would train differently (use one process, or SGD "
                   "without clipping)")
    if spec.data is not None and spec.data.split.kind == "kfold":
        out.append("--nproc trains one run; a kfold spec runs cross-validation (dlc cv), which it does "
                   "not split across processes")
    return out


def per_occurrence_embedding(spec) -> bool:
    """Whether an Embedding's gradient rows are used one by one (backends/torch/optimizers.Slices): by every
    optimizer that squares the gradient and by clipping; not by SGD without clipping, nor by a centered
    RMSprop (which takes the summed gradient on both backends)."""
    if not any(info.layer.kind == "Embedding" for info in spec.walk()):
        return False
    opt = spec.optimizer
    if opt.kind == "RMSprop" and getattr(opt, "centered", False):
        return False
    clipped = any(getattr(opt, k, None) for k in ("clipnorm", "clipvalue", "global_clipnorm"))
    return opt.kind != "SGD" or clipped


# ---------------------------------------------------------------------------------------------- workers


def note_run_folder(run: Path) -> None:
    """Rank 0 tells its launcher the run folder it trains into (made by rank 0: without --out the launcher
    cannot know it), so that the launcher's line about a lost worker or an interrupted run names it."""
    note = os.environ.get(RUN_NOTE)
    if note:
        with contextlib.suppress(OSError):
            Path(note).write_text(str(run), encoding="utf-8")


def _noted(note: str) -> Path | None:
    """The run folder rank 0 wrote in the file `note` (None: it made none, or said nothing)."""
    try:
        text = Path(note).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return Path(text) if text else None


@contextlib.contextmanager
def joined(worker: Worker, spec, backend: str, device: str):
    """This process in the run's process group (left at the end): the backend's data-parallel module."""
    from dlc.backends import data_parallel

    problems = blockers(spec, backend)
    if problems:
        raise ValueError(problems[0])
    dp = data_parallel(backend)
    dp.start(worker, device)
    try:
        yield dp
    finally:
        with contextlib.suppress(Exception):  # a group broken by a lost worker cannot be left cleanly
            dp.stop()


def follow(session, spec, data, resume):
    """A rank above 0: the same training as rank 0 (the loop's decisions follow from the same summed
    numbers), writing nothing. Returns (history, final metrics: {} — rank 0 writes them)."""
    from dlc.runtime.loop import train

    state = None
    if resume is not None and resume.checkpoint is not None:
        from dlc.runtime.checkpoint import restore

        restore(session, resume.checkpoint[0])  # (what does not fit the model, in words)
        state = resume.checkpoint[1]
    return train(session, spec, data, resume=state), {}


# --------------------------------------------------------------------------------------------- launcher


@dataclass
class Launch:
    """How `launch` starts the workers: `nproc` on this machine, `nnodes` machines (this one `node_rank`),
    the rendezvous (rank 0's machine: MASTER_ADDR, a free port there when not given)."""

    nproc: int
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None
    env: dict = field(default_factory=dict)

    @property
    def world(self) -> int:
        return self.nproc * self.nnodes


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_launch(how: Launch) -> str | None:
    """What is wrong with the launch options (None: nothing)."""
    if how.nproc < 1 or how.nnodes < 1:
        return "--nproc and --nnodes must be at least 1"
    try:
        collective_timeout()
    except ValueError as e:
        return str(e)
    if not 0 <= how.node_rank < how.nnodes:
        return f"--node-rank must be between 0 and {how.nnodes - 1}"
    cores = usable_cores()
    if how.nproc > OVERSUBSCRIBE * cores:
        return (f"--nproc {how.nproc}: this machine has {cores} CPU core{'s' if cores != 1 else ''} for dlc, "
                f"and more than {OVERSUBSCRIBE} processes per core only wait for each other; use one per "
                f"core (--nproc {cores}) or one per GPU")
    if how.nnodes > 1 and (not how.master_addr or not how.master_port):
        return ("--nnodes above 1 needs --master-addr and --master-port: the address of the machine with "
                "--node-rank 0 and a free port there, the same on every machine")
    return None


# processes per CPU core that --nproc accepts: a few share a core (to test a data-parallel run on a laptop);
# hundreds only thrash the machine
OVERSUBSCRIBE = 4


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _worker_env(how: Launch, local: int, addr: str, port: int, ports: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(how.env)
    if ports:
        env[PORTS] = ports
    env.update({LAUNCHED: "1", "RANK": str(how.node_rank * how.nproc + local), "WORLD_SIZE": str(how.world),
                "LOCAL_RANK": str(local), "LOCAL_WORLD_SIZE": str(how.nproc), "MASTER_ADDR": addr,
                "MASTER_PORT": str(port)})
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:  # (TensorFlow's native log of a lost worker: ours says it)
        env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if "OMP_NUM_THREADS" not in os.environ:  # the cores shared among this machine's workers
        env["OMP_NUM_THREADS"] = str(max(1, usable_cores() // how.nproc))
    return env


def launch(args: list[str], how: Launch, quiet_args: list[str] | None = None) -> tuple[int, str]:
    """Run `python -m dlc *args` as `how.nproc` workers of a data-parallel run and wait for them: (the exit
    code of the run, a line for stderr): 0, or rank 0's own code when it reported a failure itself (no
    line); 1, and the line saying which worker stopped, when another one did. `quiet_args` are added for
    the ranks above 0 (their output is dropped anyway, except the last line of a failing worker's stderr,
    which the launcher's line quotes). The line names the run folder rank 0 made; so does the
    KeyboardInterrupt of an interrupted run, in its `run_folder` (None: none was made)."""
    addr = how.master_addr or "127.0.0.1"
    port = how.master_port or _free_port()
    ports = ",".join(str(_free_port()) for _ in range(how.nproc)) if how.nnodes == 1 else ""
    fd, note = tempfile.mkstemp(prefix="dlc-run-folder-")
    os.close(fd)
    procs: list[subprocess.Popen] = []
    logs = []
    saved = {}
    with contextlib.suppress(ValueError):  # (only the main thread may set handlers)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if sig == signal.SIGTERM and callable(signal.getsignal(sig)):
                continue  # the command line's own (it raises a KeyboardInterrupt, and says so): kept
            saved[sig] = signal.signal(sig, _terminated)
    try:
        for local in range(how.nproc):
            rank = how.node_rank * how.nproc + local
            cmd = [sys.executable, "-m", "dlc", *args, *([] if rank == 0 else (quiet_args or []))]
            log = None if rank == 0 else tempfile.TemporaryFile(  # noqa: SIM115 - closed at the end
                mode="w+", prefix="dlc-worker-")
            logs.append(log)
            env = _worker_env(how, local, addr, port, ports)
            if rank == 0:
                env[RUN_NOTE] = note
            procs.append(subprocess.Popen(cmd, env=env, stdout=None if rank == 0 else subprocess.DEVNULL,
                                          stderr=log, preexec_fn=_worker_start))
        codes, order, suspended = _watch(procs, has_rank0=how.node_rank == 0)
        return _verdict(codes, order, logs, how, _noted(note), suspended)
    except KeyboardInterrupt as e:
        _stop(procs)
        e.run_folder = _noted(note)  # type: ignore[attr-defined]
        raise
    finally:
        _stop(procs)
        with contextlib.suppress(OSError):
            os.unlink(note)
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        for log in logs:
            if log is not None:
                log.close()


def _worker_start() -> None:
    """In a worker, before it starts: Ctrl-C goes to the launcher alone, which stops the workers (one
    `dlc: interrupted`, not one per worker; Python keeps a SIGINT ignored at its start ignored); and on
    Linux the worker gets SIGTERM when the launcher dies, even by SIGKILL (no orphan training on)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _terminated(signum, _frame):
    """SIGTERM (or SIGHUP) to the launcher: stop the workers on the way out (launch's `finally`)."""
    raise SystemExit(128 + signum)


def _watch(procs: list[subprocess.Popen], has_rank0: bool
           ) -> tuple[list[int | None], list[int], dict[int, int]]:
    """Wait for every worker; when one fails, give rank 0 GRACE_S to end (and report) on its own, then stop
    the rest. (exit codes, None for a worker stopped here; the workers in the order they ended; the
    workers found suspended when they were stopped here, index: pid)"""
    order: list[int] = []
    deadline = None
    while True:
        for i, p in enumerate(procs):
            if i not in order and p.poll() is not None:
                order.append(i)
        if len(order) == len(procs):
            break
        failed = [i for i in order if procs[i].returncode != 0]
        if failed and deadline is None:
            rank0_done = not has_rank0 or 0 in order
            deadline = time.monotonic() + (0.0 if rank0_done else GRACE_S)
        if deadline is not None and time.monotonic() >= deadline:
            suspended = {i: p.pid for i, p in enumerate(procs) if i not in order and _suspended(p.pid)}
            _stop(procs)
            return [p.returncode if i in order else None for i, p in enumerate(procs)], order, suspended
        time.sleep(0.05)
    return [p.returncode for p in procs], order, {}


def _suspended(pid: int) -> bool:
    """Whether the process is stopped (SIGSTOP, Ctrl-Z's SIGTSTP) or held by a debugger: state T or t in
    /proc/PID/stat (Linux; elsewhere, or once it is gone, False). Such a worker is alive but silent: the
    others time out waiting for it, and the launcher's line names it rather than blaming them all."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rpartition(")")[2].split()  # (the name, in parentheses, may hold spaces)
    return bool(fields) and fields[0] in ("T", "t")


def _stop(procs: list[subprocess.Popen]) -> None:
    """Terminate the workers still running (kill those that do not end within 3 s)."""
    alive = [p for p in procs if p.poll() is None]
    for p in alive:
        with contextlib.suppress(OSError):
            p.terminate()
    end = time.monotonic() + 3.0
    for p in alive:
        try:
            p.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                p.kill()
            p.wait()


def _how_it_ended(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


def _last_line(log) -> str:
    if log is None:
        return ""
    with contextlib.suppress(OSError, ValueError):
        log.seek(0)
        lines = [ln.strip() for ln in log.read().splitlines() if ln.strip()]
        return lines[-1] if lines else ""
    return ""


def _verdict(codes: list[int | None], order: list[int], logs: list, how: Launch,
             run: Path | None = None, suspended: dict[int, int] | None = None) -> tuple[int, str]:
    """The launcher's exit code and the one line that says which worker stopped ("" when rank 0 reported
    its own failure, or finished); the line names `run`, the run folder rank 0 made (None: it made none),
    and a worker that was `suspended` (index: pid) when the others gave up waiting for it."""
    if all(c == 0 for c in codes):
        return 0, ""
    if how.node_rank == 0 and codes[0] is not None and codes[0] != EXIT_WORKER_LOST:
        if codes[0] == 0:
            return 0, ""  # rank 0 finished the run and wrote it; a worker failing after that changes nothing
        if codes[0] > 0:
            return codes[0], ""  # rank 0 said why (its `dlc: error:` line)
    culprit = next((i for i in order if codes[i] not in (0, EXIT_WORKER_LOST)), None)
    timeout = f"{os.environ.get(TIMEOUT, '300')} s ({TIMEOUT})"
    if culprit is None and suspended:
        stalled, pid = min(suspended.items())
        rank = how.node_rank * how.nproc + stalled
        line = (f"worker {rank} of {how.world} (pid {pid}) stopped responding: it is suspended (SIGSTOP, "
                f"Ctrl-Z or a debugger), so the others timed out after {timeout}; the workers were stopped")
    elif culprit is None:
        where = "" if how.nnodes == 1 else " (a worker on another machine may have stopped)"
        line = (f"the {how.world} workers of this data-parallel run lost contact with each other{where}; "
                f"the collective timeout is {timeout}")
    else:
        code = codes[culprit]
        assert code is not None
        rank = how.node_rank * how.nproc + culprit
        said = _last_line(logs[culprit])
        said = said.removeprefix("dlc: error: ")
        line = (f"worker {rank} of {how.world} stopped ({_how_it_ended(code)}{': ' + said if said else ''}); "
                "the other workers were stopped")
    return 1, line + _kept(run, how)


def _kept(run: Path | None, how: Launch) -> str:
    """What the launcher's line adds about the run folder: that it is kept, and (on one machine, with a
    checkpoint) the command that continues it."""
    if run is None:
        return ""
    again = f"; `dlc run --resume {run} --nproc {how.nproc}` continues it" \
        if how.nnodes == 1 and (run / "checkpoint.npz").is_file() else ""
    return f" (run directory kept: {run}{again})"


# ------------------------------------------------------------------------------- a group started by another


def group_vars(nproc: int) -> list[dict[str, str]]:
    """The environment of each of `nproc` workers of one data-parallel group on this machine (a `dlc tune
    --trial-nproc` trial, whose processes `dlc tune` starts and watches itself): the variables `launch` sets
    (LAUNCHED, RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, the keras backend's ports), with a
    fresh rendezvous port; only these, not the rest of the environment."""
    port = _free_port()
    ports = ",".join(str(_free_port()) for _ in range(nproc))
    return [{LAUNCHED: "1", "RANK": str(local), "WORLD_SIZE": str(nproc), "LOCAL_RANK": str(local),
             "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
             PORTS: ports} for local in range(nproc)]


def verdict(codes: list[int | None], order: list[int], logs: list, nproc: int) -> tuple[int, str]:
    """`launch`'s verdict on a group of `nproc` workers on one machine (see _verdict): its exit code and the
    line that says which worker stopped ("" when rank 0 ended on its own)."""
    return _verdict(codes, order, logs, Launch(nproc))
