"""The curated mutations tests/mutation/run.py applies, one at a time, to a copy of the repository.

Each is a realistic bug (an off-by-one, a swapped pair, a dropped line, a wrong default): the files and the
exact text it replaces, the tests that should see it (pytest node ids or files, run in one pytest process) and
one line saying what it breaks. A mutation whose old text is no longer in its file is reported as stale (the
code moved on: update its text), never counted.

The first mutation is the sanity check: a bug the named tests certainly see. If it survives, the tests are
not importing the mutated copy and the runner stops.
"""

from __future__ import annotations

from dataclasses import dataclass

EQ = "tests/test_equivalence.py"
CAT = "tests/test_training_catalogue.py"
STOCK = "tests/test_stock_keras.py"  # stock-Keras anchors (its tests are used where the file exists)
FAIL = "tests/test_training_rules.py"  # the loop's rules with numbers written down by hand


def eq(test: str, *fixtures: str) -> list[str]:
    """Equivalence node ids: `test` (float64, float32, ...) on each fixture."""
    name = {"f64": "test_float64_step_for_step", "f32": "test_float32_step_for_step"}.get(test, test)
    return [f"{EQ}::{name}[{f}]" for f in fixtures]


@dataclass(frozen=True)
class Mutation:
    name: str
    why: str
    edits: tuple[tuple[str, str, str], ...]  # (file, old text, new text), applied in order
    tests: tuple[str, ...]
    sanity: bool = False


def M(name: str, why: str, file: str, old: str, new: str, tests: list[str], **kw) -> Mutation:
    return Mutation(name, why, ((file, old, new),), tuple(tests), **kw)


SAME_PAD_TESTS = eq("f64", "conv1d_same_s2", "conv2d_same_s2", "maxpool2d_same_s2", "avgpool2d",
                    "depthwiseconv2d_same_s2", "separableconv2d_same_s2", "conv2d_same_s1")
LR_TEST = f"{CAT}::test_lr_used_each_epoch_is_in_the_history"
SCHEDULE_TESTS = [LR_TEST, f"{EQ}::test_schedule_fixture_spans_many_epochs", STOCK, FAIL]
ES_TESTS = [f"{EQ}::test_early_stopping_fixture_really_stops_and_restores", *eq("f64", "early_stopping"),
            STOCK, FAIL]
RESUME_TESTS = ["tests/test_resume.py", FAIL]
DATA_TESTS = ["tests/test_data.py", "tests/test_cv.py::test_folds_partition_and_keep_test_out",
              "tests/test_cv.py::test_folds_are_seeded",
              "tests/test_api.py::test_load_data_has_no_absent_parts"]
METRIC_TESTS = [f"{CAT}::test_precision_recall_f1_match_sklearn_on_both_backends",
                f"{CAT}::test_regression_metrics_identical_on_both_backends", STOCK, FAIL]
EMIT_TESTS = ["tests/test_emit.py::test_bundle_copies_definitions_dependencies_first_with_decorators",
              "tests/test_emit.py::test_emitted_script_matches_dlc"]

MUTATIONS: list[Mutation] = [
    # ------------------------------------------------------------------------------------------------ sanity
    M("sanity_same_pad_swapped", "TF's 'same' split: the odd extra before instead of after, every layer",
      "dlc/reference/semantics.py", "return total // 2, total - total // 2",
      "return total - total // 2, total // 2", eq("f64", "conv2d_same_s2"), sanity=True),

    # ---------------------------------------------------- the survivors of the previous review, re-expressed
    M("plateau_patience_off_by_one", "ReduceLROnPlateau waits patience + 1 epochs before cutting the lr",
      "dlc/reference/callbacks.py", "if self.wait >= self.patience and lr > self.min_lr:",
      "if self.wait > self.patience and lr > self.min_lr:",
      [f"{CAT}::test_lr_used_each_epoch_is_in_the_history", *eq("f64", "schedule_plateau"), STOCK, FAIL]),
    M("early_stopping_patience_off_by_one", "early stopping waits patience + 1 epochs without improvement",
      "dlc/runtime/loop.py", "elif state.es_wait >= es.patience and epoch > 0:",
      "elif state.es_wait > es.patience and epoch > 0:", ES_TESTS),
    M("restore_best_not_done", "restore_best reports a restore it did not do (the last weights stay)",
      "dlc/runtime/loop.py",
      "        session.set_weights(state.best_weights)\n        hist.restored_best = True",
      "        hist.restored_best = True", [*ES_TESTS, "tests/test_resume.py"]),
    M("epoch_loss_unweighted",
      "the epoch loss is the plain mean of the batch losses (a short last batch counts as a full one)",
      "dlc/runtime/loop.py", '"loss": float(np.sum(losses * sizes) / np.sum(sizes))',
      '"loss": float(np.mean(losses))',
      [LR_TEST, "tests/test_api.py::test_fit_matches_across_backends_and_continues", STOCK, FAIL]),
    M("conv1d_same_pad_flipped", "Conv1D (only) puts 'same' padding's odd extra before the sequence",
      "backends/torch/lower.py", "pad = same_pad(ctx.in_shape[0], k, s) if",
      "pad = same_pad(ctx.in_shape[0], k, s)[::-1] if", SAME_PAD_TESTS),
    Mutation("keras_checkpoint_without_optimizer", "Keras' optimizer slots and iteration count are not saved "
             "in (nor restored from) checkpoints", (
                 ("backends/keras/session.py",
                  '        for i, v in enumerate(self._optimizer_variables()):\n'
                  '            out[f"opt/{i}"] = np.array(v.numpy(), copy=True)\n', ""),
                 ("backends/keras/session.py",
                  'v.assign(state[f"opt/{i}"])', "pass")),
             tuple(RESUME_TESTS)),
    M("adam_beta_2_default", "the IR's Adam default beta_2 is 0.99 instead of Keras' 0.999",
      "compiler/training.py",
      "beta_2: float = Field(0.999, gt=0, lt=1)\n    epsilon: float = Field(1e-7, gt=0)\n    amsgrad",
      "beta_2: float = Field(0.99, gt=0, lt=1)\n    epsilon: float = Field(1e-7, gt=0)\n    amsgrad",
      [*eq("f64", "opt_adam"), "tests/test_check.py", STOCK, FAIL]),

    # --------------------------------------------------------------------------- 'same' padding, per layer
    M("conv2d_same_pad_reversed", "Conv2D's (left, right, top, bottom) handed over reversed",
      "backends/torch/lower.py", "strides=ss, pad=_pad2d(layer, ctx, ks, ss),",
      "strides=ss, pad=_pad2d(layer, ctx, ks, ss)[::-1],", SAME_PAD_TESTS),
    M("pad2d_axes_swapped", "the 2-D 'same' pad tuple has the row pads where F.pad wants the column pads",
      "backends/torch/lower.py", "    return (left, right, top, bottom)\n",
      "    return (top, bottom, left, right)\n", SAME_PAD_TESTS),
    M("maxpool_same_pad_flipped", "max pooling pads with the odd extra before", "backends/torch/layers.py",
      "F.pad(x, self.pad, value=-math.inf)",
      "F.pad(x, (self.pad[1], self.pad[0], self.pad[3], self.pad[2]), value=-math.inf)",
      eq("f64", "maxpool2d_same_s2", "maxpool1d")),
    M("avgpool_same_pad_flipped", "average pooling pads with the odd extra before (its window counts do not)",
      "backends/torch/layers.py", "y = F.avg_pool2d(F.pad(x, self.pad), self.k",
      "y = F.avg_pool2d(F.pad(x, (self.pad[1], self.pad[0], self.pad[3], self.pad[2])), self.k",
      eq("f64", "avgpool2d", "avgpool1d")),
    M("maxpool_same_pad_axes_swapped", "max pooling pads the rows as the columns should be",
      "backends/torch/layers.py", "F.pad(x, self.pad, value=-math.inf)",
      "F.pad(x, (self.pad[2], self.pad[3], self.pad[0], self.pad[1]), value=-math.inf)",
      eq("f64", "maxpool2d_same_s2")),
    M("avgpool_same_pad_axes_swapped", "average pooling pads the rows as the columns should be",
      "backends/torch/layers.py", "y = F.avg_pool2d(F.pad(x, self.pad), self.k",
      "y = F.avg_pool2d(F.pad(x, (self.pad[2], self.pad[3], self.pad[0], self.pad[1])), self.k",
      eq("f64", "avgpool2d")),
    M("conv2dtranspose_crop_axes_swapped", "Conv2DTranspose crops the rows as the columns should be",
      "backends/torch/lower.py", "    (top, bottom), (left, right) = (transpose_crop(",
      "    (left, right), (top, bottom) = (transpose_crop(", eq("f64", "conv2dtranspose_same_s2")),
    M("conv2dtranspose_same_offset", "Conv2DTranspose crops the odd extra row/column at the start",
      "backends/torch/lower.py", 'before = max((n - 1) * s + k - out, 0) // 2 if padding == "same" else 0',
      'before = -(-max((n - 1) * s + k - out, 0) // 2) if padding == "same" else 0',
      eq("f64", "conv2dtranspose_same_s2")),
    M("depthwise_same_pad_reversed", "DepthwiseConv2D's pad tuple reversed", "backends/torch/lower.py",
      '"DepthwiseConv2D", ctx.in_shape[-1], ks, layer.depth_multiplier, strides=ss,\n'
      '                pad=_same_pad2d(layer, ctx),',
      '"DepthwiseConv2D", ctx.in_shape[-1], ks, layer.depth_multiplier, strides=ss,\n'
      '                pad=_same_pad2d(layer, ctx)[::-1],',
      SAME_PAD_TESTS),
    M("separable_same_pad_reversed", "SeparableConv2D's pad tuple reversed", "backends/torch/lower.py",
      '"SeparableConv2D", ctx.in_shape[-1], layer.filters, ks, layer.depth_multiplier, strides=ss,\n'
      '                pad=_same_pad2d(layer, ctx),',
      '"SeparableConv2D", ctx.in_shape[-1], layer.filters, ks, layer.depth_multiplier, strides=ss,\n'
      '                pad=_same_pad2d(layer, ctx)[::-1],',
      SAME_PAD_TESTS),

    # ---------------------------------------------------------------------------------------- schedules
    M("step_decay_one_epoch_early", "step decay cuts the lr one epoch early", "compiler/training.py",
      "return base_lr * factor ** (epoch // every)", "return base_lr * factor ** ((epoch + 1) // every)",
      SCHEDULE_TESTS),
    M("exponential_staircase", "exponential decay as a staircase (epoch // every)", "compiler/training.py",
      "return base_lr * rate ** (epoch / every)", "return base_lr * rate ** (epoch // every)",
      SCHEDULE_TESTS),
    M("cosine_one_epoch_ahead", "cosine decay evaluated one epoch ahead", "compiler/training.py",
      "e = min(epoch, epochs)", "e = min(epoch + 1, epochs)", SCHEDULE_TESTS),
    M("warmup_starts_at_zero", "warm-up's first epoch has lr 0 (e/epochs instead of (e+1)/epochs)",
      "compiler/training.py", "return base_lr * (epoch + 1) / epochs", "return base_lr * epoch / epochs",
      SCHEDULE_TESTS),
    M("warmup_then_not_restarted", "the schedule after warm-up does not count from 0", "compiler/training.py",
      "return then(epoch - epochs, base_lr) if then else base_lr",
      "return then(epoch, base_lr) if then else base_lr",
      SCHEDULE_TESTS),
    M("plateau_cooldown_off_by_one", "the plateau cooldown rests one epoch too many",
      "dlc/reference/callbacks.py", "self.cooldown = self.cooldown_epochs\n",
      "self.cooldown = self.cooldown_epochs + 1\n", SCHEDULE_TESTS),
    M("plateau_ignores_min_lr", "the plateau cut goes below min_lr", "dlc/reference/callbacks.py",
      "lr = max(lr * self.factor, self.min_lr)", "lr = lr * self.factor", SCHEDULE_TESTS),
    M("plateau_auto_mode_always_min", "plateau(mode=auto) minimises an accuracy",
      "dlc/reference/callbacks.py", "monitor_mode(sched.mode, sched.monitor))",
      '"min" if sched.mode == "auto" else sched.mode)', SCHEDULE_TESTS),

    # ----------------------------------------------------------------------------------- early stopping
    M("improvement_min_delta_sign", "an epoch counts as an improvement when it is at most min_delta worse",
      "dlc/reference/callbacks.py", "np.float32(current + min_delta) < np.float32(best)",
      "np.float32(current - min_delta) < np.float32(best)",
      [*ES_TESTS, f"{CAT}::test_lr_used_each_epoch_is_in_the_history"]),
    M("early_stopping_auto_mode_accuracy", "early stopping's mode=auto minimises val_accuracy",
      "compiler/training.py", '("acc", "precision", "recall", "f1")', '("precision", "recall", "f1")',
      ES_TESTS),
    M("early_stopping_wait_not_reset", "an improvement does not reset early stopping's wait",
      "dlc/runtime/loop.py", "        state.history.best_epoch = epoch + 1\n        state.es_wait = 0\n",
      "        state.history.best_epoch = epoch + 1\n", ES_TESTS),
    M("restore_best_keeps_last", "restore_best keeps the last epoch's weights as the best",
      "dlc/runtime/loop.py",
      "        if es.restore_best:\n            state.best_weights = session.get_weights()\n"
      "    elif state.es_wait >= es.patience and epoch > 0:\n        state.history.stopped_early = True",
      "    elif state.es_wait >= es.patience and epoch > 0:\n        state.history.stopped_early = True\n"
      "    if es.restore_best:\n        state.best_weights = session.get_weights()", ES_TESTS),

    # -------------------------------------------------------------------------------------------- the loop
    M("shuffle_once", "every epoch visits the samples in the first epoch's order", "dlc/reference/rng.py",
      "return stream(seed, STREAM_SHUFFLE, epoch).permutation(n)",
      "return stream(seed, STREAM_SHUFFLE).permutation(n)",
      ["tests/test_api.py::test_epoch_order_is_what_training_used", FAIL]),
    M("schedule_lr_one_epoch_late", "epoch e trains with the schedule's lr of epoch e + 1",
      "dlc/runtime/loop.py",
      "return spec.schedule.lr_at(epoch, spec.optimizer.learning_rate)",
      "return spec.schedule.lr_at(epoch + 1, spec.optimizer.learning_rate)", SCHEDULE_TESTS),

    # -------------------------------------------------------------------------------- checkpoints, resume
    M("torch_checkpoint_step_not_restored", "a resumed torch run restarts the dropout step counter at 0",
      "backends/torch/session.py", '        self.counter.set(int(state["step"]))\n', "",
      RESUME_TESTS),
    M("resume_loses_plateau_wait", "a resumed run forgets how long the plateau has waited",
      "dlc/runtime/loop.py",
      'plateau.best, plateau.wait, plateau.cooldown = saved["best"], saved["wait"], saved["cooldown"]',
      'plateau.best, plateau.cooldown = saved["best"], saved["cooldown"]', RESUME_TESTS),
    M("resume_loses_early_stopping_wait", "a resumed run forgets early stopping's wait",
      "dlc/runtime/loop.py",
      'd["epoch"], d["lr"], d["plateau"], d["es_best"], d["es_wait"], h, best_weights',
      'd["epoch"], d["lr"], d["plateau"], d["es_best"], 0, h, best_weights', RESUME_TESTS),
    M("checkpoint_without_best_weights", "the best weights of restore_best are not checkpointed",
      "dlc/runtime/checkpoint.py", '        arrays.update(flatten(state.best_weights, "b:"))', "        pass",
      RESUME_TESTS),

    # -------------------------------------------------------------------------------------------- dropout
    M("dropout_threshold_floor", "the keep threshold rounds down: u < rate is sometimes kept",
      "dlc/reference/rng.py", "return math.ceil(rate * (1 << 24))", "return math.floor(rate * (1 << 24))",
      [f"{EQ}::test_dropout_masks_bit_identical", *eq("f64", "dropout"), FAIL]),
    M("dropout_torch_hash_shift", "torch's dropout hash shifts by 13 where lowbias32 shifts by 15",
      "backends/torch/layers.py", "        _shift_xor_(h, 15, t)\n", "        _shift_xor_(h, 13, t)\n",
      [f"{EQ}::test_dropout_masks_bit_identical", *eq("f64", "dropout")]),
    M("dropout_step_not_advanced", "torch's dropout step counter does not advance: one mask for every step",
      "backends/torch/training.py", "        self.step.advance()\n", "",
      [*eq("f64", "dropout"), f"{EQ}::test_dropout_masks_bit_identical"]),

    # -------------------------------------------------------------------------------------------- metrics
    M("precision_recall_swapped", "precision and recall swapped", "dlc/reference/metrics.py",
      "prec = _safe(tp, pred)\n    rec = _safe(tp, true)",
      "prec = _safe(tp, true)\n    rec = _safe(tp, pred)",
      METRIC_TESTS),
    M("macro_average_weighted", "the multi-class average weighted by support instead of macro",
      "dlc/reference/metrics.py", "else (lambda v: float(v.mean()))",
      "else (lambda v: float(np.average(v, weights=true)))", METRIC_TESTS),
    M("mse_metric_unbiased", "the mse metric divides by n - 1", "dlc/reference/metrics.py",
      "out[n] = float(sse / max(count, 1))", "out[n] = float(sse / max(count - 1, 1))", METRIC_TESTS),
    M("torch_confusion_transposed", "torch's confusion matrix has predictions in the rows",
      "backends/torch/losses.py", "torch.add(pred, true, alpha=k)",
      "torch.add(true, pred, alpha=k)", METRIC_TESTS),
    M("cv_std_population", "dlc cv's std over folds with ddof=0", "dlc/runtime/cv.py",
      "float(vals.std(ddof=1))", "float(vals.std())", ["tests/test_cv.py", FAIL]),

    # ---------------------------------------------------------------------------- data: splits, normalising
    M("normalise_with_all_data", "standardisation fitted on the whole set (validation/test leak)",
      "dlc/runtime/data/dataset.py", ".normalize, data.x[train].astype(", ".normalize, data.x.astype(",
      DATA_TESTS),
    M("std_with_ddof_1", "standardisation divides by the sample std (ddof=1), not Keras/sklearn's",
      "dlc/runtime/data/normalize.py", "mu, sd = fit.mean(axis=0), fit.std(axis=0)",
      "mu, sd = fit.mean(axis=0), fit.std(axis=0, ddof=1)", DATA_TESTS),
    M("val_fraction_of_the_rest", "val= is taken as a fraction of what the test split left",
      "dlc/runtime/data/splits.py", "val / (1 - test) if val else 0.0", "val if val else 0.0", DATA_TESTS),
    M("stratify_ignored", "stratify=true does nothing", "dlc/runtime/data/splits.py",
      "strat = labels[idx] if (stratify and labels is not None) else None", "strat = None", DATA_TESTS),
    M("minmax_divides_by_max", "minmax scales by the maximum instead of the range",
      "dlc/runtime/data/normalize.py",
      "return lo, np.where(hi > lo, hi - lo, 1.0)", "return lo, np.where(hi > lo, hi, 1.0)", DATA_TESTS),
    M("kfold_indices_relative", "k-fold indices taken relative to the set without the test part",
      "dlc/runtime/data/splits.py", "return [(rest[tr], rest[va], held) for tr, va in it]",
      "return [(tr, va, held) for tr, va in it]", DATA_TESTS),

    # ------------------------------------------------------------------------------------------ augmentation
    M("crop_never_at_the_last_offset", "crop never places its window at the last offset",
      "dlc/runtime/augment.py", "rng.integers(0, shape[2] + 2 * padding - sw + 1, n)",
      "rng.integers(0, shape[2] + 2 * padding - sw, n)", ["tests/test_augment.py", FAIL]),
    M("shift_asymmetric", "shift never moves by the largest positive amount", "dlc/runtime/augment.py",
      "return rng.integers(-my, my + 1, n)", "return rng.integers(-my, my, n)",
      ["tests/test_augment.py", FAIL]),
    M("vertical_flip_mirrors_columns", "flip(vertical=true) mirrors left-right", "dlc/runtime/augment.py",
      "out[v] = out[v][:, ::-1, :]", "out[v] = out[v][:, :, ::-1]", ["tests/test_augment.py", FAIL]),

    # ------------------------------------------------------------------------------- the emitted scripts
    M("bundle_decorators_dropped", "copied definitions lose their decorators", "backends/emit/bundle.py",
      'start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])',
      "start = node.lineno", EMIT_TESTS),
    M("bundle_external_import_dropped", "a copied definition's third-party import is left out",
      "backends/emit/bundle.py", "                self.imports.add(_import_line(full, attr, used))",
      "                pass", EMIT_TESTS),
    M("bundle_not_dependency_ordered", "copied definitions are not sorted dependencies-first",
      "backends/emit/bundle.py", "order = self._dependencies_first(order)", "order = list(order)",
      [*EMIT_TESTS, "tests/test_emit.py::test_every_fixture_emits_step_equal"]),

    # -------------------------------------------------------------------------------------- run directory
    M("curves_without_validation", "curves.png draws no validation curve", "dlc/runtime/rundir.py",
      'if f"val_{key}" in rows[0] else None', 'if f"val_{key}" in rows else None',
      ["tests/test_run_cli.py::test_curves_png_is_a_valid_png",
       "tests/test_run_cli.py::test_curves_draw_each_quantity_train_and_validation", "tests/test_runs.py"]),
    M("tune_refine_single_value_wide", "refine widens a single loguniform value by 50% of the log range",
      "compiler/search.py", "f = (high / low) ** 0.05", "f = (high / low) ** 0.5",
      ["tests/test_tune.py::test_refine_rule", FAIL]),
    M("batchnorm_momentum_default", "the IR's BatchNorm momentum default 0.9 instead of Keras' 0.99",
      "compiler/layers.py", "momentum: float = Field(0.99, ge=0, le=1)",
      "momentum: float = Field(0.9, ge=0, le=1)",
      [*eq("f64", "batchnorm_dense"), STOCK, FAIL]),
]
