"""No service imports another; shared imports no service. Walks every module's imports."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())


def imported_modules(path: Path) -> set[str]:
    """What the module imports, at the top or late inside a function alike (a late import still
    closes a circle); `from pkg import name` gives both pkg and pkg.name (name may be a module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # resolve relative imports against the module's package
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, node.module] if node.module else parts)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
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


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module → the modules of services/ and shared/ it imports."""
    paths = [p for d in ("services", "shared") for p in (ROOT / d).rglob("*.py")]
    names = {module_name(p) for p in paths}
    return {module_name(p): {m for m in imported_modules(p) if m in names and m != module_name(p)} for p in paths}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_services_and_shared_have_no_import_circle():
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_a_circle_and_only_it():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [["a", "b", "c"]]


def test_the_graph_sees_late_and_from_package_imports():
    graph = import_graph()
    # dunning's app() imports its routes late, inside the method
    assert "services.dunning.api.routes" in graph["services.dunning.service"]
    assert "shared.auth" in graph["services.dunning.api.routes"]  # `from shared import auth`
