"""Every ``raise`` in src/pykoii names an error from ``pykoii.errors`` or a built-in for API misuse."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pykoii
from pykoii import errors

SOURCE = Path(pykoii.__file__).parent
ALLOWED_BUILTINS = {"ValueError", "TypeError", "KeyError", "NotImplementedError", "ArgumentTypeError"}
"""API misuse; NotImplementedError marks a method a subclass must provide; argparse's
ArgumentTypeError is how a CLI option's type function reports a bad value (argparse prints it)."""
ERROR_CLASSES = {
    name for name, obj in vars(errors).items() if inspect.isclass(obj) and issubclass(obj, Exception)
}


def raised_names(tree: ast.AST) -> list[tuple[int, str | None]]:
    """(line, class name) of every ``raise X(...)``/``raise X``; ``None`` for what is not a plain name.

    A bare ``raise`` (re-raise) and ``raise name`` of a caught exception variable are allowed."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Raise) or node.exc is None:
            continue
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        if isinstance(exc, ast.Name):
            found.append((node.lineno, exc.id))
        elif isinstance(exc, ast.Attribute):
            found.append((node.lineno, exc.attr))
        else:
            found.append((node.lineno, None))
    return found


def caught_names(tree: ast.AST) -> set[str]:
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.ExceptHandler) and node.name}


def error_valued_names(tree: ast.AST) -> set[str]:
    """Names that can only hold an error from ``pykoii.errors``: functions annotated to return one
    (``def _corrupt(...) -> LogCorruptionError``), variables assigned only from error classes
    (``cls = SandboxError if x else TaskCodeError``), and names narrowed by
    ``isinstance(name, <error class>)``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and isinstance(node.returns, ast.Name):
            if node.returns.id in ERROR_CLASSES:
                names.add(node.name)
        elif (
            isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
        ):
            classes = [n.id for n in ast.walk(node.value) if isinstance(n, ast.Name) and n.id[:1].isupper()]
            if classes and all(name in ERROR_CLASSES for name in classes):
                names.add(node.targets[0].id)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "isinstance"
            and len(node.args) == 2
            and isinstance(node.args[0], ast.Name)
            and isinstance(node.args[1], ast.Name)
            and node.args[1].id in ERROR_CLASSES
        ):
            names.add(node.args[0].id)
    return names


def test_every_raise_names_a_known_error():
    problems = []
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        reraised = caught_names(tree) | error_valued_names(tree)
        for line, name in raised_names(tree):
            if name in ERROR_CLASSES or name in ALLOWED_BUILTINS or name in reraised:
                continue
            problems.append(f"{path.relative_to(SOURCE)}:{line} raises {name}")
    assert not problems, (
        "raise an error from pykoii.errors (or ValueError/TypeError/KeyError):\n" + "\n".join(problems)
    )


def test_the_walk_sees_raises():
    tree = ast.parse("try:\n    pass\nexcept Exception as exc:\n    raise exc\nraise RuntimeError('x')\n")
    assert sorted(name for _, name in raised_names(tree)) == ["RuntimeError", "exc"]
    assert caught_names(tree) == {"exc"}
    factories = ast.parse(
        "def make() -> KeyFileError: ...\ncls = SandboxError if x else TaskCodeError\nbad = RuntimeError\n"
        "if isinstance(out, PykoiiError): pass\n"
    )
    assert error_valued_names(factories) == {"make", "cls", "out"}


def test_error_tree_names_end_in_error_and_say_when_they_are_raised():
    for name in ERROR_CLASSES:
        cls = getattr(errors, name)
        assert name.endswith("Error"), name
        assert cls.__doc__ and ("Raised when" in cls.__doc__ or name == "PykoiiError"), name
        assert issubclass(cls, errors.PykoiiError), name
        assert name in errors.__doc__, f"{name} is missing from the tree drawn in errors.py's docstring"
