"""Errors a person can read: a failed bundle command ends with its reason, and the traceback goes to a log file.

MONAI wraps an error raised inside a config expression in ``RuntimeError: Failed to evaluate ConfigExpression``, so
a failed ``python -m monai.bundle run`` prints some 40 lines of traceback that end on the wrapper, with the real
message far above. The bundle configs call :func:`readable_errors` first thing; from then on an uncaught error
prints only the innermost cause (which names the file and the problem), appends the full traceback to
``<output folder>/error.log``, and the process exits with status 1 as before. Set ``PIPELINE_TRACEBACK=1`` to see
the traceback on the terminal too. Ctrl-C, and SIGTERM in the bundle command, stop the run through its ``finally``
blocks and end with one line. Library use (``import pipeline`` in a script) is unaffected.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from pipeline.version import DISTRIBUTION

__all__ = ["ERROR_LOG", "TRACEBACK_ENV", "install_hint", "readable_errors", "require_extra", "root_cause"]

ERROR_LOG = "error.log"
TRACEBACK_ENV = "PIPELINE_TRACEBACK"
_MAX_LINES = 40


def root_cause(error: BaseException) -> BaseException:
    """The innermost explicit cause (``raise ... from``) of ``error``, past MONAI's and our own wrappers."""
    seen = {id(error)}
    while error.__cause__ is not None and id(error.__cause__) not in seen:
        error = error.__cause__
        seen.add(id(error))
    return error


def require_extra(module: str, extra: str, needed_for: str) -> Any:
    """Import ``module``, an optional dependency, or end in one line that names the extra that installs it.

    Args:
        module: the module, e.g. ``"onnxruntime"``.
        extra: the package's extra that installs it, e.g. ``"export"``.
        needed_for: what needs it, e.g. ``"running model.onnx"``.

    Returns:
        The module.

    Raises:
        ImportError: ``"<needed_for> needs <module>, which is not installed: <install_hint(extra)>"``; its cause is
            dropped, so the command prints this line and not ``No module named ...``.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{needed_for} needs {module}, which is not installed: {install_hint(extra)}") from None


def install_hint(extra: str) -> str:
    """How to install the package's ``extra``: in a clone, ``pip install -e ".[<extra>]"``; from a wheel, its
    packages as the installed distribution's metadata names them (``pip install 'onnx<2,>=1.16' ...``), since the
    distribution itself is not on the package index."""
    from pipeline.bundle import bundles_are_packaged

    if not bundles_are_packaged():
        return f'pip install -e ".[{extra}]" in the clone'
    try:
        requires = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        requires = []
    marker = f'extra == "{extra}"'
    packages = [r.split(";")[0].strip() for r in requires if marker in r.replace("'", '"')]
    if not packages:
        return f'pip install "{DISTRIBUTION}[{extra}]"'
    return "pip install " + " ".join(f"'{p}'" for p in packages)


def _message(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    if type(error).__name__ == "OptionalImportError" and "mlflow" in text.lower():
        text = f"--tracking mlflow needs mlflow, which is not installed: {install_hint('tracking')}"
    if isinstance(error, (KeyError, AttributeError, TypeError, NameError, IndexError)):
        text = f"{type(error).__name__}: {text}"  # programming errors: the type is part of the message
    lines = text.splitlines()
    if len(lines) > _MAX_LINES:
        lines = [*lines[:_MAX_LINES], f"... ({len(lines) - _MAX_LINES} more lines in the error log)"]
    return "\n".join(lines)


def readable_errors(output_dir: str | os.PathLike) -> str:
    """Make this process end an uncaught error with a short message, and log the traceback in ``output_dir``.

    Args:
        output_dir: the command's output folder; ``error.log`` is appended to there (created when needed).

    Returns:
        The path of the error log, as a string (a config expression may keep it).
    """
    log = Path(output_dir) / ERROR_LOG
    previous: Callable = getattr(sys.excepthook, "replaced", sys.excepthook)  # installed twice: replace, not nest

    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            reason = str(error) or "Ctrl-C"
            sys.stderr.write(f"interrupted: {reason}; finished work is kept, and summary.json says what\n")
            return
        if os.environ.get(TRACEBACK_ENV, "").strip() not in ("", "0"):
            previous(kind, error, tb)
        where = ""
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("a") as f:
                f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
                f.write("".join(traceback.format_exception(kind, error, tb)))
            where = f" (traceback in {log}; set {TRACEBACK_ENV}=1 to print it)"
        except OSError:
            where = f" (the traceback could not be written to {log}; set {TRACEBACK_ENV}=1 to print it)"
        if not issubclass(kind, KeyboardInterrupt):
            sys.stderr.write(f"error: {_message(root_cause(error))}\n{where.strip()}\n")

    hook.replaced = previous  # type: ignore[attr-defined]
    sys.excepthook = hook
    _stop_on_sigterm()
    return str(log)


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt("terminated (SIGTERM)")


def _stop_on_sigterm() -> None:
    """In the bundle command, SIGTERM (what ``kill``, a scheduler or a container stop sends) stops the run like
    Ctrl-C: the ``finally`` blocks run, so inference writes its summary with ``"interrupted": true``, instead of the
    process vanishing mid-write. Library use and other threads keep the default."""
    from pipeline.overrides import is_bundle_command

    if is_bundle_command() and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)
