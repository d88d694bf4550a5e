"""The torch backend on a CUDA device gives what it gives on the CPU (opt-in: `pytest -m gpu`).

Per equivalence fixture: in float64 the per-step losses of a CUDA run equal the CPU run's within the float64
bound (|Δ| ≤ 1e-10·max(1, |loss|), the bound `dlc compare` uses) and the final weights within 1e-9 relative
(1e-10 absolute); in float32 the final test accuracy over seeds is statistically the same (a paired TOST,
margin 0.02, as `dlc compare --seeds` decides). TF32 is off on the device (the session turns it off:
EQUIVALENCE.md). Without a CUDA device every test here is skipped, saying so; the default suite never
selects them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dlc

pytestmark = pytest.mark.gpu

FIXTURES = sorted((Path(__file__).parent / "equivalence" / "fixtures").glob("*.dlspec"))
STEPS = 60
GPU = "cuda"  # the device under test (a CPU run of this file checks the tests themselves: GPU = "cpu")
SEEDS = 8


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


needs_cuda = pytest.mark.skipif(not _cuda(), reason="no CUDA device visible to PyTorch")


def trained(spec, device: str, dtype: str, steps: int | None = STEPS, epochs: int | None = None):
    model = dlc.Model(spec, backend="torch", dtype=dtype, device=device)
    hist = model.fit(epochs=epochs, max_steps=steps)
    return model, hist


@needs_cuda
@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_cuda_float64_equals_cpu(path):
    spec = dlc.load(path)
    cpu_model, cpu = trained(spec, "cpu", "float64")
    gpu_model, gpu = trained(spec, GPU, "float64")
    a, b = np.array(cpu.step_losses), np.array(gpu.step_losses)
    assert a.shape == b.shape and len(a) > 0
    bound = 1e-10 * np.maximum(1.0, np.abs(a))
    worst = int(np.argmax(np.abs(a - b) / bound))
    assert np.all(np.abs(a - b) <= bound), f"step {worst + 1}: cpu {a[worst]!r} cuda {b[worst]!r}"
    for lname, ws in cpu_model.get_weights().items():
        for wname, w in ws.items():
            g = gpu_model.get_weights()[lname][wname]
            # (atol: the float64 bound; a weight only rounding moves, such as batchnorm_after_bias' Dense
            # bias before a BatchNorm, whose gradient is 0 but for rounding, sits near 1e-12: on an H200,
            # 1.15e-12 apart from the CPU's after 60 steps)
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-10, err_msg=f"{lname}/{wname}")


def _test_accuracy(spec, device: str) -> float:
    model, _ = trained(spec, device, "float32", steps=None, epochs=spec.train.epochs)
    data = model.data
    part = data.test if data.test is not None else data.val
    return model.evaluate(part.x, part.y).get("accuracy", float("nan"))


@needs_cuda
@pytest.mark.parametrize("name", ["dense", "conv2d_same_s2", "dropout", "batchnorm_conv"])
def test_cuda_float32_is_statistically_the_cpu(name):
    from dlc.reference.tost import tost_paired

    base = dlc.load(Path(__file__).parent / "equivalence" / "fixtures" / f"{name}.dlspec")
    cpu, gpu = [], []
    for seed in range(SEEDS):
        spec = base.model_copy(update={"seed": seed})
        cpu.append(_test_accuracy(spec, "cpu"))
        gpu.append(_test_accuracy(spec, GPU))
    result = tost_paired(np.array(gpu) - np.array(cpu), margin=0.02)
    assert result["verdict"] == "equivalent", f"cpu {cpu} cuda {gpu}: {result}"


@needs_cuda
@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_cuda_graph_equals_eager(path, monkeypatch):
    """DLC_CUDA_GRAPHS=1 (backends/torch/graphs.py): the full batches' steps replayed as one CUDA graph train
    as the eager steps on the same device, float64, within 1e-12 relative per step (the same kernels on the
    same data: the replayed step should equal the eager one bit for bit); where the step cannot be captured
    the run says why (`refused`) and trains eagerly."""
    spec = dlc.load(path)
    _, eager = trained(spec, GPU, "float64")
    monkeypatch.setenv("DLC_CUDA_GRAPHS", "1")
    model, graphed = trained(spec, GPU, "float64")
    a, b = np.array(eager.step_losses), np.array(graphed.step_losses)
    assert a.shape == b.shape and len(a) > 0
    np.testing.assert_allclose(b, a, rtol=1e-12, atol=0)
    graph = model.session.trainer.graph
    assert graph is not None
    print(f"{path.stem}: {'captured' if graph.graph is not None else 'eager: ' + str(graph.refused)}")


@needs_cuda
@pytest.mark.parametrize("name", ["dense", "dropout", "batchnorm_conv"])
def test_features_on_the_host_train_as_on_the_device(name, monkeypatch):
    """Features above RESIDENT_SHARE of the GPU's free memory stay on the host, each batch pinned in the
    reading thread and copied asynchronously: the same per-step losses as features kept on the GPU."""
    from dlc.backends.torch import session as torch_session

    spec = dlc.load(Path(__file__).parent / "equivalence" / "fixtures" / f"{name}.dlspec")
    _, resident = trained(spec, GPU, "float64")
    monkeypatch.setattr(torch_session, "RESIDENT_SHARE", 0.0)
    _, host = trained(spec, GPU, "float64")
    np.testing.assert_array_equal(np.array(host.step_losses), np.array(resident.step_losses))
