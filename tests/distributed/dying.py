"""Fits that fail once: one kills its own process, one waits for its node to be removed
(imported by Ray workers: kept light)."""

from __future__ import annotations

import os
import time

from croft_pipeline.methods.tuning import run_fit


def dies_once(marker: str, job):
    """run_fit, except that the first call anywhere (``marker`` absent) kills its own process."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return run_fit(job)
    os._exit(1)


def stalls_once(folder: str, job):
    """run_fit, except that the first call anywhere writes its Ray node's id to ``folder/node``
    and waits there for the test to remove that node (at most two minutes)."""
    try:
        os.close(os.open(os.path.join(folder, "claimed"), os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return run_fit(job)
    from croft_pipeline.distributed import node_id

    written = os.path.join(folder, "node.tmp")
    with open(written, "w") as out:
        out.write(node_id())
    os.replace(written, os.path.join(folder, "node"))
    time.sleep(120)
    return run_fit(job)
