"""The conversion toolchain's own venv (built by `make venv-quant`) holds the pinned stack."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import REPO

QUANT_PYTHON = REPO / ".venv-quant" / "bin" / "python"
PROBE = """
import json, numpy, onnx2tf, tensorflow, torch, quantization, edge_runtime.contracts
print(json.dumps({"numpy": numpy.__version__, "onnx2tf": onnx2tf.__version__,
                  "tensorflow": tensorflow.__version__, "torch": torch.__version__}))
"""


def test_quant_venv_has_the_pinned_toolchain_and_the_project() -> None:
    if not QUANT_PYTHON.is_file():
        pytest.skip(f"{QUANT_PYTHON} absent: run `make venv-quant` (make test builds it)")
    r = subprocess.run([str(QUANT_PYTHON), "-c", PROBE], capture_output=True, text=True,
                       timeout=300, check=False, env={"TF_CPP_MIN_LOG_LEVEL": "3"})  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    versions = json.loads(r.stdout.strip().splitlines()[-1])
    assert versions["onnx2tf"] == "1.29.24"
    assert versions["tensorflow"] == "2.19.0"
    assert versions["numpy"].startswith("1.26.")
    assert versions["torch"].startswith("2.13.0")
