"""DVC's own locks, held by every Kedro run that DVC did not launch: one lock for both tools.

DVC's order of operations (dvc 3.x): ``dvc repro`` holds its repo lock (``.dvc/tmp/lock``) for
the whole command; for each stage it takes the stage's path locks (``.dvc/tmp/rwlock``: write on
the outs, read on the deps), checks whether the stage changed, deletes its outs, releases the
repo lock while the command runs (``sh scripts/kedro run``: only now is the run lock met, after
the deletion), takes it back, hashes and commits the outs, then releases the path locks.
``dvc exp run`` in the workspace first stashes it under the experiments' path lock on
``workspace`` (``.dvc/tmp/exps/rwlock``) and checks the outputs out, then reproduces the same way.

So a run, once it holds the run lock, takes DVC's path locks as a DVC command does (under DVC's
repo lock): write on data/ and on the experiments' ``workspace``, until it ends. A DVC command
started after it stops at its first path lock, before it deletes or checks out anything, naming
the holder in the run lock's words. A run started while DVC holds its repo lock (between two
stages, or any other DVC command) or a path lock in the way (during a stage's command) is
refused with :class:`DvcRunning`. A run that DVC launched (``DVC_STAGE`` in its environment, which
DVC sets for every stage command) takes none of them: its DVC holds them. The path-lock file
decides between the two (whichever writes its entry first goes on); a refused run drops the run
lock at once, long before a stage command DVC starts can reach it. ``dvc checkout``, ``dvc pull``
and ``dvc exp apply`` take only the repo lock: nothing stops them, as during DVC's own stages.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

from croft_pipeline.hooks.errors import RunRefused

STAGE_VARIABLE = "DVC_STAGE"  # dvc.env.DVC_STAGE, set for every stage command DVC runs
# the path `dvc exp run` locks while it stashes the workspace (dvc's WorkspaceQueue.put)
EXP_WORKSPACE = "workspace"


class DvcRunning(RunRefused):
    """DVC holds a lock of the project that a Kedro run needs."""


def dvc_stage() -> str | None:
    """The stage whose command this process is, where DVC launched it."""
    return os.environ.get(STAGE_VARIABLE)


def hold(project_root: Path, data_dir: Path, holder: str) -> ExitStack:
    """DVC's path locks on ``data_dir`` and the workspace, held until the returned stack closes,
    for a run that ``holder`` describes (DVC prints it to a command it stops); an empty stack where
    the project is no DVC repository or DVC launched this run. Raises :class:`DvcRunning`."""
    locks = ExitStack()
    if dvc_stage() is not None or not (project_root / ".dvc").is_dir():
        return locks
    from dvc.lock import LockError
    from dvc.repo import Repo

    with Repo(os.fspath(project_root)) as repo:
        try:
            repo.lock.lock()  # DVC's retries: it may be between two stages' path locks
        except LockError:
            raise DvcRunning(running_message(project_root, repo_lock_holder(repo))) from None
        try:
            for tmp_dir, path in path_locks(repo, data_dir.relative_to(project_root)):
                locks.enter_context(_path_lock(repo, tmp_dir, path, holder))
        except BaseException as error:
            locks.close()  # none of the path locks stays behind
            if isinstance(error, LockError):
                raise DvcRunning(running_message(project_root, str(error))) from None
            raise
        finally:
            repo.lock.unlock()
    return locks


def path_locks(repo, data_dir: Path) -> list[tuple[str, str]]:
    """(lock folder, path) of each DVC path lock a run holds: ``data_dir`` (relative to the
    project) among the stages' outs and deps, ``workspace`` among the experiments'."""
    from dvc.repo.experiments.utils import EXEC_TMP_DIR

    data = repo.fs.join(repo.root_dir, *data_dir.parts)
    return [(repo.tmp_dir, data), (repo.fs.join(repo.tmp_dir, EXEC_TMP_DIR), EXP_WORKSPACE)]


def _path_lock(repo, tmp_dir: str, path: str, holder: str):
    from dvc.rwlock import rwlock

    repo.fs.makedirs(tmp_dir, exist_ok=True)
    hardlink = repo.config["core"].get("hardlink_lock", False)
    return rwlock(tmp_dir, repo.fs, holder, [], [path], hardlink)


def repo_lock_holder(repo) -> str:
    """Who holds DVC's repo lock, as far as its file says (zc.lockfile writes the pid)."""
    lockfile = repo.lock.lockfile
    content = Path(lockfile).read_text(errors="replace").strip() if os.path.exists(lockfile) else ""
    return f"pid {content} holds {lockfile}." if content.isdigit() else f"{lockfile} is held."


def running_message(project_root: Path, holder: str) -> str:
    return (
        f"DVC is running in {project_root}: wait for it to finish or stop it, then run again, or "
        f"let DVC run the pipeline (dvc repro <stage>). {holder}"
    )
