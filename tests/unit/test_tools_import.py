"""The benchmarks, the local deployment's helpers, the chaos suite and the mutants are not run by
the suite, so a rename in the code they drive would break them silently: each must at least import,
and each mutant must still find the code it breaks."""

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


def test_every_mutant_still_finds_the_code_it_breaks() -> None:
    from tests.mutants import MUTANTS

    for m in MUTANTS:
        assert (ROOT / m.path).read_text().count(m.old) == 1, (m.name, m.path)
        assert (ROOT / m.test.split("::")[0]).is_file(), (m.name, m.test)
