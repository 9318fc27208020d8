"""The project code a pipeline runs, read from the import graph (for dvc.yaml's deps).

Starting from the modules its nodes live in and the module that builds the pipeline, follow
every ``croft_pipeline`` import, at module level or inside a function, through the source's
syntax tree, without importing anything. Standard library and third-party modules are not
followed. Package data that code reads by path (not by import) is declared in
:data:`RESOURCES`, beside the module that reads it. The hooks of ``settings.py`` are not deps:
they time, lock and check parameters, which can stop a run but never change what it writes.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterable
from pathlib import Path

from kedro.pipeline import Pipeline

PACKAGE = "croft_pipeline"
RESOURCES = {  # module -> package files (relative to the package) it reads by path
    f"{PACKAGE}.clip.configs": ("clip/model_configs",),
    f"{PACKAGE}.data.emoji_catalog": ("data/emoji_catalog.json",),
    f"{PACKAGE}.publishing.registry": ("serving/model_code.py",),
}


def module_file(name: str) -> Path | None:
    """The source file of a project module (a package's ``__init__.py``), or None."""
    try:
        spec = importlib.util.find_spec(name)
    except (
        ModuleNotFoundError
    ):  # a parent is a module, not a package (``a.b`` of ``from a import b``)
        return None
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def _from_base(name: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = name.split(".")[: len(name.split(".")) - node.level + is_package]
    return ".".join(parts + ([node.module] if node.module else []))


def _runtime_imports(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    """The import statements a module can run (anywhere, functions included), without the
    ``if TYPE_CHECKING:`` blocks, which run none."""
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        todo.extend(ast.iter_child_nodes(node))


def imported_modules(name: str) -> set[str]:
    """The project modules module ``name`` imports by name: ``from a import b`` is ``a.b`` when
    that is a module, else ``a`` (its ``b`` comes from ``a``'s namespace)."""
    path = module_file(name)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    edges: set[str] = set()
    for node in _runtime_imports(tree):
        if isinstance(node, ast.Import):
            edges.update(alias.name for alias in node.names)
            continue
        base = _from_base(name, node, is_package)
        for alias in node.names:
            child = f"{base}.{alias.name}"
            edges.add(child if module_file(child) is not None else base)
    return {edge for edge in edges if edge == PACKAGE or edge.startswith(f"{PACKAGE}.")}


def package_modules() -> set[str]:
    """Every module of the package, by dotted name."""
    package_dir = module_file(PACKAGE).parent
    return {
        ".".join((PACKAGE, *path.relative_to(package_dir).with_suffix("").parts)).removesuffix(
            ".__init__"
        )
        for path in package_dir.rglob("*.py")
    }


def _with_parents(name: str) -> list[str]:
    """Importing ``a.b.c`` runs ``a`` and ``a.b`` first."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def import_closure(roots: Iterable[str]) -> set[str]:
    """The project modules that importing ``roots`` can run, transitively."""
    seen: set[str] = set()
    todo = [parent for root in roots for parent in _with_parents(root)]
    while todo:
        name = todo.pop()
        if name in seen or not (name == PACKAGE or name.startswith(f"{PACKAGE}.")):
            continue
        path = module_file(name)  # None: an attribute, not a module
        if path is None:
            continue
        seen.add(name)
        for imported in imported_modules(name):
            todo.extend(_with_parents(imported))
    return seen


def node_modules(pipeline: Pipeline) -> set[str]:
    """The modules that define a pipeline's node functions (partials unwrapped)."""
    modules = set()
    for node in pipeline.nodes:
        func = node.func
        while hasattr(func, "func"):  # functools.partial
            func = func.func
        modules.add(func.__module__)
    return modules


def pipeline_code(pipeline: Pipeline, pipeline_module: str) -> set[Path]:
    """Every project file a pipeline's run reads as code: the import closure of its node modules
    and of the module that builds it, and the package data those modules read."""
    return module_code(import_closure({*node_modules(pipeline), pipeline_module}))


def module_code(modules: set[str]) -> set[Path]:
    """The source files of ``modules`` and the package data they read by path."""
    files = {module_file(name) for name in modules}
    package_dir = module_file(PACKAGE).parent
    for name in modules & set(RESOURCES):
        files.update(package_dir / resource for resource in RESOURCES[name])
    return {path for path in files if path is not None}


def package_files(directory: Path) -> set[Path]:
    """The files a folder of the package holds (what DVC hashes), caches excluded."""
    return {
        path for path in directory.rglob("*") if path.is_file() and "__pycache__" not in path.parts
    }


def covering_paths(files: set[Path], package_dir: Path) -> list[Path]:
    """The shortest list of files and folders that is exactly ``files``: a folder stands for its
    files when every one of them is in the set (resource folders count as files)."""
    expanded = set()
    for path in files:
        expanded |= package_files(path) if path.is_dir() else {path}

    def cover(directory: Path) -> list[Path]:
        inside = package_files(directory)
        if inside and inside <= expanded:
            return [directory]
        out = [path for path in directory.iterdir() if path.is_file() and path in expanded]
        for child in sorted(p for p in directory.iterdir() if p.is_dir()):
            out.extend(cover(child))
        return out

    return sorted(cover(package_dir))
