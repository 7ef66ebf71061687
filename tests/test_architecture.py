"""The structure DESIGN.md promises, checked on the source: no import circle, one home for MLflow and Hydra.

Read from the AST (nothing is imported), so these run in well under a second.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "sbilab"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path, top_level_only: bool) -> list[tuple[str, list[str]]]:
    """(module, names) imported by ``path``; at module level only (load-time edges) or anywhere."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.If) and top_level_only:  # `if TYPE_CHECKING:` blocks do not run
            continue
    return found


def resolve(module: str, names: list[str]) -> set[str]:
    """The sbilab modules an import statement loads (``from a import b`` may name a submodule b)."""
    loaded = {module} if module in MODULES else set()
    loaded |= {f"{module}.{name}" for name in names if f"{module}.{name}" in MODULES}
    return loaded


def test_no_import_circle_at_load_time():
    graph = {name: set().union(*[resolve(m, n) for m, n in imports(path, top_level_only=True)] or [set()])
             for name, path in MODULES.items()}
    # a package's __init__ importing its own submodules is how packages work, not a circle
    graph = {name: {dep for dep in deps if not name.startswith(dep + ".") and dep != name}
             for name, deps in graph.items()}
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(node: str, trail: list[str]) -> None:
        if node in done:
            return
        assert node not in visiting, f"import circle: {' -> '.join([*trail, node])}"
        visiting.add(node)
        for dep in sorted(graph[node]):
            visit(dep, [*trail, node])
        visiting.discard(node)
        done.add(node)

    for name in sorted(graph):
        visit(name, [])


def test_no_private_name_crosses_a_top_level_module():
    """A module uses another sbilab module's public names only (privates stay inside their package)."""
    for name, path in MODULES.items():
        top = name.split(".")[1] if "." in name else name
        for module, names in imports(path, top_level_only=False):
            if not module.startswith("sbilab."):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not (private and module.split(".")[1] != top), f"{name} imports private {private} from {module}"


#: hydra.main: scripts/ and the console script sbilab.cli (the installed twin of scripts/, for projects that
#: pip-install sbilab) are the only entry points
@pytest.mark.parametrize("library, home", [("mlflow", ("sbilab.tracking", "sbilab.model")),
                                           ("hydra.main", ("sbilab.cli",))])
def test_one_home_per_library(library, home):
    for name, path in MODULES.items():
        text = path.read_text()
        uses = any(form in text for form in (f"import {library}", f"from {library}", f"@{library}", f"{library}("))
        assert not uses or name.startswith(home), f"{name} uses {library}; only {home or 'scripts/'} may"


def test_no_module_over_the_size_limit():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
