"""`optical-viz align`: not implemented yet (see the issue that introduces it)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("align", help="(not implemented yet)")
    p.set_defaults(func=_missing)


def _missing(args) -> int:
    raise NotImplementedError("optical-viz align is not implemented yet")
