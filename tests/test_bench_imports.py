"""The benchmark orchestrators start from a bare ``python3``: before they
build their own venvs, they may import nothing outside the standard library."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Blocks every third-party package the project or its tests use.
BLOCKED = ("PIL", "tornado", "pycurl", "daemon", "redis", "pymemcache", "numpy", "skimage")


@pytest.mark.parametrize("module", ["perf", "servers"])
def test_orchestrator_imports_with_the_standard_library_only(module: str) -> None:
    script = (
        "import sys\n"
        f"for name in {BLOCKED!r}: sys.modules[name] = None\n"
        f"sys.path[:0] = [{str(ROOT / 'bench')!r}, {str(ROOT)!r}]\n"
        f"import {module}\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
