"""The ``budgetsearch`` command: argument parsing and clear errors; the work lives in the API.

Bad input gives one line on stderr and exit code 2 (``--debug`` shows the traceback). Each
command lives in :mod:`budgetsearch.commands`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from budgetsearch import __version__
from budgetsearch.commands import devices, run, train
from budgetsearch.errors import UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors: one line, exit code 2
        raise UsageError(f"{self.prog}: {message}")


_NEGATIVE_VALUE = re.compile(r"^-[0-9.]")


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--target-latency -5ms`` → ``--target-latency=-5ms``, so the value reaches the option's
    own check (argparse would otherwise say only "expected one argument")."""
    out: list[str] = []
    for word in argv:
        if (out and out[-1].startswith("--") and "=" not in out[-1]
                and _NEGATIVE_VALUE.match(word)):
            out[-1] = f"{out[-1]}={word}"
        else:
            out.append(word)
    return out


def _add_pareto_parsers(sub: Any) -> None:
    from budgetsearch.commands.pareto import register  # pareto and baselines

    register(sub)


def _add_export_parser(sub: Any) -> None:
    from budgetsearch.commands.export import register

    register(sub)


Registrar = Callable[[Any], None]
# Each command module adds its subcommands.
_SUBCOMMANDS: list[Registrar] = [
    train.register,
    devices.register,
    run.register,
    _add_pareto_parsers,
    _add_export_parser,
]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    parser = _Parser(
        prog="budgetsearch",
        description="Find the most accurate pruned network that fits a hardware budget.",
    )
    parser.add_argument("--version", action="version", version=f"budgetsearch {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for register in _SUBCOMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``budgetsearch`` console script; returns the exit code."""
    argv = _join_negative_values(list(sys.argv[1:] if argv is None else argv))
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        args.argv = [w for w in argv if w != "--debug"]  # for the resume command after Ctrl-C
        if args.command is None:
            parser.print_help()
            return 2
        return int(args.handler(args))
    except (UsageError, ValueError, TypeError, OSError, KeyError) as error:
        if debug:
            raise
        message = str(error) if not isinstance(error, KeyError) else f"unknown key {error}"
        message = " ".join(message.split())  # one line, whatever the library wrote
        print(f"budgetsearch: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        print("budgetsearch: interrupted" + (f": {interrupt}" if str(interrupt) else ""),
              file=sys.stderr)
        return 130
