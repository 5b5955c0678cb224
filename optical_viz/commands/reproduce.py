"""`optical-viz reproduce`: not implemented yet (see the issue that introduces it)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("reproduce", help="(not implemented yet)")
    p.set_defaults(func=_missing)


def _missing(args) -> int:
    raise NotImplementedError("optical-viz reproduce is not implemented yet")
