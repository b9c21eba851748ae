"""The code stays lint-clean, type-checks (settings in pyproject.toml), has no import cycle
and no module too long to read without a reason."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,  # noqa: S603 - fixed argv, no shell
                          text=True, timeout=300, check=False)


def silent_tests(root: Path) -> list[str]:
    """``file:line name`` of every ``test_*`` function under ``root`` without a docstring."""
    found = []
    for path in sorted(root.rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and \
                    node.name.startswith("test_") and ast.get_docstring(node) is None:
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.name}")
    return found


class TestHygiene:
    def test_ruff(self) -> None:
        """ruff finds nothing in agent/, tests/ and bench/."""
        result = run("ruff", "check", "agent", "tests", *(["bench"] if (ROOT / "bench").is_dir()
                                                          else []))
        assert 0 == result.returncode, result.stdout + result.stderr

    def test_mypy_strict(self) -> None:
        """mypy --strict --warn-unreachable (pyproject's settings) finds nothing in agent/ and
        tests/ (a test's own mistakes show as type errors too; every ignore says why)."""
        result = run("mypy", "agent", "tests")
        assert 0 == result.returncode, result.stdout + result.stderr

    def test_long_modules_say_why(self) -> None:
        """A module of agent/ over MAX_LINES lines carries a docstring paragraph beginning
        ``Length:`` that says why it is one module (none does today)."""
        assert [] == long_modules_without_reason(ROOT / "agent")

    def test_the_length_check_finds_long_modules(self, tmp_path: Path) -> None:
        """The length check names a long module without a Length: paragraph, and only that one."""
        body = "x = 1\n" * MAX_LINES
        (tmp_path / "long.py").write_text('"""Long."""\n' + body)
        (tmp_path / "reasoned.py").write_text(
            '"""Long.\n\nLength: one state machine, read top to bottom."""\n' + body)
        (tmp_path / "short.py").write_text('"""Short."""\n' + body[:-6])
        assert [f"long.py ({MAX_LINES + 1} lines)"] == long_modules_without_reason(tmp_path)

    def test_every_test_says_what_it_checks(self) -> None:
        """Every test function under tests/ has a docstring saying the behaviour it checks."""
        assert [] == silent_tests(ROOT / "tests")

    def test_the_docstring_check_finds_a_silent_test(self, tmp_path: Path) -> None:
        """A test without a docstring is named; one with a docstring and a helper are not."""
        (tmp_path / "test_x.py").write_text(
            'def test_silent():\n    pass\n\n\ndef test_said():\n    """Says."""\n\n\n'
            "def helper():\n    pass\n")
        assert ["test_x.py:1 test_silent"] == silent_tests(tmp_path)

    def test_no_import_cycles(self) -> None:
        """No module of agent/ imports itself through others: every import counts (also
        under TYPE_CHECKING and inside functions), except a package's ``__init__``
        re-exporting its own submodules."""
        graph = import_graph(ROOT / "agent")
        assert [] == find_cycles(graph)

    def test_packages_keep_their_rules(self) -> None:
        """Each package of agent/ imports nothing its ``__init__`` docstring says it must not
        import (its "Must not import ``x``, ``y``" sentence)."""
        rules = package_rules(ROOT / "agent")
        assert {"connectivity", "devidp", "entra", "local", "sessions", "settings", "signin",
                "web"} <= set(rules)
        assert [] == rule_breaks(ROOT / "agent", rules)

    def test_the_rule_check_finds_a_break(self, tmp_path: Path) -> None:
        """A module importing what its package's docstring forbids is found, by ``import``,
        ``from x import y`` and a relative import alike."""
        pkg = tmp_path / "agent" / "signin"
        pkg.mkdir(parents=True)
        (tmp_path / "agent" / "__init__.py").write_text("")
        (tmp_path / "agent" / "web.py").write_text("")
        (pkg / "__init__.py").write_text(
            '"""Sign-in.\n\nMust not import ``aiohttp.web`` or ``agent.web``: no HTTP."""\n')
        (pkg / "a.py").write_text("from aiohttp import web\n")
        (pkg / "b.py").write_text("from .. import web\n")
        (pkg / "c.py").write_text("import aiohttp.web_request\nimport aiohttp\n")
        rules = package_rules(tmp_path / "agent")
        assert {"signin": ["aiohttp.web", "agent.web"]} == rules
        assert ["signin/a.py imports aiohttp.web", "signin/b.py imports agent.web"
                ] == rule_breaks(tmp_path / "agent", rules)

    def test_the_cycle_check_finds_cycles(self, tmp_path: Path) -> None:
        """A cycle through a TYPE_CHECKING import and one through a function-level import are
        found; a package's __init__ importing its submodules is not a cycle."""
        pkg = tmp_path / "agent" / "pkg"
        pkg.mkdir(parents=True)
        (tmp_path / "agent" / "__init__.py").write_text("")
        (pkg / "__init__.py").write_text("from .a import A\nfrom .b import B\n")
        (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                  "    from .b import B\nA = 1\n")
        (pkg / "b.py").write_text("from . import a\nB = 2\n")
        (tmp_path / "agent" / "c.py").write_text("def f():\n    from .d import D\n")
        (tmp_path / "agent" / "d.py").write_text("import agent.c\nD = 3\n")
        assert [["agent.c", "agent.d", "agent.c"], ["agent.pkg.a", "agent.pkg.b", "agent.pkg.a"]
                ] == sorted(find_cycles(import_graph(tmp_path / "agent")))


MAX_LINES = 300  # a module a new maintainer can read at one sitting


def long_modules_without_reason(package: Path) -> list[str]:
    """The modules over MAX_LINES lines whose docstring has no ``Length:`` paragraph."""
    found = []
    for path in sorted(package.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MAX_LINES and not any(
                paragraph.startswith("Length:")
                for paragraph in (ast.get_docstring(ast.parse(text)) or "").split("\n\n")):
            found.append(f"{path.relative_to(package)} ({lines} lines)")
    return found


def package_rules(package: Path) -> dict[str, list[str]]:
    """package name → the modules its ``__init__`` docstring says it must not import."""
    rules = {}
    for init in sorted(package.glob("*/__init__.py")):
        doc = " ".join((ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
                        ).split())
        start = doc.find("Must not import ")
        if start >= 0:
            sentence = doc[start:].split(":")[0].split(". ")[0]
            rules[init.parent.name] = sentence.split("``")[1::2]
    return rules


def rule_breaks(package: Path, rules: dict[str, list[str]]) -> list[str]:
    """'<file> imports <forbidden>' for each import that breaks its package's rule."""
    breaks = []
    for name, forbidden in sorted(rules.items()):
        for path in sorted((package / name).rglob("*.py")):
            here = [package.name, *path.relative_to(package).parent.parts]
            for imported in sorted(imported_names(path, here)):
                hit = next((f for f in forbidden
                            if imported == f or imported.startswith(f + ".")), None)
                if hit:
                    breaks.append(f"{path.relative_to(package)} imports {hit}")
    return breaks


def imported_names(path: Path, here: list[str]) -> set[str]:
    """Every dotted name ``path`` imports (``from x import y`` gives ``x`` and ``x.y``),
    relative imports made absolute from the package ``here``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[:len(here) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph(package: Path) -> dict[str, set[str]]:
    """module → the modules of ``package`` it imports (``from x import name`` counts as
    importing ``x.name`` when that is a module); a package's imports of its own submodules
    are left out."""
    def name_of(path: Path) -> str:
        parts = path.relative_to(package.parent).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    files = {name_of(path): path for path in sorted(package.rglob("*.py"))}

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        here = module if is_package else module.rpartition(".")[0]
        targets: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(known(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = here.split(".")[:len(here.split(".")) - node.level + 1]
                    base = ".".join(parent + ([node.module] if node.module else []))
                targets.update(known(f"{base}.{alias.name}") for alias in node.names)
        graph[module] = {t for t in targets if t is not None and t != module
                         and not (is_package and t.startswith(module + "."))}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path that ends where it starts) per group of modules that import
    each other."""
    cycles: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(graph[module]):
            if target in path:
                cycle = path[path.index(target):] + [target]
                if not any(set(cycle) <= set(c) for c in cycles):
                    cycles.append(cycle)
            elif target not in done:
                visit(target, [*path, target])
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    return cycles
