"""`optical-viz data list|check|fetch`: the data sets, their integrity, and downloading them."""
from __future__ import annotations

import argparse
from pathlib import Path

from optical_viz.commands import DATA_ROOT_HELP

MAX_LISTED = 10  # problems listed per set by `data check`


def register(sub) -> None:
    p = sub.add_parser("data", help="list, check or download the data sets")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    lp = dsub.add_parser("list", help="each set: languages, license, whether it is present")
    lp.add_argument("--data-root", "--root", dest="root", type=Path, default=None, metavar="DIR", help=DATA_ROOT_HELP)
    lp.set_defaults(func=_list)

    cp = dsub.add_parser("check", help="verify presence and SHA-256 of every file (exit 1 on problems)")
    cp.add_argument("sets", nargs="*", metavar="SET", help="sets to check (default: all)")
    cp.add_argument("--data-root", "--root", dest="root", type=Path, default=None, metavar="DIR", help=DATA_ROOT_HELP)
    cp.set_defaults(func=_check)

    fp = dsub.add_parser(
        "fetch",
        help="download a set (or all) at its pinned upstream commit, verifying checksums",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Files already present and correct are skipped; each file is verified and "
        "moved into place atomically.",
    )
    fp.add_argument("name", metavar="NAME", help="a set (see `optical-viz data list`) or 'all'")
    fp.add_argument("--data-root", "--root", dest="root", type=Path, default=None, metavar="DIR", help=DATA_ROOT_HELP)
    fp.add_argument(
        "--base-url", default=None,
        help="mirror serving the data root's layout (<URL>/<set>/<path>) instead of GitHub",
    )
    fp.set_defaults(func=_fetch)


def _list(args) -> int:
    from optical_viz import paths
    from optical_viz.data.loaders import index_set
    from optical_viz.data.manifest import SETS, WORD_ALIGNMENT_SETS, read_manifest

    root = paths.data_root(args.root)
    manifest = read_manifest()
    print(f"data root: {root}")
    print(f"{'set':<16}{'langs':>6}  {'files':>6}  {'MB':>6}  {'present':<14}license")
    for s in SETS.values():
        entries = [e for e in manifest if e.set == s.name]
        rel = [e.path[len(s.name) + 1:] for e in entries]
        n_lang = len(index_set(s.name, rel)) if s.name not in WORD_ALIGNMENT_SETS else sum(r.endswith(".gold") for r in rel)
        have = sum((root / e.path).is_file() for e in entries)
        present = "yes" if have == len(entries) else "no" if have == 0 else f"partial {have}/{len(entries)}"
        mb = sum(e.size for e in entries) / 1e6
        print(f"{s.name:<16}{n_lang:>6}  {len(entries):>6}  {mb:>6.1f}  {present:<14}{s.license}")
    print("langs: languages (word alignment sets: language pairs); present: files on disk (not checksummed)")
    return 0


def _check(args) -> int:
    import sys

    from optical_viz import paths
    from optical_viz.data.manifest import check, get_set, read_manifest

    root = paths.data_root(args.root)
    problems = check(args.root, sets=args.sets or None, progress=sys.stderr.isatty())
    names = {get_set(s).name for s in args.sets}
    n = len([e for e in read_manifest() if not names or e.set in names])
    if not problems:
        print(f"data check: ok, {n} files verified under {root}")
        return 0
    by_set: dict[str, list] = {}
    for p in problems:
        by_set.setdefault(p.set, []).append(p)
    for name, probs in by_set.items():
        if not (root / name).is_dir():
            print(f"data check: {name}: the set folder {root / name} is missing ({len(probs)} files); "
                  f"fix: {probs[0].fix}", file=sys.stderr)
            continue
        for p in probs[:MAX_LISTED]:
            print(f"data check: {p}", file=sys.stderr)
        if len(probs) > MAX_LISTED:
            print(f"data check: {name}: ... and {len(probs) - MAX_LISTED} more; fix: {probs[0].fix}", file=sys.stderr)
    print(
        f"data check: {len(problems)} of {n} files missing or corrupt in {', '.join(by_set)} under {root}",
        file=sys.stderr,
    )
    return 1


def _fetch(args) -> int:
    import sys

    from optical_viz.data.fetch import fetch
    from optical_viz.data.manifest import DataError

    try:
        report = fetch(args.name, args.root, args.base_url)
    except DataError as exc:  # network errors included; the message names file, set and URL
        print(f"optical-viz data fetch: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"data fetch {args.name}: {len(report.downloaded)} files downloaded "
        f"({report.bytes / 1e6:.1f} MB), {len(report.skipped)} already present and correct, "
        f"under {report.root}"
    )
    return 0
