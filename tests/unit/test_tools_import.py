"""The benchmarks, the local deployment's helpers, the chaos suite and the mutants are not run by
the suite, so a rename in the code they drive would break them silently: each must at least import."""

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = [
    *sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for folder in ("bench", "deploy/local", "tests/chaos")
        for p in (ROOT / folder).glob("*.py")
        if p.name != "__main__.py"
    ),
    "bench.__main__",
    "tests.chaos.__main__",
    "tests.mutants",
]


@pytest.mark.parametrize("module", TOOLS)
def test_imports(module: str) -> None:
    importlib.import_module(module)
