"""A few example command lines for each command's --help (its epilog), with what each does: the commands
as a user types them from the repository root, on the specs in specs/."""

EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "check": [
        ("dlc check specs/iris.dlspec", "validate a spec and print its layers"),
        ("dlc check -q specs/*.dlspec", "many specs: just ok or the errors"),
    ],
    "compile": [
        ("dlc compile specs/iris.dlspec --emit ir", "the validated IR, as JSON"),
        ("dlc compile specs/iris.dlspec --emit torch -o train_iris.py", "a standalone PyTorch script"),
    ],
    "schema": [
        ("dlc schema > ir.schema.json", "the IR's JSON Schema, to a file"),
    ],
    "run": [
        ("dlc run specs/iris.dlspec", "train on PyTorch, into a fresh folder under runs/"),
        ("dlc run specs/iris.dlspec --backend keras --out runs/iris-k", "train on Keras into runs/iris-k"),
        ("dlc run specs/digits_mlp.dlspec --epochs 5 --seed 1 --quiet", "5 epochs, another seed, no display"),
        ("dlc run --resume runs/iris-k", "continue a run that was interrupted"),
    ],
    "cv": [
        ("dlc cv specs/iris.dlspec --k 5", "5-fold cross-validation: each fold and the mean ± std"),
    ],
    "tune": [
        ("dlc tune specs/tune/iris_tune.dlspec --trials 20", "20 trials; the best spec in DIR/best.dlspec"),
        ("dlc tune --refine runs/iris_tune-tune-torch-...", "search again, around the best trials"),
    ],
    "lr-find": [
        ("dlc lr-find specs/iris.dlspec", "the suggested lr, and the curve in lr_find.png"),
        ("dlc lr-find specs/iris.dlspec --json > lr.json", "the curve as JSON"),
    ],
    "runs": [
        ("dlc runs", "every run under runs/"),
        ("dlc runs runs --json", "the same, as JSON"),
    ],
    "plot": [
        ("dlc plot runs/iris-a runs/iris-b --out iris.png", "two runs' curves in one PNG"),
    ],
    "doctor": [
        ("dlc doctor runs/iris-k", "what went wrong in a run, and the remedy"),
        ("dlc doctor runs/iris-k --fix", "also write the remedy into RUN/doctor.dlspec"),
    ],
    "evaluate": [
        ("dlc evaluate runs/iris-k", "the trained model on its train, val and test splits"),
        ("dlc evaluate runs/iris-k --data new.csv --json", "on a file of labelled rows, as JSON"),
    ],
    "predict": [
        ("dlc predict runs/iris-k --input flowers.csv", "a class and its probabilities per row, as CSV"),
        ("dlc predict runs/iris-k --input flowers.csv --output p.json", "the same, written as JSON"),
    ],
    "export": [
        ("dlc export runs/iris-k", "write runs/iris-k/model.onnx"),
    ],
    "compare": [
        ("dlc compare specs/iris.dlspec", "Keras and PyTorch step for step, 200 steps in float64"),
        ("dlc compare specs/iris.dlspec --seeds 5 --json", "where 5 seeds' trainings end, as JSON"),
    ],
    "catalogue": [
        ("dlc catalogue --markdown > CATALOGUE.md", "every layer, activation, ... as a Markdown page"),
    ],
}


def examples_epilog(command: str) -> str | None:
    """The --help epilog of `command` (Markdown, as the help pages are drawn): each example's purpose, and
    its command line under it; None for a command without."""
    rows = EXAMPLES.get(command)
    if not rows:
        return None
    return "**Examples**\n\n" + "\n".join(f"* {what}:  \n  `{line}`" for line, what in rows)
