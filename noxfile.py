"""Developer tasks: `nox` runs lint, typecheck and tests; `nox -s tests` is the README test command.

The sam2 release on PyPI is a source distribution whose build imports torch, so every session
that needs sam2 installs torch and torchvision first, then sam2 without build isolation. The CUDA
extension of sam2 (hole filling in masks) is only built where a GPU and nvcc are present; set
SAM2_BUILD_CUDA=1 or 0 to decide yourself.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_venv = "yes"


def _build_cuda() -> str:
    if "SAM2_BUILD_CUDA" in os.environ:
        return os.environ["SAM2_BUILD_CUDA"]
    has_gpu = shutil.which("nvidia-smi") is not None
    return "1" if has_gpu and shutil.which("nvcc") is not None else "0"


def install_project(session: nox.Session, extras: str = "dev") -> None:
    """Install torch, then sam2 (needs torch to build), then sam2tool and its extras.

    setuptools and wheel go in with torch: sam2 builds with them without build isolation, and
    virtual environments of Python 3.12+ no longer contain setuptools.
    """
    session.install("setuptools", "wheel", "torch>=2.5.1", "torchvision>=0.20.1")
    session.install("--no-build-isolation", "sam2>=1.1.0,<1.2", env={"SAM2_BUILD_CUDA": _build_cuda()})
    session.install("-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (default selection: not slow, not gpu). Extra args go to pytest."""
    install_project(session)
    session.run("pytest", *(session.posargs or []), env={"PYTHONHASHSEED": "0"})


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "sam2tool", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "sam2tool", "tests", "benchmarks", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Mypy (strict) on the package."""
    install_project(session)
    session.run("mypy")


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Run every script in benchmarks/ (they print measured figures; nothing is asserted)."""
    install_project(session)
    for script in sorted(Path("benchmarks").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs)
