"""No service imports another; shared imports no service. Walks every module's imports."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # resolve relative imports against the module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                found.add(node.module)
    return found


def test_there_are_four_services():
    assert SERVICES == ["dunning", "invoicing", "payments", "webhooks"]


@pytest.mark.parametrize("service", SERVICES)
def test_service_imports_no_other_service(service):
    offenders = []
    for path in (ROOT / "services" / service).rglob("*.py"):
        for module in imported_modules(path):
            parts = module.split(".")
            if parts[0] == "services" and len(parts) > 1 and parts[1] != service:
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []


def test_shared_imports_no_service():
    offenders = [
        f"{path.relative_to(ROOT)} imports {m}"
        for path in (ROOT / "shared").rglob("*.py")
        for m in imported_modules(path)
        if m.split(".")[0] == "services"
    ]
    assert offenders == []


def test_the_walker_sees_relative_imports(tmp_path):
    # Guard against a walker that silently finds nothing.
    path = ROOT / "services" / "payments" / "service.py"
    assert "services.payments.consumers.invoices" in imported_modules(path)
