"""`optical-viz distill`: not implemented yet (see the issue that introduces it)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("distill", help="(not implemented yet)")
    p.set_defaults(func=_missing)


def _missing(args) -> int:
    raise NotImplementedError("optical-viz distill is not implemented yet")
