"""Importing ``components`` pins OpenBLAS (kernels and threads) before NumPy and SciPy load it,
so a stage computes the same floats on any x86-64 machine with AVX2, whatever its core count
(see the package docstring); a value the user set is kept."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.fixtures.tiny_project import tool_env

PROBE = (
    "import json, components, numpy, scipy.linalg\n"
    "from threadpoolctl import threadpool_info\n"
    "print(json.dumps([[i['internal_api'], i.get('architecture'), i['num_threads']] for i in threadpool_info()]))\n"
)


def _blas(**env: str) -> list[list]:  # type: ignore[type-arg]
    base = {k: v for k, v in tool_env(**env).items() if not (k.startswith("OPENBLAS_") and k not in env)}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=base, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_openblas_is_pinned_before_numpy_loads_it() -> None:
    libs = [lib for lib in _blas() if lib[0] == "openblas"]
    assert libs, "NumPy / SciPy without OpenBLAS"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        avx2 = " avx2" in next(line for line in f if line.startswith("flags"))
    for _, arch, threads in libs:
        assert threads == 1
        assert arch == "Haswell" or not avx2


def test_a_users_setting_wins() -> None:
    libs = [lib for lib in _blas(OPENBLAS_NUM_THREADS="2") if lib[0] == "openblas"]
    assert all(threads == 2 for _, _, threads in libs)
