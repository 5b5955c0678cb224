"""The ``optical-viz`` command line.

Each command group lives in its own module under ``optical_viz.commands`` and
exposes ``register(subparsers)``; the handler it installs (``set_defaults(func=...)``)
imports the heavy libraries only when the command runs.

Errors meant for the user (``ValueError``, ``KeyError``, ``FileNotFoundError``, ``CLIError``,
and an ``OSError`` of the storage: permission denied, read-only file system, disk full)
print one line and exit with code 2; ``--verbose`` (or ``OPTICAL_VIZ_DEBUG=1``) prints the
full traceback instead.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

# command group -> module; the order is the order of `optical-viz --help`
COMMANDS = {
    "model": "optical_viz.commands.model",
    "data": "optical_viz.commands.data",
    "align": "optical_viz.commands.align",
    "align-train": "optical_viz.commands.align_train",
    "evaluate": "optical_viz.commands.evaluate",
    "distill": "optical_viz.commands.distill",
    "bench": "optical_viz.commands.bench",
    "reproduce": "optical_viz.commands.reproduce",
    "demo": "optical_viz.commands.demo",
}


# OSErrors of the storage, not of the program: one line, like the errors meant for the user
_STORAGE_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


class CLIError(Exception):
    """An error meant for the user: printed without a traceback, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optical-viz",
        description="Optimal-transport alignment of multilingual embeddings (OPTICAL toolkit).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--verbose", action="store_true",
                        help="on an error, print the full traceback (also: OPTICAL_VIZ_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in COMMANDS.items():
        importlib.import_module(module).register(sub)
    return parser


def _version() -> str:
    from optical_viz import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CLIError, FileNotFoundError, ValueError, KeyError) as exc:
        if args.verbose or os.environ.get("OPTICAL_VIZ_DEBUG", "") not in ("", "0"):
            raise
        # errors raised at the library's boundary carry a message for the user
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"optical-viz {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except OSError as exc:  # a write the checks before the work could not foresee (a full disk)
        if exc.errno not in _STORAGE_ERRORS or args.verbose or os.environ.get("OPTICAL_VIZ_DEBUG", "") not in ("", "0"):
            raise
        print(f"optical-viz {args.command}: error: cannot write {exc.filename or 'a file'}: {exc.strerror}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"optical-viz {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # run the imported module's main, so that `python -m optical_viz.cli` and the console
    # script share one CLIError class
    from optical_viz.cli import main as _main

    sys.exit(_main())
