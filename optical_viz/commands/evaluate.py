"""`optical-viz evaluate`: not implemented yet (see the issue that introduces it)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="(not implemented yet)")
    p.set_defaults(func=_missing)


def _missing(args) -> int:
    raise NotImplementedError("optical-viz evaluate is not implemented yet")
