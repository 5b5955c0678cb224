#!/usr/bin/env python
"""Regenerate data/manifest.tsv from a data folder laid out like ../shared/data.

    python tools/make_manifest.py ../shared/data            # writes data/manifest.tsv
    python tools/make_manifest.py ../shared/data -o out.tsv

Every file under each set folder (``optical_viz.data.SETS``) becomes one row: set, path,
upstream repository, commit, upstream path, sha256, size, license. Files outside the set
folders (the data root's own README.md) are not listed.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from optical_viz.data.manifest import SETS, ManifestEntry, manifest_path, sha256_file, write_manifest  # noqa: E402


def build_entries(root: Path) -> list[ManifestEntry]:
    """Manifest entries for every file of every set folder under ``root``, sorted by path."""
    entries = []
    for s in SETS.values():
        base = root / s.name
        if not base.is_dir():
            print(f"warning: no folder {base}; set {s.name} left out", file=sys.stderr)
            continue
        for dirpath, dirnames, files in os.walk(base):
            dirnames.sort()
            for name in sorted(files):
                file = Path(dirpath) / name
                local = file.relative_to(base).as_posix()
                entries.append(
                    ManifestEntry(
                        set=s.name,
                        path=f"{s.name}/{local}",
                        repo=s.repo,
                        commit=s.commit,
                        upstream_path=s.upstream_path(local),
                        sha256=sha256_file(file),
                        size=file.stat().st_size,
                        license=s.license_of(local),
                    )
                )
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="data folder (e.g. ../shared/data)")
    parser.add_argument("-o", "--output", type=Path, default=manifest_path(), help="default: data/manifest.tsv")
    args = parser.parse_args(argv)
    entries = build_entries(args.root)
    write_manifest(entries, args.output)
    print(f"wrote {args.output}: {len(entries)} files, {sum(e.size for e in entries) / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
