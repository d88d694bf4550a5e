"""Device selection under hostile input, on a machine without a GPU as on one: every entry point (the API's
run, cv, lr_find, Model, and the command line behind them) takes one set of device names, and a GPU asked for
and not there is one line naming why, in the same words on both backends; never the CPU instead."""

from __future__ import annotations

import pytest
import torch

from conftest import ROOT

IRIS = ROOT / "specs" / "iris.dlspec"


def _gpus(monkeypatch, count: int) -> None:
    """Make a CUDA build of PyTorch report `count` GPUs (none are touched: only names are checked)."""
    monkeypatch.setattr(torch.version, "cuda", torch.version.cuda or "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_api_run_refuses_a_name_that_is_no_device_before_any_folder(tmp_path):
    """`api.run(device="mps")` ended in torch's "not linked with support for mps devices", "gpu" in its list
    of 20 device types, and "cpu:1" trained while `Model` refused it: the one rule now, in the API's words."""
    from dlc import api

    spec = api.trainable(api.checked(IRIS), epochs=1)
    for device in ("mps", "gpu", "cpu:1", ""):
        with pytest.raises(ValueError, match=rf"^device={device!r} is not a device; use auto, cpu, cuda or "):
            api.run(spec, "torch", device=device, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_gpu_index_beyond_the_gpus_is_named(monkeypatch):
    """cuda:5 on a machine of one GPU passed the check (PyTorch sees a GPU) and failed at the first tensor
    moved, with CUDA's "invalid device ordinal"; "cuda:00" and an index beyond an int, which dlc's rule takes,
    ended in torch's parser."""
    from dlc.backends.torch.session import pick_device

    _gpus(monkeypatch, 1)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    for device in ("cuda:5", "cuda:99999999999999999999"):  # (torch: "Could not parse device index")
        with pytest.raises(RuntimeError, match=rf"^--device {device} was asked for, but PyTorch sees 1 CUDA "
                                               r"device \(cuda:0\)$"):
            pick_device(device)
    assert pick_device("cuda:0") == pick_device("cuda:00") == torch.device("cuda:0")  # (torch: "Invalid")


def test_an_empty_cuda_visible_devices_is_named(monkeypatch):
    """CUDA_VISIBLE_DEVICES="" hides every GPU: `--device cuda` said only "PyTorch sees no CUDA device"."""
    from dlc.backends.torch.session import pick_device

    _gpus(monkeypatch, 0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    hidden = r"no CUDA device \(CUDA_VISIBLE_DEVICES is empty, which hides every GPU\)$"
    with pytest.raises(RuntimeError, match=hidden):
        pick_device("cuda")


def test_one_gpu_named_for_several_processes_is_refused(monkeypatch):
    """`--nproc 2 --device cuda:1` (or `--trial-nproc 2`): process r trains on GPU r, and cuda:1 put every
    process on GPU 1, which NCCL refuses in each worker; `--device cuda` is the way."""
    from dlc.backends.torch import session

    _gpus(monkeypatch, 2)
    with pytest.raises(RuntimeError, match=r"^--device cuda:1 names one GPU, and the 2 data-parallel "):
        session.check_device("cuda:1", processes=2)
    session.check_device("cuda", processes=2)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)  # a worker of `dlc run --nproc 2`
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    with pytest.raises(RuntimeError, match="names one GPU"):
        session.pick_device("cuda:0")


def test_keras_refuses_a_gpu_in_torchs_words_and_a_non_device_by_the_rule():
    """keras said "--device cuda: the keras backend runs on the CPU here" where torch says "--device cuda was
    asked for, but ...", and the same of "gpu", "cpu:1" or "" through `api.run`; `Model` says it in the
    API's words."""
    import dlc
    from dlc.backends.keras.session import check_device

    if __import__("tensorflow").config.list_physical_devices("GPU"):
        pytest.skip("TensorFlow sees a GPU here")
    with pytest.raises(RuntimeError, match=r"^--device cuda:0 was asked for, but the keras backend trains on "
                                           r"the CPU here \(TensorFlow sees no GPU\); use --backend torch"):
        check_device("cuda:0")
    with pytest.raises(ValueError, match=r"^device='cpu:1' is not a device"):
        check_device("cpu:1")
    with pytest.raises(RuntimeError, match=r"^device=cuda was asked for, but .*; use backend='torch' for "):
        dlc.Model(IRIS, backend="keras", device="cuda")


def test_model_names_the_dtype_argument_that_mixed_precision_cannot_take(tmp_path):
    """`Model(mixed spec, dtype="float64")` raised the backend's "precision: mixed_float16 ... cannot train in
    float64", naming no argument; it is refused as the other arguments are, before a framework is loaded."""
    import dlc

    spec = tmp_path / "mixed.dlspec"
    spec.write_text(IRIS.read_text().replace("batch_size: 16", "batch_size: 16\n precision: mixed_float16"))
    refusal = r"^dtype='float64': precision: mixed_float16 computes in float16 .*; leave out dtype=, or use "
    with pytest.raises(ValueError, match=refusal):
        dlc.Model(spec, backend="keras", dtype="float64")


def test_nproc_refuses_a_device_before_any_worker_starts(tmp_path, monkeypatch):
    """`dlc run --nproc 2 --device cuda` without a GPU started both workers, each of which loaded its
    framework to fail alike; the launcher says it once now, before any starts (no worker: no run folder)."""
    from dlc.runtime import parallel

    from conftest import run_cli

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    started = []
    monkeypatch.setattr(parallel, "launch", lambda *a, **k: started.append(a) or (0, ""))
    rc, _, err = run_cli("run", IRIS, "--nproc", "2", "--device", "cuda", "--out", tmp_path / "r")
    assert rc == 1 and started == [] and not (tmp_path / "r").exists()
    assert err == "dlc: error: --device cuda was asked for, but PyTorch sees no CUDA device\n"


def test_keras_on_a_tensorflow_that_sees_a_gpu_pins_device_cpu_and_records_the_gpu(monkeypatch):
    """A TensorFlow GPU build places the model on its GPU by itself: dlc recorded "cpu" whatever it was, and
    `--device cpu` was not obeyed. Simulated (this machine has no GPU): `--device cpu` builds the variables,
    the data and every graph call under tf.device("/CPU:0"), and `auto` is recorded as the GPU's placement."""
    import tensorflow as tf

    import dlc.backends.keras.session as ks
    from dlc.compiler import compile_file

    spec = compile_file(IRIS).raise_for_errors()
    assert ks.placement("cpu") == ("cpu", None) == ks.placement("auto")  # (no GPU: nothing pinned)
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
    assert ks.placement("cpu") == ("cpu", "/CPU:0")
    assert ks.placement("auto") == ("gpu:0 (TensorFlow's placement)", None)
    scopes = []
    pinned = ks._pinned(lambda: scopes.append(tf.constant(1.0).device), "/CPU:0")
    pinned()
    assert scopes[0].endswith("CPU:0")
    session = ks.Session(spec, dtype="float64", device="cpu")
    assert session.device_name == "cpu"
    assert all(getattr(session, name).__wrapped__ for name in ("load_data", *ks.GRAPH_CALLS))
    assert ks.Session(spec, dtype="float64", device="auto").device_name == "gpu:0 (TensorFlow's placement)"
