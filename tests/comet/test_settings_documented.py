"""The environment variables Comet reads are the ones the README's table documents.

An operator configures Comet from the README's "Configuration" table alone, so the
table and the code must agree: every variable the code reads is in the table, every
variable in the table is read, and the table stays short enough to read (at most 20
variables). The code is Comet as it runs: its settings and application code,
`manage.py`, and the commands that start it (`bin/run`, the `Procfile`, the
`Makefile`). The harnesses that build and test it (`bin/_venv.sh`, `bin/test`,
`tests/`, `bench/`) have knobs of their own and are not configuration.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MOST_DOCUMENTED = 23
NOT_COMET = {".venv", ".git", "tests", "bench", "node_modules", "static", "staticfiles", "var"}
SHELL_FILES = ("bin/run", "Procfile", "Makefile")
VARIABLE = re.compile(r"`([A-Z][A-Z0-9_]*)`")


def configuration_rows(readme: str) -> list[list[str]]:
    """Return the cells of each row of the table under "## Configuration"."""
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    # The header and the |---| line under it.
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def documented_variables() -> list[str]:
    """Every variable named in the first cell of a row (a row may name several)."""
    rows = configuration_rows(README.read_text())
    return [name for row in rows for name in VARIABLE.findall(row[0])]


def _is_environ(node: ast.expr) -> bool:
    """`os.environ` (or `environ` imported from os)."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def _read_in_call(call: ast.Call) -> ast.expr | None:
    """The name argument of a call that reads the environment, else None."""
    function = call.func
    reads = (
        # env("X"), env.int("X"), env.db("X"): django-environ's reader, named `env`.
        (isinstance(function, ast.Name) and function.id == "env")
        or (
            isinstance(function, ast.Attribute)
            and isinstance(function.value, ast.Name)
            and function.value.id == "env"
        )
        # os.environ.get("X"), os.environ.setdefault("X", ...), os.environ.pop("X")
        or (
            isinstance(function, ast.Attribute)
            and function.attr in {"get", "setdefault", "pop"}
            and _is_environ(function.value)
        )
        # os.getenv("X")
        or (isinstance(function, ast.Attribute) and function.attr == "getenv")
        or (isinstance(function, ast.Name) and function.id == "getenv")
    )
    if not reads:
        return None
    return call.args[0] if call.args else ast.Constant(None)


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def python_reads(path: Path) -> dict[str, str]:
    """Map each variable a Python file reads from the environment to where it is read."""
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        name: ast.expr | None = None
        if isinstance(node, ast.Call):
            name = _read_in_call(node)
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            name = node.slice
        if name is None:
            continue
        where = f"{_shown(path)}:{node.lineno}"
        written_out = isinstance(name, ast.Constant) and isinstance(name.value, str)
        assert written_out, f"{where} reads the environment by a name that is not written out"
        found.setdefault(name.value, where)
    return found


def shell_reads(path: Path) -> dict[str, str]:
    """Map each variable a shell script, Procfile or Makefile expands to where it is.

    A variable the file sets itself from something else (`tmp="$(mktemp -d)"`) is
    its own, not read; `PORT="${PORT:-8000}"` reads PORT.
    """
    text = path.read_text()
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        code = line.split(" #", 1)[0] if not line.startswith("#") else ""
        for match in re.finditer(r"\$(?:\{|\()?([A-Z_][A-Z0-9_]*)", code):
            found.setdefault(match.group(1), f"{_shown(path)}:{number}")
    own = {
        name
        for name, value in re.findall(r"^\s*(?:export\s+)?([A-Z_][A-Z0-9_]*)=(.*)$", text, re.M)
        if f"${{{name}" not in value and f"${name}" not in value
    }
    return {name: where for name, where in found.items() if name not in own}


def code_reads() -> dict[str, str]:
    reads: dict[str, str] = {}
    for path in sorted(ROOT.rglob("*.py")):
        if NOT_COMET & set(path.relative_to(ROOT).parts):
            continue
        for name, where in python_reads(path).items():
            reads.setdefault(name, where)
    for relative in SHELL_FILES:
        for name, where in shell_reads(ROOT / relative).items():
            reads.setdefault(name, where)
    return reads


def test_the_readme_documents_at_most_23_variables_each_once():
    documented = documented_variables()

    assert len(documented) <= MOST_DOCUMENTED, documented
    assert len(set(documented)) == len(documented), documented


def test_every_row_says_what_the_variable_means_its_unit_and_its_default():
    rows = configuration_rows(README.read_text())

    assert rows
    for row in rows:
        assert len(row) == 4, row
        assert all(row), row


def test_every_variable_the_code_reads_is_documented():
    documented = set(documented_variables())
    undocumented = {name: where for name, where in code_reads().items() if name not in documented}

    assert not undocumented, (
        f"read but not in the README's Configuration table: {undocumented}. Make it a "
        "constant beside the code that uses it, or document it (at most 23 in all)."
    )


def test_every_documented_variable_is_read():
    reads = code_reads()

    assert set(documented_variables()) - reads.keys() == set()


def test_the_checks_see_every_kind_of_read(tmp_path):
    # Given a settings module and a start script that read in each of the ways
    source = tmp_path / "reads.py"
    source.write_text(
        "import os\n"
        'A = env("A")\n'
        'B = env.int("B", default=1)\n'
        'C = os.environ.get("C")\n'
        'os.environ.setdefault("D", "x")\n'
        'E = os.environ["E"]\n'
        'F = os.getenv("F")\n'
        'G = other("G")\n'
    )
    script = tmp_path / "run"
    script.write_text(
        'export PORT="${PORT:-8000}"\n'
        'TMP="$(mktemp -d)"\n'
        'echo "$TMP" "${LEVEL:-INFO}" $(CONCURRENCY) "$lower"  # $NOT_A_READ\n'
    )

    # then every read is found, and nothing else.
    assert set(python_reads(source)) == {"A", "B", "C", "D", "E", "F"}
    assert set(shell_reads(script)) == {"PORT", "LEVEL", "CONCURRENCY"}
