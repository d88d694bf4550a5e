"""What both emitted scripts share, lowered once per IR class: initial-weight draws, schedules, data sources,
splits and augmentations, as expressions over dlc's own numpy functions (copied into the script by the
bundler). The backends get the same numbers from the same functions (dlc/reference/weights.py,
dlc/runtime/loop.py, dlc/runtime/data/)."""

from __future__ import annotations

from dataclasses import dataclass

from dlc.backends.lowering import EMIT, REGISTRY, call, lowers, ref
from dlc.compiler import functions as fn
from dlc.compiler import spec as S
from dlc.compiler import training as T
from dlc.reference.callbacks import monitor_mode


@dataclass
class DrawContext:
    """An initializer's draw: the weight's shape and the expression of its random stream."""

    target: str
    shape: tuple[int, ...]
    rng: object


# ----------------------------------------------------------------------------------------------- initializers


@lowers(fn.Zeros, targets=EMIT)
def zeros(init, ctx: DrawContext):
    return call("np.zeros", ctx.shape)


@lowers(fn.Ones, targets=EMIT)
def ones(init, ctx: DrawContext):
    return call("np.ones", ctx.shape)


@lowers(fn.Constant, targets=EMIT)
def constant(init: fn.Constant, ctx: DrawContext):
    return call("np.full", ctx.shape, float(init.value))


@lowers(fn.RandomNormal, targets=EMIT)
def random_normal(init: fn.RandomNormal, ctx: DrawContext):
    return call("random_normal", ctx.rng, ctx.shape, init.mean, init.stddev)


@lowers(fn.RandomUniform, targets=EMIT)
def random_uniform(init: fn.RandomUniform, ctx: DrawContext):
    return call("random_uniform", ctx.rng, ctx.shape, init.minval, init.maxval)


@lowers(fn.TruncatedNormal, targets=EMIT)
def truncated_normal(init: fn.TruncatedNormal, ctx: DrawContext):
    return call("truncated_normal", ctx.rng, ctx.shape, init.mean, init.stddev)


@lowers(fn.GlorotUniform, fn.GlorotNormal, fn.HeNormal, fn.HeUniform, fn.LecunNormal, fn.LecunUniform,
        targets=EMIT)
def variance_scaling(init: fn.VarianceScaling, ctx: DrawContext):
    return call("variance_scaling", ctx.rng, ctx.shape, init.scale, init.mode, init.distribution)


@lowers(fn.Orthogonal, targets=EMIT)
def orthogonal(init: fn.Orthogonal, ctx: DrawContext):
    return call("orthogonal", ctx.rng, ctx.shape, init.gain)


# -------------------------------------------------------------------------------------------------- schedules
# a schedule is a function (epoch, base_lr) -> lr; plateau is the ReduceLROnPlateau the loop updates


@lowers(T.StepDecay, targets=EMIT)
def step_decay(s: T.StepDecay, ctx):
    return call("partial", ref("step_decay"), every=s.every, factor=s.factor)


@lowers(T.ExponentialDecay, targets=EMIT)
def exponential_decay(s: T.ExponentialDecay, ctx):
    return call("partial", ref("exponential_decay"), rate=s.rate, every=s.every)


@lowers(T.CosineDecay, targets=EMIT)
def cosine_decay(s: T.CosineDecay, ctx):
    return call("partial", ref("cosine_decay"), epochs=s.epochs, min_lr=s.min_lr)


@lowers(T.Warmup, targets=EMIT)
def warmup(s: T.Warmup, ctx):
    then = REGISTRY.lower(ctx.target, s.then, ctx) if s.then is not None else None
    return call("partial", ref("warmup"), epochs=s.epochs, then=then)


@lowers(T.Plateau, targets=EMIT)
def plateau(s: T.Plateau, ctx):
    mode = monitor_mode(s.mode, s.monitor)  # as the run's plateau decides 'auto' (dlc/reference/callbacks.py)
    return call("ReduceLROnPlateau", s.factor, s.patience, min_lr=s.min_lr, min_delta=s.min_delta,
                cooldown=s.cooldown, mode=mode)


# ------------------------------------------------------------------------------------------------------- data


@lowers(S.Bundled, targets=EMIT)
def bundled(src: S.Bundled, ctx):
    return call("read_bundled", src.name)


@lowers(S.Csv, targets=EMIT)
def csv(src: S.Csv, ctx):
    """The samples with each one's row in the file, which the script's data checks name."""
    return call("csv_samples", str(ctx.resolve(src.path)), src.target)


@lowers(S.Npz, targets=EMIT)
def npz(src: S.Npz, ctx):
    return call("read_npz", str(ctx.resolve(src.path)), src.x, src.y)


@lowers(S.Mnist, targets=EMIT)
def mnist(src: S.Mnist, ctx):
    return call("read_mnist", str(ctx.resolve(src.path)))


@lowers(S.Npy, targets=EMIT)
def npy(src: S.Npy, ctx):
    """Read whole: the script trains from memory (a run reads them a batch at a time; same numbers)."""
    return call("read_npy", str(ctx.resolve(src.x)), str(ctx.resolve(src.y)))


@lowers(S.Holdout, targets=EMIT)
def holdout(split: S.Holdout, ctx):
    return call("holdout_indices", ref("n"), ref("labels"), split.val, split.test, split.stratify,
                ref("SEED"))


@lowers(S.KFold, targets=EMIT)
def kfold(split: S.KFold, ctx):
    return call("kfold_indices", ref("n"), ref("labels"), split.k, split.shuffle, split.stratify, split.test,
                ref("SEED"))


@lowers(S.Flip, S.Shift, S.Crop, targets=EMIT)
def augmentation(op, ctx):
    """dlc/augment.py's function of the same name, with the IR's fields as its arguments."""
    return call("partial", ref(op.name), **op.model_dump(exclude={"name"}))
