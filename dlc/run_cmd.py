"""`dlc run`: train a spec on one backend and write the run directory."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from dlc.cli import EXIT_RUNTIME, EXIT_SPEC, _compile
from dlc.runtime import rundir


def load_for_training(path: str, seed=None, dtype=None, epochs=None):
    """Compile a spec for training and apply command-line overrides; None (after printing) on spec errors."""
    result = _compile(path)
    if not result.ok:
        return None, result
    spec = result.spec
    from dlc.runtime.support import run_blockers

    blockers = run_blockers(result)
    if blockers:
        print("\n\n".join(d.render(result.source, result.file) for d in blockers), file=sys.stderr)
        return None, result
    update = {}
    if seed is not None:
        update["seed"] = seed
    if dtype is not None:
        update["dtype"] = dtype
    if epochs is not None:
        update["train"] = spec.train.model_copy(update={"epochs": epochs})
    return (spec.model_copy(update=update) if update else spec), result


def _fail(msg: str, run: Path | None) -> int:
    where = f" (run directory kept: {run})" if run is not None else ""
    print(f"dlc: error: {msg}{where}", file=sys.stderr)
    return EXIT_RUNTIME


def final_metrics(session, spec, data) -> dict[str, dict[str, float]]:
    """Loss and metrics of the trained model on each part of the data, in inference mode."""
    from dlc.runtime.loop import evaluate

    out = {}
    for part in ("train", "val", "test"):
        split = getattr(data, part)
        if split is not None:
            out[part] = evaluate(session, spec, session.load_data(split.x, split.y), data.num_classes,
                                 spec.train.batch_size)
    return out


def _resume_target(args):
    """(spec, run.json) of a run to resume; (None, None) after an error, (None, info) if it already finished."""
    from dlc.compiler.spec import Spec

    run = Path(args.resume)
    if not (run / "ir.json").is_file() or not (run / "run.json").is_file():
        print(f"dlc: error: '{run}' is not a dlc run directory (no ir.json/run.json)", file=sys.stderr)
        return None, None
    info = json.loads((run / "run.json").read_text())
    if (run / "metrics.json").is_file():
        print(f"{run}: this run already finished; nothing to resume")
        return None, info
    args.backend = info["backend"]
    args.spec = str(next(iter(sorted(run.glob("*.dlspec"))), run / "ir.json"))
    if args.device == "auto":
        args.device = info.get("device", "auto")
    return Spec.model_validate_json((run / "ir.json").read_text()), info


def main(args) -> int:
    import os

    from rich.console import Console

    from dlc.backends import BackendUnavailable, LoweringMissing, session_class
    from dlc.reference.weights import initial_weights
    from dlc.runtime import checkpoint
    from dlc.runtime.data import DataError, prepare
    from dlc.runtime.loop import TrainingFailed, train
    from dlc.runtime.tensorboard import EventWriter

    resume_state = None
    if args.resume:
        spec, info = _resume_target(args)
        if spec is None:
            return EXIT_RUNTIME if info is None else 0
        base_dir = Path(info["spec_dir"])
    else:
        if not args.spec:
            print("dlc: error: dlc run needs a SPEC (or --resume RUN)", file=sys.stderr)
            return EXIT_SPEC
        spec, _ = load_for_training(args.spec, args.seed, args.dtype, args.epochs)
        if spec is None:
            return EXIT_SPEC
        base_dir = Path(args.spec).resolve().parent
    if spec.data is not None and spec.data.split.kind == "kfold":
        from dlc.runtime.cv import main as cv_main

        args.k = None
        return cv_main(args)  # a kfold split means cross-validation
    console = Console(stderr=True, quiet=bool(args.quiet), highlight=False)
    run = None
    hist = None
    rows: list[dict] = []
    title = f"{spec.name} ({args.backend})"
    try:
        Session = session_class(args.backend)
        data = prepare(spec, base_dir)
        session = Session(spec, device=args.device, weights=initial_weights(spec))
        if args.resume:
            run = Path(args.resume)
            saved = checkpoint.load(run)
            if saved is not None:
                session.set_state(saved[0])
                resume_state = saved[1]
                rows = list(resume_state.history.rows)
        else:
            run = rundir.new_run_dir(spec.name, args.backend, args.out)
            rundir.copy_spec(run, args.spec)
            (run / "ir.json").write_text(spec.model_dump_json(indent=2))
            rundir.write_json(run / "run.json", rundir.run_info(args, spec, data))
        rundir.write_json(run / "env.json", rundir.env_info(args.backend, session.device_name))
        rundir.write_history(run, rows)
        tb = EventWriter(run)
        sizes = " / ".join(f"{len(s.x):,} {part}" for part, s in
                           (("train", data.train), ("val", data.val), ("test", data.test)) if s is not None)
        console.print(f"[bold]{spec.name}[/] on [cyan]{args.backend}[/] ({session.device_name}): {sizes} samples",
                      soft_wrap=True)
        console.print(f"[dim]run directory:[/] {run}", soft_wrap=True)
        table = EpochTable(console, spec, has_val=data.val is not None)

        def on_epoch(row):
            rows.append(row)
            rundir.write_history(run, rows)
            tb.scalars(row["epoch"], row)
            table.row(row)

        table.header()
        with _progress(console, spec.train.epochs) as progress:
            hist = train(session, spec, data, on_epoch=on_epoch, on_progress=progress, resume=resume_state,
                         on_checkpoint=lambda state: checkpoint.save(run, session, state))
        final: dict = final_metrics(session, spec, data)
        final["epochs_run"] = len(hist.rows)
        final["stopped_early"] = hist.stopped_early
        final["best_epoch"] = hist.best_epoch
        final["restored_best"] = hist.restored_best
        rundir.write_json(run / "metrics.json", final)
        session.save(run)
        rundir.plot_curves(run, hist.rows, title, best_epoch=hist.best_epoch)
        _summary(console, spec, hist, final)
        print(run)
        return 0
    except TrainingFailed as e:
        if run is not None:
            rundir.write_history(run, rows)
            if rows:
                rundir.plot_curves(run, rows, title + " — failed")
        return _fail(str(e), run)
    except (DataError, LoweringMissing, BackendUnavailable, FileNotFoundError) as e:
        return _fail(str(e), run)
    except MemoryError:
        return _fail("out of memory; try a smaller batch_size or model", run)
    except Exception as e:  # one line, never a traceback (DLC_TRACEBACK=1 shows it)
        if os.environ.get("DLC_TRACEBACK"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "out of memory" in msg.lower():
            return _fail(f"out of memory on the device ({msg}); try a smaller batch_size", run)
        if not isinstance(e, RuntimeError):
            msg = f"{type(e).__name__}: {msg} (set DLC_TRACEBACK=1 to see where)"
        return _fail(msg, run)


# ------------------------------------------------------------------------------------------------ console

def fmt_value(v: float | None) -> str:
    """A number in at most 8 characters, with about 4 significant digits."""
    if v is None:
        return "-"
    if not math.isfinite(v):
        return str(v)
    a = abs(v)
    if a >= 1e6 or (0 < a < 1e-3):
        return f"{v:.2e}"
    if a >= 1000:
        return f"{v:.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 10:
        return f"{v:.2f}"
    return f"{v:.4f}"


def fmt_lr(lr: float) -> str:
    return f"{lr:.3g}"


class EpochTable:
    """One compact row per epoch under a two-line header, fitted to the console width:

        epoch       loss           accuracy         recall           lr   time
                train     val     train     val    train     val
         1/20    1.8788  0.8643*   0.4448  0.8278   0.4437  0.8279   0.001   0.6s

    Train and validation sit side by side under each quantity; a '*' follows the monitored value (early
    stopping's, else val_loss) in each epoch that improved it. When the line would be wider than the console,
    the time column goes first, then the train values of the metrics (the validation ones stay), then metrics
    from the right; history.csv has everything."""

    SEP = "  "
    W = 7  # one number

    def __init__(self, console, spec, has_val: bool):
        from dlc.reference.callbacks import improved, monitor_mode

        self.console = console
        self.total = spec.train.epochs
        self.ew = max(len("epoch"), 2 * len(str(self.total)) + 1)
        self.has_val = has_val
        es = spec.train.early_stopping
        self.monitor = es.monitor if es is not None else ("val_loss" if has_val else "loss")
        if es is not None:
            self.better = lambda cur, best: improved(cur, best, monitor_mode(es.mode, es.monitor), es.min_delta)
        else:
            self.better = lambda cur, best: cur < best
        self.best: float | None = None
        self.prev_lr: float | None = None
        # columns: (key in the row, group name); a group is one quantity, with its train and val columns
        self.groups: list[list[str]] = []
        for name in ["loss"] + [m.name for m in spec.metrics]:
            self.groups.append([name, "val_" + name] if has_val else [name])
        self.show_time = True
        while self.width() > console.width:
            if self.show_time:
                self.show_time = False
            elif any(len(g) == 2 for g in self.groups[1:]):
                i = max(i for i, g in enumerate(self.groups) if len(g) == 2 and i > 0)
                self.groups[i] = self.groups[i][1:]
            elif len(self.groups) > 1:
                self.groups.pop()
            else:
                break

    def cell_width(self, key: str) -> int:
        return self.W + (1 if key == self.monitor else 0)

    @staticmethod
    def name(keys: list[str]) -> str:
        return keys[0].removeprefix("val_")

    def group_width(self, keys: list[str]) -> int:
        return max(sum(self.cell_width(k) for k in keys) + len(keys) - 1, len(self.name(keys)))

    def width(self) -> int:
        w = self.ew + sum(len(self.SEP) + self.group_width(g) for g in self.groups) + len(self.SEP) + self.W
        return w + (self.W if self.show_time else 0)

    def _cells(self, keys: list[str], texts: list[str]) -> str:
        w = self.group_width(keys)
        inner = " ".join(t.rjust(self.cell_width(k)) if k != self.monitor else t.rjust(self.W) + " "
                         for k, t in zip(keys, texts))
        return self.SEP + inner.rjust(w)

    def header(self):
        top = "epoch".rjust(self.ew)
        sub = " " * self.ew
        for g in self.groups:
            w = self.group_width(g)
            top += self.SEP + (self.name(g).center(w) if len(g) == 2 else self.name(g).rjust(w))
            sub += self._cells(g, ["val" if k.startswith("val_") else "train" for k in g])
        top += self.SEP + "lr".rjust(self.W) + ("time".rjust(self.W) if self.show_time else "")
        self.console.print(f"[bold]{top}[/]", soft_wrap=True)
        if self.has_val:
            self.console.print(f"[dim]{sub.rstrip()}[/]", soft_wrap=True)

    def row(self, row: dict):
        from rich.markup import escape

        improved = False
        cur = row.get(self.monitor)
        if cur is not None and (self.best is None or self.better(cur, self.best)):
            self.best, improved = cur, True
        line = escape(f"{row['epoch']}/{self.total}".rjust(self.ew))
        for g in self.groups:
            texts = []
            for k in g:
                t = escape(fmt_value(row.get(k)).rjust(self.W))
                if k.startswith("val_"):
                    t = f"[cyan]{t}[/]"
                if k == self.monitor:
                    t += "*" if improved else " "
                texts.append(t)
            line += self.SEP + " ".join(texts).rjust(self.group_width(g))  # markup: widths fixed by the cells
        lr = row["lr"]
        lr_text = fmt_lr(lr).rjust(self.W)
        changed = self.prev_lr is not None and lr != self.prev_lr
        self.prev_lr = lr
        line += self.SEP + (f"[yellow]{lr_text}[/]" if changed else lr_text)
        if self.show_time:
            t = row["time_s"]
            line += (f"{t:.1f}s" if t < 100 else f"{t:.0f}s").rjust(self.W)
        self.console.print(line, soft_wrap=True)


def _summary(console, spec, hist, final: dict):
    """How training ended, its speed, and a small table of the final metrics (the test row last)."""
    es = spec.train.early_stopping
    if hist.stopped_early:
        console.print(f"stopped early after epoch {len(hist.rows)}: {es.monitor} did not improve for "
                      f"{es.patience} epochs")
    if hist.restored_best and hist.best_epoch != len(hist.rows):
        console.print(f"restored the weights of epoch {hist.best_epoch} (best {es.monitor})")
    secs = sum(r["time_s"] for r in hist.rows)
    samples = sum(r["time_s"] * r["samples_per_s"] for r in hist.rows if r["samples_per_s"] == r["samples_per_s"])
    speed = f" ({samples / secs:,.0f} samples/s)" if secs > 0 else ""
    console.print(f"[dim]trained {len(hist.rows)} epochs in {secs:.1f} s{speed}[/]")
    parts = [p for p in ("train", "val", "test") if p in final]
    keys = list(final[parts[0]])
    widths = [max(8, len(k)) for k in keys]
    console.print("[bold]" + "final".ljust(6) + "".join("  " + k.rjust(w) for k, w in zip(keys, widths)) + "[/]")
    for p in parts:
        line = p.ljust(6) + "".join("  " + fmt_value(final[p].get(k)).rjust(w) for k, w in zip(keys, widths))
        console.print(f"[bold green]{line}[/]" if p == parts[-1] else line, soft_wrap=True)


class _progress:
    """A rich progress bar over the steps of the current epoch (refreshed a few times a second); nothing when the
    console is not a terminal (a log file gets the epoch rows only)."""

    def __init__(self, console, epochs: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.enabled = console.is_terminal and not console.quiet
        self.p = Progress(TextColumn("epoch {task.fields[epoch]}/" + str(epochs)), BarColumn(),
                          MofNCompleteColumn(), TextColumn("steps"), TimeElapsedColumn(), console=console,
                          transient=True)
        self.task = None

    def __enter__(self):
        if self.enabled:
            self.p.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            return self.p.__exit__(*exc)
        return None

    def __call__(self, epoch: int, done: int, total: int):
        if not self.enabled:
            return
        if self.task is None:
            self.task = self.p.add_task("train", total=total, epoch=epoch + 1)
        self.p.update(self.task, completed=done, total=total, epoch=epoch + 1)
