"""A task's Python dependencies: ``requirements.txt`` with hashes -> a per-task virtual environment.

A task folder may carry ``requirements.txt``. Every requirement must be pinned (``name==version``) and
carry at least one ``--hash=sha256:...``, so the same bytes are installed on every node (pip's
``--require-hashes`` mode, which also refuses any dependency left out of the file). Only package
requirements and ``--hash`` options are accepted: no ``-e``, ``-r``, ``-c``, index or URL options,
no paths or VCS links.

``ensure_environment`` makes the environment once per file content: a virtual environment in
``<cache>/<sha256 of requirements.txt>/`` (made with ``venv``, filled by ``pip install
--require-hashes --no-input``, marked complete only when pip succeeded) and returns its
site-packages folder. The task's child adds that folder to its path before importing the task
(the child keeps the node's interpreter, so it can still import pykoii). The node does this before
starting the child and refuses the task, with pip's own words, when it cannot; ``pykoii simulate``
and ``pykoii task build`` check the file and install it the same way.

>>> check_line("six==1.16.0 --hash=sha256:" + "ab" * 32)
'six==1.16.0'
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

REQUIREMENTS = "requirements.txt"
INSTALL_TIMEOUT = 600.0
"""Seconds pip may take to install one environment."""

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[A-Za-z0-9._,-]+\])?==([A-Za-z0-9.!+_-]+)(\s*;.*)?$")
_HASH = re.compile(r"^--hash=sha(256|384|512):[0-9a-fA-F]+$")
ACCEPTED = "NAME==VERSION --hash=sha256:<hex> (pip's --require-hashes form)"


@dataclass(frozen=True)
class Requirements:
    """A task's ``requirements.txt``: its path, the sha256 of its bytes, and its pins."""

    path: Path
    digest: str
    pins: tuple[str, ...]


def check_line(line: str, where: str = REQUIREMENTS) -> str:
    """The pin (``name==version``) of one logical requirement line, or ``ConfigError`` naming it."""
    parts = line.split()
    hashes = [p for p in parts if p.startswith("-")]
    words = [p for p in parts if not p.startswith("-")]
    for option in hashes:
        if not _HASH.match(option):
            raise ConfigError(
                f"{where}: option {option!r} in {line!r} is not accepted; accepted: {ACCEPTED}",
                field="requirements",
                received=line,
            )
    requirement = " ".join(words)
    if not _PIN.match(requirement):
        raise ConfigError(
            f"{where}: requirement {requirement or line!r} is not pinned with ==; accepted: {ACCEPTED}",
            field="requirements",
            received=line,
        )
    if not hashes:
        raise ConfigError(
            f"{where}: requirement {requirement!r} has no --hash; accepted: {ACCEPTED}",
            field="requirements",
            received=line,
        )
    return requirement.split(";")[0].strip()


def read_requirements(folder: str | os.PathLike[str]) -> Requirements | None:
    """The folder's ``requirements.txt`` checked line by line, or ``None`` when it has none."""
    path = Path(folder) / REQUIREMENTS
    if not path.is_file():
        return None
    data = path.read_bytes()
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text", path=str(path)) from None
    pins = []
    for line in text.replace("\\\n", " ").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            pins.append(check_line(line, str(path)))
    return Requirements(path=path, digest=hashlib.sha256(data).hexdigest(), pins=tuple(pins))


def site_packages(environment: Path) -> Path:
    """The site-packages folder of the virtual environment at ``environment``."""
    return Path(sysconfig.get_path("purelib", vars={"base": str(environment), "platbase": str(environment)}))


def ensure_environment(
    requirements: Requirements, cache: str | os.PathLike[str], *, timeout: float = INSTALL_TIMEOUT
) -> Path:
    """The site-packages folder of ``requirements``' environment under ``cache``, made if missing.

    Raises ``ConfigError`` with the end of pip's output when pip cannot install the file (a wrong
    hash, a package the index does not have, no network). Safe to call from several processes:
    one makes the environment while the others wait for it.
    """
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    environment = cache / requirements.digest
    ready = environment / ".pykoii-complete"
    with open(cache / f".{requirements.digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.is_file():
            return site_packages(environment)
        shutil.rmtree(environment, ignore_errors=True)
        try:
            _run([sys.executable, "-m", "venv", "--without-pip", str(environment)], timeout, requirements)
            python = environment / "bin" / "python"
            pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
            install = ["install", "--require-hashes", "--no-input", "-r", str(requirements.path)]
            _run([*pip, *install], timeout, requirements)
        except BaseException:
            shutil.rmtree(environment, ignore_errors=True)
            raise
        ready.write_text(requirements.digest + "\n")
        with contextlib.suppress(OSError):
            os.chmod(environment, 0o755)
    return site_packages(environment)


def author_cache() -> Path:
    """Where ``pykoii simulate`` and ``pykoii task build`` keep task environments on the author's
    machine: ``$XDG_CACHE_HOME/pykoii/venvs`` (default ``~/.cache/pykoii/venvs``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pykoii" / "venvs"


def use_environment(folder: str | os.PathLike[str]) -> str:
    """For the author's tools: install ``folder``'s requirements as a node would (same check, same
    pip flags) and put them on this process's path. Returns the site-packages folder ("" if none)."""
    import site

    path = environment_for(folder, author_cache())
    if path:
        site.addsitedir(path)
    return path


def environment_for(folder: str | os.PathLike[str], cache: str | os.PathLike[str]) -> str:
    """The site-packages folder to put on the task's path ("" when the folder has no
    ``requirements.txt``); ``ConfigError`` when the file is refused or cannot be installed."""
    requirements = read_requirements(folder)
    if requirements is None:
        return ""
    path = ensure_environment(requirements, cache)
    with contextlib.suppress(OSError):
        os.chmod(cache, 0o755)  # the task's own user must reach it inside its sandbox
    return str(path)


def _run(command: list[str], timeout: float, requirements: Requirements) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ConfigError(
            f"{requirements.path}: installing took more than {timeout:g} s; refusing the task",
            path=str(requirements.path),
        ) from None
    if done.returncode != 0:
        said = "\n".join((done.stderr or done.stdout).strip().splitlines()[-12:])
        raise ConfigError(
            f"{requirements.path}: pip could not install it (exit code {done.returncode}); refusing the "
            f"task. pip said:\n{said}",
            path=str(requirements.path),
        )


__all__ = [
    "REQUIREMENTS",
    "Requirements",
    "author_cache",
    "check_line",
    "ensure_environment",
    "read_requirements",
    "site_packages",
    "use_environment",
]
