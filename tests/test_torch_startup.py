"""A torch run does not import torch._dynamo (1.2 s of every start on this machine) unless it compiles: the
functions that must run eagerly inside a compiled step are registered (backends/torch/eager.py) and disabled
for torch.compile only when a Session is built with compile=True."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import ROOT

PROBE = textwrap.dedent("""
    import sys
    from dlc.backends.torch import conv_layers, reductions
    from dlc.backends.torch.session import Session
    from dlc.compiler import compile_file

    spec = compile_file(sys.argv[1]).raise_for_errors()
    Session(spec, dtype="float64", device="cpu", compile=sys.argv[2] == "1")
    eager = [getattr(f, "_torchdynamo_disable", False) for f in (conv_layers._tied_eager,
                                                                  reductions._tf_mean_eager)]
    print("torch._dynamo" in sys.modules, *eager)
""")


def _probe(compile: bool) -> list[str]:
    spec = ROOT / "specs" / "guide" / "cnn_bn_residual.dlspec"
    p = subprocess.run([sys.executable, "-c", PROBE, str(spec), "1" if compile else "0"], capture_output=True,
                       text=True, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()


def test_an_eager_session_never_imports_dynamo():
    assert _probe(compile=False) == ["False", "False", "False"]


def test_a_compiled_session_runs_the_registered_functions_eagerly():
    assert _probe(compile=True) == ["True", "True", "True"]
