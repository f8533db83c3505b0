"""The package's own structure: which of its modules import which."""

import ast
import os

import pytest

import keras_lookahead

pytestmark = pytest.mark.backend_independent

PACKAGE_DIR = os.path.dirname(os.path.abspath(keras_lookahead.__file__))


def package_imports(source):
    """The keras_lookahead modules a module's source imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "keras_lookahead":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("keras_lookahead."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names
                         if alias.name.startswith("keras_lookahead."))
    return found


def find_cycle(graph):
    """A list of modules a → b → … → a that import each other in a ring, or None."""
    state = {}  # module → "open" while on the current path, "done" after

    def visit(module, path):
        state[module] = "open"
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == "open":
                return path[path.index(imported):] + [imported]
            if imported not in state:
                cycle = visit(imported, path + [imported])
                if cycle:
                    return cycle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [module])
            if cycle:
                return cycle
    return None


def test_cycle_finder_on_made_up_graphs():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"b"}}) == ["b", "b"]
    assert package_imports("from keras_lookahead import _steps\n"
                           "from keras_lookahead.adaptive import estimate\n"
                           "def f():\n    import keras_lookahead.radam\n") == {
                               "_steps", "adaptive", "radam"}


def test_the_package_has_no_import_cycle():
    modules = [f[:-3] for f in os.listdir(PACKAGE_DIR) if f.endswith(".py")]
    graph = {}
    for module in modules:
        with open(os.path.join(PACKAGE_DIR, module + ".py"), encoding="utf-8") as f:
            graph[module] = package_imports(f.read()) & set(modules)
    graph.pop("__init__")  # it imports the public names; nothing imports it back by name
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph))
    assert graph["algorithm"] <= {"inner_state"}  # the math imports neither the class nor forms
