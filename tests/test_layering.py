"""The apps' layering (ARCHITECTURE.md): a package imports only packages at its level or below.

Every non-test, non-migration Python file of each package is parsed; every import
counts, at module level or inside a function, `import x` and `from x import y`,
relative ones resolved against the file's own package.
"""

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Bottom to top. A package may import itself and any package before it in this list.
LAYERS = (
    "core",
    "accounts",
    "announcements",
    "models_catalog",
    "logs",
    "billing",
    "tokens",
    "relay",
    "comet",
)


@dataclass(frozen=True)
class UpwardImport:
    path: str
    line: int
    importer: str
    imported: str
    module: str

    def __str__(self) -> str:
        return (
            f"{self.path}:{self.line}: {self.importer} imports {self.module} "
            f"({self.imported} is above {self.importer})"
        )


def _module_parts(root: Path, path: Path) -> list[str]:
    """Return the dotted name of the package `path` is in, as parts."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return parts[:-1]  # a module's package; an __init__'s package is its own directory


def imported_modules(source: str, package_parts: list[str]) -> list[tuple[int, str]]:
    """Return (line, absolute module) of every import in `source`, however nested."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((node.lineno, module))
    return found


def _is_checked(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts
    return "migrations" not in parts and "tests" not in parts and not path.name.startswith("test_")


def upward_imports(root: Path, layers: tuple[str, ...] = LAYERS) -> list[UpwardImport]:
    """Return every import in `root`'s packages of a package above the importer."""
    level = {name: index for index, name in enumerate(layers)}
    upward: list[UpwardImport] = []
    for importer in layers:
        for path in sorted((root / importer).rglob("*.py")):
            if not _is_checked(path, root):
                continue
            package_parts = _module_parts(root, path)
            for line, module in imported_modules(path.read_text(), package_parts):
                imported = module.split(".")[0]
                if imported in level and level[imported] > level[importer]:
                    relative = str(path.relative_to(root))
                    upward.append(UpwardImport(relative, line, importer, imported, module))
    return upward


def test_no_package_imports_one_above_it():
    upward = upward_imports(ROOT)
    assert not upward, "Imports against the layering (ARCHITECTURE.md):\n" + "\n".join(
        str(item) for item in upward
    )


def test_every_layer_is_a_package_here():
    for name in LAYERS:
        assert (ROOT / name / "__init__.py").is_file(), name


@pytest.fixture
def synthetic(tmp_path: Path) -> Path:
    for name in ("core", "logs", "billing"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
    return tmp_path


def test_the_checker_reports_an_upward_import_inside_a_function(synthetic):
    (synthetic / "logs" / "services.py").write_text(
        "from core.money import format_usd\n\n\ndef fold():\n    from billing.services import x\n"
    )
    found = upward_imports(synthetic, ("core", "logs", "billing"))
    assert [(item.path, item.line, item.importer, item.imported) for item in found] == [
        ("logs/services.py", 5, "logs", "billing")
    ]
    assert "logs/services.py:5: logs imports billing.services" in str(found[0])


def test_the_checker_resolves_relative_imports_and_plain_imports(synthetic):
    (synthetic / "core" / "sub").mkdir()
    (synthetic / "core" / "sub" / "__init__.py").write_text("from ...billing import models\n")
    (synthetic / "core" / "money.py").write_text("import logs.models\nfrom . import sub\n")
    found = upward_imports(synthetic, ("core", "logs", "billing"))
    assert sorted((item.path, item.module) for item in found) == [
        ("core/money.py", "logs.models"),
        ("core/sub/__init__.py", "billing"),
    ]


def test_the_checker_skips_migrations_and_allows_imports_downward(synthetic):
    (synthetic / "core" / "migrations").mkdir()
    (synthetic / "core" / "migrations" / "0001_initial.py").write_text("import billing\n")
    (synthetic / "billing" / "services.py").write_text("from core import money\nimport logs\n")
    assert upward_imports(synthetic, ("core", "logs", "billing")) == []
