"""The `dlc` command line. Spec errors exit 2, training failures exit 1, never with a traceback."""

from __future__ import annotations

import argparse
import json
import sys

EXIT_SPEC = 2
EXIT_RUNTIME = 1


def _compile(path: str, show_warnings: bool = True):
    from dlc.compiler import compile_file

    result = compile_file(path)
    if result.diagnostics.items and (show_warnings or result.diagnostics.errors):
        print(result.render(errors_only=not show_warnings), file=sys.stderr)
    return result


def cmd_check(args) -> int:
    from dlc.compiler.summary import summary_text

    status = 0
    for path in args.specs:
        result = _compile(path)
        if not result.ok:
            n = len(result.diagnostics.errors)
            print(f"{path}: {n} error{'s' if n != 1 else ''}", file=sys.stderr)
            status = EXIT_SPEC
            continue
        if not args.quiet:
            print(summary_text(result.spec))
            print()
        print(f"{path}: ok")
    return status


def cmd_compile(args) -> int:
    result = _compile(args.spec)
    if not result.ok:
        return EXIT_SPEC
    if args.emit == "ir" and not args.output:
        print(result.spec.model_dump_json(indent=2))
        return 0
    if args.emit == "ir":
        from pathlib import Path

        Path(args.output).write_text(result.spec.model_dump_json(indent=2) + "\n")
        return 0
    from dlc.backends.emit.script import EmitUnsupported, emit

    try:
        script = emit(result.spec, args.emit, args.spec)
    except EmitUnsupported as e:
        print(f"dlc: error: {e}", file=sys.stderr)
        return EXIT_SPEC
    if args.output:
        from pathlib import Path

        Path(args.output).write_text(script)
        Path(args.output).chmod(0o755)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(script)
    return 0


def cmd_schema(args) -> int:
    from dlc.compiler.spec import Spec

    print(json.dumps(Spec.model_json_schema(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dlc", description="Compile and train .dlspec model specs on Keras or PyTorch.")
    p.add_argument("--version", action="version", version=f"dlc {__import__('dlc').__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("check", help="validate specs and print a summary")
    c.add_argument("specs", nargs="+")
    c.add_argument("-q", "--quiet", action="store_true", help="no summary, just ok or the errors")
    c.set_defaults(func=cmd_check)

    c = sub.add_parser("compile", help="print the validated IR")
    c.add_argument("spec")
    c.add_argument("--emit", default="ir", choices=["ir", "keras", "torch"],
                   help="ir: the validated IR as JSON; keras|torch: a standalone training script")
    c.add_argument("-o", "--output", help="write the emitted script (or IR) to this file")
    c.set_defaults(func=cmd_compile)

    c = sub.add_parser("schema", help="print the IR's JSON Schema")
    c.set_defaults(func=cmd_schema)

    c = sub.add_parser("run", help="train a spec")
    c.add_argument("spec", nargs="?")
    c.add_argument("--resume", metavar="RUN", help="continue a killed run from its last finished epoch")
    c.add_argument("--backend", choices=["torch", "keras"], default="torch")
    c.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    c.add_argument("--out", help="run directory (default: a fresh one under runs/)")
    c.add_argument("--epochs", type=int)
    c.add_argument("--seed", type=int)
    c.add_argument("--dtype", choices=["float32", "float64"])
    c.add_argument("--quiet", action="store_true", help="no progress display")
    c.set_defaults(func=lambda a: __import__("dlc.run_cmd", fromlist=["main"]).main(a))

    c = sub.add_parser("cv", help="k-fold cross-validation of a spec")
    c.add_argument("spec")
    c.add_argument("--backend", choices=["torch", "keras"], default="torch")
    c.add_argument("--device", default="auto")
    c.add_argument("--out", help="run directory (default: a fresh one under runs/)")
    c.add_argument("--k", type=int, help="number of folds (default: the spec's kfold k, else 5)")
    c.add_argument("--epochs", type=int)
    c.add_argument("--seed", type=int)
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=lambda a: __import__("dlc.runtime.cv", fromlist=["main"]).main(a))

    c = sub.add_parser("tune", help="search a spec's hyperparameters (its search block) with Optuna")
    c.add_argument("spec", nargs="?", help="the spec (with --refine, default: the spec that run searched)")
    c.add_argument("--backend", choices=["torch", "keras"], default="torch")
    c.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    c.add_argument("--out", help="run directory (default: a fresh one under runs/); the same --out resumes")
    c.add_argument("--trials", type=int, help="trials in all (default: the search block's trials)")
    c.add_argument("--workers", type=int, default=1, help="trials run at once, each in its own process")
    c.add_argument("--threads", type=int, help="CPU threads per trial (default: the cores / --workers)")
    c.add_argument("--refine", metavar="RUN", help="search around the best trials of an earlier tune run")
    c.add_argument("--study", help="Optuna study name (default: the model's name)")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=lambda a: __import__("dlc.runtime.tune", fromlist=["main"]).main(a))

    c = sub.add_parser("runs", help="list run directories")
    c.add_argument("dir", nargs="?", default="runs")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=lambda a: __import__("dlc.runs_cmd", fromlist=["cmd_runs"]).cmd_runs(a))

    c = sub.add_parser("plot", help="overlay the curves of several runs in one PNG")
    c.add_argument("runs", nargs="+")
    c.add_argument("--out", default="plot.png")
    c.set_defaults(func=lambda a: __import__("dlc.runs_cmd", fromlist=["cmd_plot"]).cmd_plot(a))

    c = sub.add_parser("evaluate", help="evaluate a trained run on its data splits or on a file")
    c.add_argument("run")
    c.add_argument("--data", help="a .csv (target in the last column or the spec's target column) or .npz (x, y)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=lambda a: __import__("dlc.runtime.serve", fromlist=["cmd_evaluate"]).cmd_evaluate(a))

    c = sub.add_parser("predict", help="predict with a trained run")
    c.add_argument("run")
    c.add_argument("--input", required=True, help="a .csv of raw features (header optional) or .npz (x)")
    c.add_argument("--output", help="a .csv or .npz file (default: CSV on stdout)")
    c.set_defaults(func=lambda a: __import__("dlc.runtime.serve", fromlist=["cmd_predict"]).cmd_predict(a))

    c = sub.add_parser("export", help="export a trained run (ONNX)")
    c.add_argument("run")
    c.add_argument("--format", choices=["onnx"], default="onnx")
    c.add_argument("--output", help="default: RUN/model.onnx")
    c.set_defaults(func=lambda a: __import__("dlc.runtime.serve", fromlist=["cmd_export"]).cmd_export(a))

    c = sub.add_parser("compare", help="train on both backends and compare step for step")
    c.add_argument("spec")
    c.add_argument("--steps", type=int, default=50)
    c.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    c.add_argument("--json", action="store_true")
    c.add_argument("--seed", type=int)
    c.set_defaults(func=lambda a: __import__("dlc.runtime.compare", fromlist=["main"]).main(a))

    c = sub.add_parser("catalogue", help="list every layer, activation, optimizer, ... with parameters, defaults "
                       "and the measured Keras/PyTorch |Δ|")
    c.add_argument("--markdown", action="store_true", help="a Markdown page (docs/CATALOGUE.md)")
    c.set_defaults(func=lambda a: __import__("dlc.runtime.catalogue", fromlist=["main"]).main(a))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("dlc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
