"""The package's import graph: no module imports itself back, at module level or in a function."""

from __future__ import annotations

import ast

from croft_pipeline.tools.code_deps import (
    PACKAGE,
    _runtime_imports,
    imported_modules,
    module_file,
    package_modules,
)


def test_no_module_imports_itself_back() -> None:
    graph = {name: imported_modules(name) for name in package_modules()}
    cycles = [cycle for cycle in _cycles(graph) if len(cycle) > 1]
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c + c[:1]) for c in cycles)


def test_type_checking_imports_are_not_edges() -> None:
    """The walk reads the imports a module runs: ``if TYPE_CHECKING:`` blocks run none."""
    source = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from croft_pipeline import x\n"
    )
    tree = ast.parse(source)
    assert _names(tree) == {"typing"}


def _names(tree: ast.AST) -> set[str]:
    return {node.module for node in _runtime_imports(tree) if getattr(node, "module", None)}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of ``graph`` (Tarjan), each as a list of modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in graph:
                continue
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_package_modules_are_found() -> None:
    modules = package_modules()
    assert f"{PACKAGE}.settings" in modules and module_file(f"{PACKAGE}.settings") is not None


def test_every_node_is_named_after_its_function() -> None:
    from croft_pipeline.pipeline_registry import register_pipelines

    differ = {}
    for node in register_pipelines()["__default__"].nodes:
        func = node.func
        while hasattr(func, "func"):  # functools.partial
            func = func.func
        if node.name != func.__name__:
            differ[node.name] = func.__name__
    assert not differ, f"node name -> function: {differ}"
