"""The torch backend's thread governor (backends/torch/threads.py): its decisions from /proc/stat samples,
and that it is off where there is nothing to govern."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from dlc.backends.torch import threads as G  # noqa: E402

HZ = 100.0


def stat(*cpus: tuple[int, int]) -> str:
    """A /proc/stat text whose CPU i has spent cpus[i] = (busy, idle) jiffies (idle split idle/iowait)."""
    total_busy, total_idle = sum(b for b, _ in cpus), sum(i for _, i in cpus)
    lines = [f"cpu  {total_busy} 0 0 {total_idle} 0 0 0 0 0 0"]
    lines += [f"cpu{k} {b - b // 3} 0 {b // 3} {i - i // 4} {i // 4} 0 0 0 0 0"
              for k, (b, i) in enumerate(cpus)]
    return "\n".join(lines + ["intr 1 2 3", "ctxt 99", "btime 1", "processes 5"]) + "\n"


def sample(text: str, own: float, allowed=None) -> G.CpuSample:
    return G.CpuSample(*G.parse_proc_stat(text, allowed), own=own)


def test_parse_proc_stat_sums_the_allowed_cpus():
    text = stat((30, 70), (50, 50), (100, 0))
    assert G.parse_proc_stat(text) == (300, 120, 3)
    assert G.parse_proc_stat(text, {0, 2}) == (200, 70, 2)
    assert G.parse_proc_stat("intr 1\n") is None
    assert G.parse_proc_stat("cpu  1 2 3 4\n") is None  # only the aggregate line: no CPUs


@pytest.mark.parametrize("others,own,threads", [
    (0.0, 1.0, 2),    # quiet: the other core is idle
    (0.0, 2.0, 2),    # quiet, this process already on both cores (its own spinning is not "others")
    (0.2, 1.0, 2),    # a little noise (within SLACK of a core)
    (0.3, 1.0, 1),    # another process uses a third of a core
    (1.0, 1.0, 1),    # one busy process: one core left
    (2.0, 0.0, 1),    # both cores busy: still one thread, never zero
])
def test_two_cores(others, own, threads):
    # 1 s between samples (100 jiffies per CPU); busy = others + own, spread over the two CPUs
    busy = round(100 * (others + own))
    a = sample(stat((0, 0), (0, 0)), own=0.0)
    b = sample(stat((busy // 2, 100 - busy // 2), (busy - busy // 2, 100 - (busy - busy // 2))), own=own)
    assert G.threads_for(a, b, 2, HZ) == threads


def test_more_cores_and_the_cap():
    a = sample(stat(*[(0, 0)] * 8), own=0.0)
    b = sample(stat(*[(100, 0)] * 3, *[(0, 100)] * 5), own=1.0)  # 3 cores busy, 1 of them this process
    assert G.threads_for(a, b, 8, HZ) == 6
    assert G.threads_for(a, b, 4, HZ) == 4
    assert G.threads_for(a, a, 4, HZ) is None  # no time passed: no decision


def test_governor_starts_at_one_and_follows_the_samples():
    texts = iter([
        (stat((0, 0), (0, 0)), 0.0),
        (stat((20, 80), (0, 100)), 0.2),        # quiet: 2 threads
        (stat((40, 160), (20, 180)), 0.6),      # still quiet (this process on both cores)
        (stat((140, 160), (120, 180)), 1.6),    # another process took a whole core: 1 thread
        (stat((240, 160), (130, 270)), 2.6),    # it stopped: 2 threads again
    ])
    now = [0.0]
    calls = []
    gov = G.Governor(2, calls.append, sample=lambda: sample(*next(texts)), interval=0.15,
                     clock=lambda: now[0], hz=HZ)
    assert calls == [1] and gov.active
    gov.tick()  # too soon: no sample taken
    assert calls == [1]
    seen = []
    for _ in range(4):
        now[0] += 1.0
        gov.tick()
        seen.append(gov.threads)
    assert seen == [2, 2, 1, 2] and calls == [1, 2, 1, 2] and gov.changes == 3


def test_governor_without_proc_stat_changes_nothing(monkeypatch):
    monkeypatch.setattr(G, "read_sample", lambda path="/proc/stat": None)
    assert G.start(2, lambda n: pytest.fail("threads changed")) is None
    assert G.start(1, lambda n: pytest.fail("threads changed")) is None
    gov = G.Governor(2, lambda n: None, sample=lambda: None)
    gov.tick()
    assert not gov.active and gov.threads == 1


def test_read_sample_here():
    s = G.read_sample()
    if s is not None:  # Linux
        assert s.cpus >= 1 and s.total >= s.idle >= 0 and s.own > 0
    assert G.read_sample("/nonexistent/stat") is None


def test_sessions_govern_big_models_only(monkeypatch):
    import torch

    from dlc.backends.torch import session as S

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.setattr(S.TL, "one_thread_is_faster", lambda spec: True)
        assert S._pick_cpu_threads(None) is None and torch.get_num_threads() == 1
        torch.set_num_threads(2)
        monkeypatch.setattr(S.TL, "one_thread_is_faster", lambda spec: False)
        gov = S._pick_cpu_threads(None)
        if G.read_sample() is not None:
            assert gov is not None and gov.max_threads == 2 and torch.get_num_threads() == 1
        monkeypatch.setenv("DLC_THREAD_GOVERNOR", "0")
        torch.set_num_threads(2)
        assert S._pick_cpu_threads(None) is None and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def _spec(tmp_path, layers: str, shape: tuple, batch: int = 128):
    import numpy as np

    from dlc.compiler import compile_text

    np.savez(tmp_path / "d.npz", x=np.zeros((20, *shape), np.float32), y=np.arange(20) % 10)
    result = compile_text(f"""model m {{
  data {{
    source: npz("d.npz")
  }}
  input: {shape}
  layers {{
    {layers}
  }}
  loss: sparse_categorical_crossentropy
  optimizer: SGD(lr=0.1)
  train {{
    epochs: 1
    batch_size: {batch}
  }}
}}""", base_dir=tmp_path)
    assert result.spec is not None, result.render()
    return result.spec


def test_work_counts_positions_not_only_parameters(tmp_path):
    """A convolution's weights are applied at every output pixel, a recurrent layer's at every time step, a
    Dense on features once: the work, not the parameter count, picks the torch backend's threads."""
    from dlc.backends.torch.lower import one_thread_is_faster

    mlp = _spec(tmp_path, "Dense(512, activation=relu)\n Dense(10, activation=softmax)", (784,))
    assert mlp.work_per_sample() == 784 * 512 + 512 + 512 * 10 + 10 + 512 + 10
    assert not one_thread_is_faster(mlp)  # 5.2e7 per step: governed, as with parameters
    cnn = _spec(tmp_path, "Conv2D(32, (3, 3), activation=relu)\n MaxPool2D((2, 2))\n Flatten()\n"
                "Dense(10, activation=softmax)", (28, 28, 1))
    conv = 26 * 26 * (3 * 3 * 32 + 32)
    assert cnn.work_per_sample() == conv + 26 * 26 * 32 + 2 * 13 * 13 * 32 + 5408 * 10 + 10 + 10
    assert cnn.param_counts()[0] * 128 < 2e7 and not one_thread_is_faster(cnn)
    lstm = _spec(tmp_path, "LSTM(32)\n Dense(10, activation=softmax)", (50, 8))
    assert lstm.work_per_sample() == 50 * 4 * 32 * (8 + 32 + 1) + 32 + 33 * 10 + 10
    small = _spec(tmp_path, "Dense(16, activation=relu)\n Dense(10, activation=softmax)", (64,), batch=32)
    assert one_thread_is_faster(small)


def test_malloc_thresholds_are_set_once_unless_the_user_set_them(monkeypatch):
    """backends/torch/memory.py: glibc keeps a step's freed activations for the next step (set once per
    process); the user's own malloc tunables, or DLC_MALLOC_TUNING=0, leave malloc alone."""
    import ctypes.util

    from dlc.backends.torch import memory

    monkeypatch.setattr(memory, "_done", None)
    for name in memory.USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DLC_MALLOC_TUNING", "0")
    assert memory.keep_freed_memory() is False
    monkeypatch.setattr(memory, "_done", None)
    monkeypatch.delenv("DLC_MALLOC_TUNING")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert memory.keep_freed_memory() is False
    monkeypatch.setattr(memory, "_done", None)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    glibc = "libc.so" in (ctypes.util.find_library("c") or "libc.so.6")
    assert memory.keep_freed_memory() is glibc
    monkeypatch.setenv("DLC_MALLOC_TUNING", "0")
    assert memory.keep_freed_memory() is glibc  # (once per process: the first answer stands)
