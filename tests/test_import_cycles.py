"""No import cycles in the library, counting the imports inside functions too.

A module that imports another only inside a function still depends on it: two modules that
do so both ways cannot be read, tested or moved apart. This reads every module of the
package (its source, nothing is imported) and fails naming each cycle it finds. Imports under
``if TYPE_CHECKING:`` (for annotations only) are not dependencies and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: Installed package name of each source folder of the repository.
PACKAGES = {'nni_lightnas': REPO / 'nni_lightnas', 'nni_lightnas.strategies': REPO / 'strategies',
            'nni_lightnas.search_spaces': REPO / 'search_spaces'}


def _modules() -> dict[str, Path]:
    modules = {}
    for prefix, root in PACKAGES.items():
        for path in root.rglob('*.py'):
            parts = list(path.relative_to(root).with_suffix('').parts)
            if parts[-1] == '__init__':
                parts = parts[:-1]
            modules['.'.join([prefix, *parts])] = path
    return modules


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the library modules it imports anywhere in its source (functions included)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == '__init__.py' else name.rpartition('.')[0]
        targets: list[str] = []
        tree = ast.parse(path.read_text())
        typing_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and 'TYPE_CHECKING' in ast.unparse(node.test) for inner in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in typing_only:  # annotations only: no dependency when the code runs
                continue
            if isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ''
                if node.level:
                    parent = package.split('.')[:len(package.split('.')) - (node.level - 1)]
                    base = '.'.join(parent + ([node.module] if node.module else []))
                # "from package import submodule" depends on the submodule, not on the package
                targets += [f'{base}.{alias.name}' if f'{base}.{alias.name}' in modules else base
                            for alias in node.names]
        deps = set()
        for target in targets:
            while target and target not in modules:
                target = target.rpartition('.')[0]
            if target and target != name:
                deps.add(target)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import():
    graph = {'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}
    assert cycles(graph) == [['a', 'b', 'c']]


def test_the_library_has_no_import_cycles():
    modules = _modules()
    assert 'nni_lightnas.latency.lut' in modules and 'nni_lightnas.search_spaces.ops' in modules
    graph = import_graph(modules)
    assert 'nni_lightnas.latency.lut' in graph['nni_lightnas.latency.lut_build']  # edges are found
    found = cycles(graph)
    details = ['; '.join(f'{module} -> {sorted(graph[module] & set(cycle))}' for module in cycle) for cycle in found]
    assert not found, 'import cycles: ' + ' | '.join(details)
