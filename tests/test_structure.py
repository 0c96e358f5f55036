"""The package's shape, checked: what may import what, and how long a module may grow.

* ``store/`` and ``views/`` never import ``server/`` (HTTP lives only there), nor
  werkzeug;
* ``server/`` uses the store through ``settee.store``'s public names only (what its
  ``__init__`` exports), never a module below it;
* ``config/`` imports none of the packages it configures;
* no module of the packages passes 800 lines.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from paths import ROOT

PACKAGES = {"store": "settee.store", "views": "settee.views", "server": "settee.server",
            "config": "settee.config", "examples": "settee.examples"}
MAX_LINES = 800


def modules(folder: str):
    return sorted((ROOT / folder).rglob("*.py"))


def package_of(path: Path) -> str:
    parts = path.parent.relative_to(ROOT).parts          # ("store", "backends")
    return ".".join([PACKAGES[parts[0]], *parts[1:]])


def imported(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports (absolute names; relative ones resolved)."""
    package = package_of(path)
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.append((node.lineno, base))
            if base.startswith("settee."):      # from settee.store import x: x may be a module
                folder = ROOT.joinpath(*base.split(".")[1:])
                names += [(node.lineno, f"{base}.{alias.name}") for alias in node.names
                          if (folder / f"{alias.name}.py").exists()
                          or (folder / alias.name).is_dir()]
    return names


@pytest.mark.parametrize("folder", ["store", "views"])
def test_store_and_views_know_nothing_of_http(folder):
    wrong = [f"{path.name}:{line} imports {name}" for path in modules(folder)
             for line, name in imported(path)
             if name.startswith(("settee.server", "werkzeug", "gunicorn"))]
    assert not wrong, wrong


def test_settings_import_none_of_the_packages_they_configure():
    """config/ is below everything (gunicorn.conf.py, the server's own start-up file that
    gunicorn reads, aside): the store re-exports its ConfigurationError, not the reverse."""
    wrong = [f"{path.name}:{line} imports {name}" for path in modules("config")
             if path.name != "gunicorn.conf.py"
             for line, name in imported(path)
             if name.startswith(("settee.store", "settee.views", "settee.server"))]
    assert not wrong, wrong


def test_server_uses_the_store_through_its_public_names():
    wrong = [f"{path.name}:{line} imports {name}" for path in modules("server")
             for line, name in imported(path)
             if name.startswith("settee.store.") and name != "settee.store.exceptions"]
    assert not wrong, wrong


@pytest.mark.parametrize("folder", list(PACKAGES))
def test_no_module_passes_800_lines(folder):
    long = {path.name: n for path in modules(folder)
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def module_name(path: Path) -> str:
    name = package_of(path)
    return name if path.stem == "__init__" else f"{name}.{path.stem}"


def test_no_import_cycles_even_through_imports_inside_functions():
    """A cycle hidden in a function-level import still ties two modules together."""
    graph: dict[str, set[str]] = {}
    for folder in PACKAGES:
        for path in modules(folder):
            if path.name == "gunicorn.conf.py":
                continue
            here = module_name(path)
            graph[here] = {name for _, name in imported(path)
                           if name.startswith("settee.") and name != here}
    known = set(graph)
    for name in graph:
        graph[name] = {n if n in known else n.rsplit(".", 1)[0] for n in graph[name]} & known

    cycles, state = [], {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"
    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    # a package's __init__ re-exporting its own modules is not a cycle between modules
    real = [c for c in cycles if not any(a.startswith(b + ".") or b.startswith(a + ".")
                                         for a, b in zip(c, c[1:]))]
    assert not real, real


def test_endpoint_groups_get_their_collaborators_explicitly():
    """The application is no class of mixins: each endpoint group is built with what it
    uses (its ``__init__`` names them), and no group calls a method it does not define
    or receive (``self.x(...)`` only for its own methods; the rest through an attribute
    set in ``__init__``)."""
    groups = 0
    for path in modules("server"):
        tree = ast.parse(path.read_text(), str(path))
        for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
            methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
            if not cls.name.endswith("Endpoints"):
                continue
            groups += 1
            assert not cls.bases, f"{path.name}: {cls.name} inherits {len(cls.bases)} classes"
            assert "__init__" in methods, f"{path.name}: {cls.name} receives nothing"
            given = {t.attr for n in ast.walk(cls) if isinstance(n, ast.Assign)
                     for target in n.targets
                     for t in (target.elts if isinstance(target, ast.Tuple) else [target])
                     if isinstance(t, ast.Attribute)
                     and isinstance(t.value, ast.Name) and t.value.id == "self"}
            called = {n.func.attr for n in ast.walk(cls) if isinstance(n, ast.Call)
                      and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name)
                      and n.func.value.id == "self"}
            unknown = called - methods - given            # received callables are fine
            assert not unknown, f"{path.name}: {cls.name} calls {unknown}"
            assert given, f"{path.name}: {cls.name} keeps none of what it receives"
    assert groups >= 8


def test_every_route_has_exactly_one_handler(tmp_path):
    from settee.config import load_settings
    from settee.server.app import Settee, handlers

    app = Settee(load_settings(env={}, storage_data_dir=str(tmp_path)))
    routed = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert routed <= set(app.handlers)

    class One:
        def on_x(self, request):
            return request

    with pytest.raises(TypeError, match="two groups"):
        handlers(One(), One())
