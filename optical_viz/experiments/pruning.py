"""Disk: the weights of a protocol's runs that no later stage reads (``limits.prune``)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def prune_after_stage(stage: str, runs_dir: str | os.PathLike) -> list[Path]:
    """Delete the weights no later stage reads (``limits.prune``, the quick scale, whose CI
    check would otherwise hold ~0.7 GB per run): a finished run's checkpoints (the protocol
    never extends a run), and once a question's test stage has run, that question's students
    (RQ2 reuses no RQ1 student; :func:`optical_viz.experiments.stages.make_run` names
    directories ``<question>-...``). An unfinished run keeps its checkpoint. Returns what went."""
    question = stage.split("-")[0]
    gone = []
    for run_dir in sorted(p for p in Path(runs_dir).glob("*") if p.is_dir()):
        if not (run_dir / "student" / "config.json").is_file():
            continue
        drop = [run_dir / "checkpoints"]
        if stage.endswith("-test") and run_dir.name.startswith(f"{question}-"):
            drop.append(run_dir / "student")
        for path in drop:
            if path.exists():
                shutil.rmtree(path)
                gone.append(path)
    return gone
