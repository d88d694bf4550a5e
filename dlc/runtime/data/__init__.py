"""Loading, splitting and normalising data: numpy only, seeded, the same arrays for every backend.

What a data file must hold is checked here, before any backend sees it, so every problem is one line naming
the file, the row (or sample) and the column: the header rule of CSV files, numbers where numbers belong,
labels the output layer can take, inputs the model's dtype can hold (README, "Data files").

The modules, each importing only those before it: base (Dataset, Split, Samples, DataError), files (the
readers), targets, splits, normalize (checks and statistics), stream (an npy source, read as it goes), dataset
(the in-memory path, and the entry points prepare() and folds()). Every name is imported from here."""

from __future__ import annotations

from dlc.compiler.csvtable import is_header, is_number
from dlc.runtime.data.base import (
    DataError,
    Dataset,
    Samples,
    Split,
    data_block,
    read_change,
    read_summary,
)
from dlc.runtime.data.bundled import read_bundled
from dlc.runtime.data.dataset import (
    Loaded,
    assemble,
    assemble_in_place,
    folds,
    load,
    load_raw,
    load_samples,
    prepare,
    reorder_rows,
)
from dlc.runtime.data.files import (
    Table,
    check_same_length,
    csv_samples,
    npz_array,
    numeric_features,
    open_npy,
    open_npz,
    read_csv,
    read_mnist,
    read_npy,
    read_npz,
    read_table,
    table_numbers,
    target_column,
    target_values,
)
from dlc.runtime.data.normalize import (
    CHUNK_BYTES,
    check_finite_features,
    check_finite_targets,
    check_model_inputs,
    check_statistics,
    chunk_rows,
    data_normalize,
    normalizer,
    streamed_normalizer,
)
from dlc.runtime.data.splits import (
    check_foldable,
    check_stratifiable,
    class_counts,
    holdout,
    holdout_indices,
    kfold_indices,
    kfold_splits,
    split_indices,
    split_seed,
)
from dlc.runtime.data.stream import (
    FileRows,
    Streamed,
    StreamedRows,
    assemble_streamed,
    folds_streamed,
    open_streamed,
    prepare_streamed,
)
from dlc.runtime.data.targets import (
    bad_label,
    checked_targets,
    class_labels,
    class_targets,
    onehot_labels,
    regression_targets,
)

__all__ = [
    "CHUNK_BYTES", "DataError", "Dataset", "FileRows", "Loaded",
    "Samples", "Split", "Streamed", "StreamedRows", "Table", "reorder_rows", "split_indices",
    "assemble", "assemble_in_place", "assemble_streamed", "bad_label",
    "check_finite_features", "check_finite_targets", "check_foldable", "check_model_inputs",
    "check_same_length", "check_statistics", "check_stratifiable",
    "checked_targets", "chunk_rows", "class_counts", "class_labels", "class_targets",
    "csv_samples", "data_block", "data_normalize", "folds", "folds_streamed",
    "holdout", "holdout_indices", "is_header", "is_number", "kfold_indices", "kfold_splits", "load",
    "load_raw", "load_samples", "normalizer", "npz_array", "numeric_features", "onehot_labels",
    "open_npy", "open_npz", "open_streamed", "prepare", "prepare_streamed", "read_bundled", "read_csv",
    "read_mnist", "read_npy", "read_npz", "read_change", "read_summary", "read_table", "regression_targets",
    "split_seed", "streamed_normalizer", "table_numbers", "target_column", "target_values",
]
