"""The ledger is pure: no clock, randomness, I/O, logging or network, and no floats (STYLE §1, §5)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import pykoii.ledger

LEDGER = Path(pykoii.ledger.__file__).parent
MODULES = sorted(LEDGER.glob("*.py"))
FORBIDDEN_IMPORTS = {
    "time",
    "random",
    "os",
    "logging",
    "socket",
    "httpx",
    "starlette",
    "asyncio",
    "secrets",
    "uuid",
    "datetime",
    "threading",
    "subprocess",
}
FORBIDDEN_CALLS = {"print", "open", "input"}


def test_ledger_modules_found():
    assert {path.name for path in MODULES} >= {"transition.py", "state.py", "codec.py", "rounds.py"}


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_no_forbidden_imports_or_calls(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            names = []
        problems += [f"line {node.lineno}: import {n}" for n in names if n.split(".")[0] in FORBIDDEN_IMPORTS]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            problems.append(f"line {node.lineno}: call {node.func.id}()")
    assert not problems, f"{path.name}: " + "; ".join(problems)


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_no_float_anywhere(path):
    hits = [
        f"line {i}" for i, line in enumerate(path.read_text().splitlines(), 1) if re.search(r"float", line)
    ]
    assert not hits, f"{path.name} mentions float at {', '.join(hits)}"


def test_the_checks_catch_what_they_look_for(tmp_path):
    """A test that cannot fail is a defect: run the same walk over a deliberately impure module."""
    bad = "import time\nfrom os import path\nx = float(1)\nprint(x)\nopen('f')\n"
    tree = ast.parse(bad)
    imports = {n.names[0].name for n in ast.walk(tree) if isinstance(n, ast.Import)}
    imports |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert imports <= FORBIDDEN_IMPORTS and {"print", "open"} <= calls and "float" in bad
