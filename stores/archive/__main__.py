"""``python -m stores.archive`` runs the archive store; ``python -m stores.archive compact``
runs one compaction + retention pass over the configured object store and exits
(``retention`` is the same pass: retention is applied while compacting).

Both read the same ``STRATA_*`` settings (docs/archive.md). ``--progress`` prints
``progress <done> <total>`` lines for ``strata archive`` to draw its bar.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict

from stores.archive.catalog import Catalog
from stores.archive.compaction import Compactor, Retention
from stores.archive.service import run_archive
from stores.archive.settings import DEFAULT_PORT, ArchiveSettings


def compact(settings: ArchiveSettings, progress: bool) -> int:
    objects = settings.objects()
    try:
        compactor = Compactor(
            Catalog(objects),
            Retention(settings.archive_retention_days * 86400, settings.retention_seconds()),
            row_group_rows=settings.archive_row_group_rows,
        )

        def show(done: int, total: int) -> None:
            if progress:
                print(f"progress {done} {total}", flush=True)

        report = compactor.run(show)
    finally:
        objects.close()
    print(json.dumps(asdict(report)), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stores.archive")
    parser.add_argument("command", nargs="?", choices=["serve", "compact", "retention"])
    parser.add_argument("--progress", action="store_true", help="print progress lines")
    args = parser.parse_args(argv)
    settings = ArchiveSettings.load()
    if args.command in ("compact", "retention"):
        return compact(settings, args.progress)
    return run_archive(settings, DEFAULT_PORT)


if __name__ == "__main__":
    sys.exit(main())
