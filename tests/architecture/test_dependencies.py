"""The direction of dependencies, checked on every module's syntax tree (imports inside functions too)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("driftboard", "evals", "registry")
PURE = ("evals.scoring",)
FRAMEWORKS = ("django", "rest_framework", "celery", "kombu", "drf_spectacular", "simple_history")
# Celery task modules and AppConfig.ready() may import lazily: that is how those frameworks are wired.
LAZY_IMPORTS_ALLOWED = ("tasks", "apps")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts
    }


MODULES = project_modules()


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(imported module, whether the import sits inside a function) for every import statement."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((alias.name, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module, in_function))
                found.extend((f"{child.module}.{alias.name}", in_function) for alias in child.names)
            visit(child, nested)

    visit(tree, False)
    return found


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if within(m, "registry")))
def test_the_registry_never_imports_evaluation(module):
    offending = [name for name, _ in imports_of(MODULES[module]) if within(name, "evals")]
    assert not offending, f"{module} imports {offending}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if any(within(m, p) for p in PURE)))
def test_the_pure_scoring_package_imports_no_framework(module):
    offending = [name for name, _ in imports_of(MODULES[module]) if any(within(name, f) for f in FRAMEWORKS)]
    offending += [
        name for name, _ in imports_of(MODULES[module]) if within(name, "registry") or within(name, "driftboard")
    ]
    assert not offending, f"{module} imports {offending}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_sit_at_the_top_of_modules(module):
    if module.rsplit(".", 1)[-1] in LAZY_IMPORTS_ALLOWED:
        return
    hidden = [name for name, in_function in imports_of(MODULES[module]) if in_function]
    hidden = [name for name in hidden if not name.endswith(".tasks") and ".tasks." not in name]
    assert not hidden, f"{module} imports inside a function: {hidden}"


# The project package's roof: the URL configuration, the Celery app (it autodiscovers the apps' tasks),
# the dashboard and the settings. Everything else in `driftboard` is the kernel both apps stand on.
ROOF = (
    "driftboard.urls",
    "driftboard.dashboard",
    "driftboard.celery",
    "driftboard.settings",
    "driftboard.asgi",
    "driftboard.wsgi",
)
KERNEL = sorted(
    m for m in MODULES if within(m, "driftboard") and m != "driftboard" and not any(within(m, r) for r in ROOF)
)


def test_the_kernel_and_the_roof_are_told_apart():
    assert {"driftboard.db", "driftboard.roles", "driftboard.limits", "driftboard.queues"} <= set(KERNEL)
    assert "driftboard.dashboard.views" in MODULES and "driftboard.dashboard.views" not in KERNEL


@pytest.mark.parametrize("module", KERNEL)
def test_the_kernel_imports_neither_app_nor_the_dashboard(module):
    offending = [
        name
        for name, _ in imports_of(MODULES[module])
        if within(name, "evals") or within(name, "registry") or within(name, "driftboard.dashboard")
    ]
    assert not offending, f"{module} imports {offending}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if within(m, "evals") or within(m, "registry")))
def test_no_app_imports_the_dashboard(module):
    offending = [name for name, _ in imports_of(MODULES[module]) if within(name, "driftboard.dashboard")]
    assert not offending, f"{module} imports {offending}"


def test_there_is_no_import_cycle_between_project_modules():
    graph = {
        module: {target for name, _ in imports_of(path) for target in (name,) if target in MODULES and target != module}
        for module, path in MODULES.items()
    }
    # A package's __init__ re-exporting its submodules is not a dependency of the submodules on it, and
    # Celery task modules (thin: ids in, one service call) are enqueued lazily by the services they call.
    for module, targets in graph.items():
        graph[module] = {t for t in targets if not within(module, t) and not _is_tasks(t) and not _is_tasks(module)}
    cycles = _cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" → ".join(cycle) for cycle in cycles)


def _is_tasks(module: str) -> bool:
    return module.rsplit(".", 1)[-1] == "tasks"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


# Families and weights come to be in one place: the evaluation pipeline calls these registry services and
# then does its own work (profile, thresholds, runs) in the same transaction; the registry takes no callbacks.
REGISTRY_CREATION = ("family_create", "artifact_store", "artifact_record", "artifact_register")


def registry_service_calls(path: Path) -> set[str]:
    """Registry service names used by a module: `from registry.services import x`, or `<alias>.x` where the
    alias is `registry.services` imported under any name."""
    tree = ast.parse(path.read_text(), filename=str(path))
    aliases = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "registry"
        for alias in node.names
        if alias.name == "services"
    }
    used = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "registry.services"
        for alias in node.names
    }
    used |= {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
    }
    return used


@pytest.mark.parametrize("module", sorted(m for m in MODULES if within(m, "evals") or within(m, "driftboard")))
def test_only_the_pipeline_creates_families_and_artifacts(module):
    if module == "evals.services.pipeline":
        return
    offending = sorted(registry_service_calls(MODULES[module]) & set(REGISTRY_CREATION))
    assert not offending, f"{module} calls registry services {offending}; go through evals.services.pipeline"


def test_registry_services_take_no_callbacks():
    tree = ast.parse(MODULES["registry.services"].read_text())
    callbacks = [
        f"{node.name}({arg.arg})"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        for arg in node.args.args + node.args.kwonlyargs
        if arg.annotation is not None and "Callable" in ast.unparse(arg.annotation)
    ]
    assert not callbacks, f"registry services take callbacks: {callbacks}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if within(m, "evals")))
def test_only_the_pipeline_changes_registry_state(module):
    """Evaluation services decide (a `RegistryChange`); the pipeline writes it through the registry services."""
    if module == "evals.services.pipeline":
        return
    writers = ("registry.services", "registry.alerting")
    offending = [name for name, _ in imports_of(MODULES[module]) if any(within(name, w) for w in writers)]
    assert not offending, f"{module} imports {offending}; return a RegistryChange for evals.services.pipeline"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if within(m, "registry")))
def test_nothing_wires_the_registry_at_run_time(module):
    """Evaluation reaches the registry only through the extension the settings name: no module-level
    setter (a `global` statement) for another app to call when it starts."""
    tree = ast.parse(MODULES[module].read_text())
    setters = [node.names for node in ast.walk(tree) if isinstance(node, ast.Global)]
    assert not setters, f"{module} rebinds module state {setters}; use registry.extensions"
