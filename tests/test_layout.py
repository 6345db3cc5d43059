"""The code's layout keeps its promises (docs/architecture.md): arrows point down, no import
cycles, SQL only where a table is owned, pages call the library only, the demo package stands
alone, modules stay readable, and the architecture document names only modules that exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.support import REPO

PACKAGE = REPO / "dpo_core"
# Lower layers never import higher ones; a module may import its own package and lower layers.
LAYERS = [
    ("errors",),
    ("access", "workspace", "device", "fields", "recipes", "formats", "hub", "demo"),
    ("migrations",),
    ("store",),
    ("cluster",),
    ("jobs",),
    ("models",),
    ("data",),
    ("training", "chat", "annotation"),
    ("evaluation",),
    ("builders", "sweeps", "publish"),
    ("startup",),
    ("cli",),
]
LAYER = {unit: n for n, units in enumerate(LAYERS) for unit in units}
# Who may write SQL against which table (the modules or packages that own it).
TABLE_OWNERS = {
    "settings": ("store",), "datasets": ("data",), "pairs": ("data",), "pairs_fts": ("data",),
    "edits": ("data",), "runs": ("jobs",), "metrics": ("training.metrics",),
    "samples": ("training.metrics",), "evals": ("evaluation.results",),
    "eval_results": ("evaluation.results",), "votes": ("chat.votes",),
    "sweeps": ("sweeps",), "sweep_trials": ("sweeps",),
    "pair_keys": ("data",), "pair_bands": ("data",), "check_hits": ("data",),
    "check_state": ("data",),
    "accounts": ("annotation.accounts",), "account_sessions": ("annotation.accounts",),
    "annotation_tasks": ("annotation",), "task_pairs": ("annotation",),
    "judgments": ("annotation",), "task_claims": ("annotation",),
    "adjudications": ("annotation",),
}
SQL_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+([a-z_]+)\b")
LONG_MODULE = 400
LONG_REASON = "Longer than 400 lines because"


def modules() -> dict[str, Path]:
    """Dotted name (without `dpo_core.`) -> file, for every module of the library."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(p for p in parts if p != "__init__") or "__init__"
        out[name] = path
    return out


def imported(path: Path, name: str) -> set[str]:
    """The dpo_core modules (dotted, without `dpo_core.`) a file imports, anywhere in it."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[:len(base) - node.level + 1] if node.level > 1 else base
                target = ".".join([*anchor, *(node.module.split(".") if node.module else [])])
            elif node.module and node.module.startswith("dpo_core"):
                target = node.module.removeprefix("dpo_core").lstrip(".")
            else:
                continue
            for alias in node.names:  # `from . import x` names a module
                candidate = f"{target}.{alias.name}" if target else alias.name
                found.add(candidate if candidate in modules() else target)
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("dpo_core.") for a in node.names
                      if a.name.startswith("dpo_core.")}
    return {f for f in found if f}


def unit(module: str) -> str:
    return module.split(".")[0]


def test_every_unit_of_the_library_has_a_layer():
    assert {unit(m) for m in modules()} - {"__init__", "__main__"} <= set(LAYER)


def test_arrows_point_down():
    up = []
    for name, path in modules().items():
        if unit(name) not in LAYER:
            continue
        for target in imported(path, name):
            if unit(target) != unit(name) and LAYER[unit(target)] >= LAYER[unit(name)]:
                up.append(f"{name} imports {target}")
    assert not up, "imports that point up or sideways:\n" + "\n".join(up)


def test_no_import_cycles():
    graph = {name: {t for t in imported(path, name) if t in modules() and t != name}
             for name, path in modules().items()}
    cycles = []

    def visit(node: str, trail: list[str], done: set[str]) -> None:
        for nxt in graph[node]:
            if nxt in trail:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in done:
                visit(nxt, [*trail, nxt], done)
        done.add(node)

    done: set[str] = set()
    for name in graph:
        if name not in done:
            visit(name, [name], done)
    assert not cycles, "import cycles:\n" + "\n".join(sorted(set(cycles)))


def test_the_demo_package_stands_alone_and_only_its_app_imports_gradio():
    """Exported Space folders carry dpo_core/demo as it is: it cannot import the lab."""
    for name, path in modules().items():
        text = path.read_text()
        if unit(name) == "demo":
            outside = {t for t in imported(path, name) if unit(t) != "demo"}
            assert not outside, f"{name} imports {outside}"
        assert "import streamlit" not in text and "from streamlit" not in text, name
        if name != "demo.app":
            assert not re.search(r"^\s*(import gradio|from gradio)", text, re.M), name


def test_sql_only_in_the_modules_that_own_the_tables():
    wrong = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            if not re.search(r"\b(SELECT|INSERT|UPDATE|DELETE)\b", node.value):
                continue
            for table in SQL_TABLE.findall(node.value):
                owners = TABLE_OWNERS.get(table)
                if owners is None:
                    continue  # json_each(...), a temp table, a sub-select alias
                if name not in ("store", "migrations") and not any(name == o or name.startswith(o + ".")
                                               for o in owners):
                    wrong.append(f"{name} touches {table}")
    assert not wrong, "\n".join(sorted(set(wrong)))


PAGE_FILES = sorted([REPO / "app.py", *(REPO / "pages").glob("*.py")])


@pytest.mark.parametrize("path", PAGE_FILES, ids=lambda p: p.name)
def test_pages_call_the_library_only(path):
    """No SQL, no torch/trl/sqlite, no run-folder layout and no parsing of error texts."""
    text = path.read_text()
    tree = ast.parse(text)
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
             for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom) and n.module}
    assert not names & {"torch", "trl", "sqlite3", "transformers", "peft"}, names
    assert not re.search(r"\b(SELECT|INSERT INTO|DELETE FROM)\b", text)
    assert not re.search(r"\.(query|query_one|scalar)\(", text)
    assert "COMPLETE_MARKER" not in text and '"final"' not in text and "glob(" not in text
    assert "exc.message" not in text or "re.match" not in text  # errors carry their field


@pytest.mark.parametrize("path", PAGE_FILES, ids=lambda p: p.name)
def test_every_file_in_pages_goes_through_the_router(path):
    """Streamlit would serve any file of pages/ as a page: each one first hands the request to
    app.py (pages/_widgets.ensure_routed), where the login is (tests/e2e/test_login.py). A
    helper module does it only when run as a page (imported, it must not)."""
    tree = ast.parse(path.read_text())
    wanted = "use_router" if path.name == "app.py" else "ensure_routed"

    def calls(body) -> list:
        return [n for n in body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)
                and getattr(n.value.func, "id", "") == wanted]

    if path.name.startswith("_"):
        guards = [n for n in tree.body if isinstance(n, ast.If)
                  and ast.unparse(n.test) == "__name__ == '__main__'" and calls(n.body)]
        assert guards, f"{path.name} does not call {wanted}() when run as a page"
        return
    found = calls(tree.body)
    assert found, f"{path.name} does not call {wanted}() at module level"
    first = next(n for n in tree.body if not isinstance(n, (ast.Import, ast.ImportFrom, ast.Expr))
                 or isinstance(n, ast.Expr) and isinstance(n.value, ast.Call))
    assert first is found[0], f"{path.name}: {wanted}() must come before anything else runs"


@pytest.mark.parametrize("path", [*modules().values(), *PAGE_FILES],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_modules_stay_readable(path):
    """A module fits in one sitting, or says at its top why it is longer; no guard around
    imports of modules that always ship."""
    text = path.read_text()
    lines = text.count("\n")
    head = ast.get_docstring(ast.parse(text)) or ""
    assert lines <= LONG_MODULE or LONG_REASON in head, \
        f"{lines} lines and no '{LONG_REASON} ...' in the docstring"
    assert "except ImportError" not in text and "except ModuleNotFoundError" not in text


def test_the_architecture_document_names_modules_that_exist():
    """Every file docs/architecture.md names exists, and it names every module of the library."""
    doc = (REPO / "docs" / "architecture.md").read_text()
    files = {p.relative_to(REPO).as_posix() for p in REPO.rglob("*.py") if ".git" not in p.parts}
    names = {Path(f).name for f in files}
    for path in set(re.findall(r"`((?:dpo_core|pages|tests)/[\w/]+\.py)`", doc)):
        assert path in files, f"docs/architecture.md names {path}, which does not exist"
    for name in set(re.findall(r"\b([a-z_]+\.py)\b", doc)):
        assert name in names, f"docs/architecture.md names {name}, which does not exist"
    for name, path in modules().items():
        if path.name in ("__init__.py", "__main__.py"):
            continue
        assert path.name in doc and unit(name) in doc, \
            f"docs/architecture.md does not describe {path.relative_to(REPO)}"
