"""`dlc run`: train a spec on one backend and write the run directory."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from . import rundir
from .cli import EXIT_RUNTIME, EXIT_SPEC, _compile


def load_for_training(path: str, seed=None, dtype=None, epochs=None):
    """Compile a spec for training and apply command-line overrides; None (after printing) on spec errors."""
    result = _compile(path)
    if not result.ok:
        return None, result
    spec = result.spec
    from .support import run_blockers

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


def main(args) -> int:
    from rich.console import Console

    from .backends import BackendUnavailable, LoweringMissing, session_class
    from .data import DataError, prepare
    from .loop import TrainingFailed, evaluate, train
    from .weights import initial_weights

    spec, result = load_for_training(args.spec, args.seed, args.dtype, args.epochs)
    if spec is None:
        return EXIT_SPEC
    if spec.data is not None and spec.data.split.kind == "kfold":
        from .cv import main as cv_main

        args.k = None
        return cv_main(args)  # a kfold split means cross-validation
    console = Console(stderr=True, quiet=bool(args.quiet))
    run = None
    hist = None
    rows: list[dict] = []
    try:
        Session = session_class(args.backend)
        data = prepare(spec, Path(args.spec).resolve().parent)
        session = Session(spec, device=args.device, weights=initial_weights(spec))
        run = rundir.new_run_dir(spec.name, args.backend, args.out)
        rundir.copy_spec(run, args.spec)
        (run / "ir.json").write_text(spec.model_dump_json(indent=2))
        rundir.write_json(run / "env.json", rundir.env_info(args.backend, session.device_name))
        console.print(f"[bold]{spec.name}[/] on [cyan]{args.backend}[/] ({session.device_name}), "
                      f"{len(data.train.x)} train / {len(data.val.x) if data.val else 0} val / "
                      f"{len(data.test.x) if data.test else 0} test samples → {run}")
        def on_epoch(row):
            rows.append(row)
            rundir.write_history(run, rows)
            shown = "  ".join(f"{k} {v:.4f}" for k, v in row.items()
                              if k not in ("epoch", "time_s", "samples_per_s", "lr"))
            console.print(f"epoch {row['epoch']:>3}/{spec.train.epochs}  {shown}  lr {row['lr']:.2g}  "
                          f"[dim]{row['samples_per_s']:,.0f} samples/s[/]")

        with _progress(console, spec.train.epochs) as progress:
            hist = train(session, spec, data, on_epoch=on_epoch, on_progress=progress)
        final = {"train": evaluate(session, spec, session.load_data(data.train.x, data.train.y),
                                   data.num_classes, spec.train.batch_size)}
        for part in ("val", "test"):
            split = getattr(data, part)
            if split is not None:
                final[part] = evaluate(session, spec, session.load_data(split.x, split.y), data.num_classes,
                                       spec.train.batch_size)
        final["epochs_run"] = len(hist.rows)
        final["stopped_early"] = hist.stopped_early
        final["best_epoch"] = hist.best_epoch
        final["restored_best"] = hist.restored_best
        rundir.write_json(run / "metrics.json", final)
        session.save(run)
        rundir.plot_curves(run, hist.rows, f"{spec.name} ({args.backend})")
        summary = "  ".join(f"{k} {v:.4f}" for k, v in final.get("test", final.get("val", final["train"])).items())
        which = "test" if "test" in final else ("val" if "val" in final else "train")
        console.print(f"[bold green]done[/] {which}: {summary}")
        print(run)
        return 0
    except TrainingFailed as e:
        if run is not None and rows:
            rundir.plot_curves(run, rows, f"{spec.name} ({args.backend})")
        return _fail(str(e), run)
    except (DataError, LoweringMissing, BackendUnavailable, FileNotFoundError) as e:
        return _fail(str(e), run)
    except MemoryError:
        return _fail("out of memory; try a smaller batch_size or model", run)
    except RuntimeError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "out of memory" in msg.lower():
            return _fail(f"out of memory on the device ({msg}); try a smaller batch_size", run)
        return _fail(msg, run)


class _progress:
    """A rich progress bar over the steps of the current epoch (refreshed a few times a second)."""

    def __init__(self, console, epochs: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.p = Progress(TextColumn("epoch {task.fields[epoch]}/" + str(epochs)), BarColumn(),
                          MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True)
        self.task = None
        self.t0 = time.perf_counter()

    def __enter__(self):
        self.p.__enter__()
        return self

    def __exit__(self, *exc):
        return self.p.__exit__(*exc)

    def __call__(self, epoch: int, done: int, total: int):
        if self.task is None:
            self.task = self.p.add_task("train", total=total, epoch=epoch + 1)
        self.p.update(self.task, completed=done, total=total, epoch=epoch + 1)
