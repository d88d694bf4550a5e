"""Out of memory is one line in dlc's words whichever library ran out (numpy drawing the initial weights,
PyTorch's CPU or CUDA allocator, TensorFlow's), exit 1, no traceback: they were passed on raw (an
allocator's `[enforce fail at alloc_cpu.cpp:127]`, a TensorFlow op's graph name)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dlc.backends.exhausted import out_of_memory
from dlc.cli.errors import classify


def test_numpy_says_the_array_it_could_not_allocate():
    with pytest.raises(MemoryError) as e:
        np.empty((10**7, 10**7))
    said = out_of_memory(e.value)
    assert said == "could not allocate 728. TiB for a float64 array of shape (10000000, 10000000)"


def test_torch_cpu_allocator_failure_in_megabytes():
    exc = RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                       "memory: you tried to allocate 256000000 bytes. Error code 12 (Cannot allocate "
                       "memory)")
    code, text = classify(exc)
    assert code == 1
    assert text == "dlc: error: out of memory: PyTorch could not allocate 256 MB on the CPU; try a smaller " \
                   "batch_size or model"


@pytest.mark.parametrize("message, said", [
    ("CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of 79.10 GiB of which "
     "10.00 MiB is free. Including non-PyTorch memory, this process has 79.08 GiB memory in use.",
     "PyTorch could not allocate 20.00 MiB on cuda:0 (10.00 MiB free)"),
    ("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 1; 15.78 GiB total capacity; 14.1 GiB already "
     "allocated)", "PyTorch could not allocate 2.00 GiB on cuda:1"),
])
def test_torch_cuda_out_of_memory(message, said):
    torch = pytest.importorskip("torch")
    assert out_of_memory(torch.OutOfMemoryError(message)) == said


def test_tensorflow_resource_exhausted_names_the_tensor():
    tf = pytest.importorskip("tensorflow")
    exc = tf.errors.ResourceExhaustedError(
        None, None, "{{function_node __wrapped__AddV2_device_/job:localhost/replica:0/task:0/device:CPU:0}} "
        "OOM when allocating tensor with shape[8000,8000] and type float on /job:localhost/replica:0/task:0/"
        "device:CPU:0 by allocator mklcpu [Op:AddV2] name: ")
    assert classify(exc)[1] == ("dlc: error: out of memory: TensorFlow could not allocate a float32 tensor "
                                "of shape (8000, 8000) on CPU:0; try a smaller batch_size or model")


@pytest.mark.parametrize("exc", [RuntimeError("mat1 and mat2 shapes cannot be multiplied"),
                                 ValueError("nope"), OSError("disk")])
def test_other_errors_are_not_called_out_of_memory(exc):
    assert out_of_memory(exc) is None


SPEC = textwrap.dedent("""\
    model huge {
      seed: 1
      data { source: digits }
      input: (64)
      layers {
        Dense(30000, activation=relu)
        Dense(30000, activation=relu)
        Dense(10, activation=softmax)
      }
      loss: categorical_crossentropy
      optimizer: SGD(lr=0.01)
      train { epochs: 1 }
    }
""")


def _limit_address_space():
    resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))


def test_a_model_bigger_than_memory_is_one_line_exit_1(tmp_path):
    """The seeded initial weights of a 30000x30000 layer need 6.7 GiB: under a 6 GiB limit the run stops
    there, one line, and no half-made run folder is left."""
    (tmp_path / "huge.dlspec").write_text(SPEC)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "dlc", "run", "huge.dlspec", "--backend", "torch", "--out", str(out)]
    p = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       preexec_fn=_limit_address_space, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert lines[-1] == ("dlc: error: out of memory: could not allocate 6.71 GiB for a float64 array of "
                         "shape (30000, 30000); try a smaller batch_size or model"), p.stderr
    assert "Traceback" not in p.stderr
    assert not out.exists()  # (the weights are drawn before the run folder is made)


TUNE_SPEC = textwrap.dedent("""\
    model wide {
      seed: 7
      data { source: digits }
      input: (64)
      layers {
        Dense(choice(16, 30000), activation=relu)
        Dense(choice(16, 30000), activation=relu)
        Dense(10, activation=softmax)
      }
      loss: sparse_categorical_crossentropy
      optimizer: SGD(lr=0.01)
      train { epochs: 1 }
      search {
        method: grid
        trials: 4
        objective: minimize val_loss
      }
    }
""")


def test_a_tune_trial_too_big_for_memory_is_its_parameters_result(tmp_path):
    """A searched width whose model does not fit is that trial's result (failed, counted), not a crash queued
    again forever: the grid finishes with the three that fit; the trial's log says what could not be
    allocated."""
    (tmp_path / "t.dlspec").write_text(TUNE_SPEC)
    command = [sys.executable, "-m", "dlc", "tune", "t.dlspec", "--out", "tr", "--quiet"]
    p = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       preexec_fn=_limit_address_space, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    tune = json.loads((tmp_path / "tr" / "tune.json").read_text())
    states = sorted(t["state"] for t in tune["trials"])
    assert states == ["COMPLETE", "COMPLETE", "COMPLETE", "FAIL"], tune["trials"]
    failed = next(t for t in tune["trials"] if t["state"] == "FAIL")
    assert failed["params"] == {"layers[0].units": 30000, "layers[1].units": 30000}
    log = (tmp_path / "tr" / "trials" / f"{failed['number']:04d}" / "log.txt").read_text()
    assert "out of memory: could not allocate 6.71 GiB for a float64 array of shape (30000, 30000)" in log
