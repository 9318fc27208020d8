"""A team's MLflow on one machine: PostgreSQL (runs, registry and the users of MLflow's
basic-auth app) and ``mlflow server`` proxying the artifacts, both on 127.0.0.1.

    python -m croft_pipeline.tools.team up     [--state .team] [--port 5055] [--pg-port 5433]
    python -m croft_pipeline.tools.team down   [--state .team]
    python -m croft_pipeline.tools.team add-user NAME [--reader]

``up`` creates what is missing under ``--state`` (the database cluster, the artifact folder,
the users ``admin``, ``croft`` (writer) and ``reader``, their passwords in ``secrets.json``,
mode 600), starts both servers, writes the ``croft`` user into ``conf/local/credentials.yml``
(entry ``mlflow_team``, what conf/team/mlflow.yml names) and says how to point another machine
at it. ``down`` stops exactly the two processes ``up`` started (by the PIDs it recorded) and
keeps the data. Writers hold EDIT on every experiment and registered model (a role); everyone
else reads (the server's default permission). Run as root, PostgreSQL runs as the ``postgres``
user (it refuses root), so ``--state`` must be a folder that user can reach.
docs/team.md."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import Any

import yaml

from croft_pipeline.common.files import atomic_write_bytes

SERVER_PORT, PG_PORT = 5055, 5433
DATABASES = ("mlflow", "mlflow_auth")  # the tracking store and the basic-auth users
DB_USER = "croft"  # the PostgreSQL superuser of the team's cluster
EXPERIMENT = "croft-pipeline"  # conf/base/mlflow.yml's experiment, created by up
WRITER, READER, ADMIN = "croft", "reader", "admin"
WRITERS_ROLE = "writers"
CREDENTIALS_KEY = "mlflow_team"  # conf/team/mlflow.yml: server.credentials
START_TIMEOUT_S = 120


class TeamError(RuntimeError):
    """A step of up/down that cannot go on; one line."""


@dataclass(frozen=True)
class State:
    """The files of one team server under its state folder."""

    root: Path

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets.json"

    @property
    def pgpass(self) -> Path:
        return self.root / "pgpass"

    @property
    def auth_ini(self) -> Path:
        return self.root / "basic_auth.ini"

    @property
    def server(self) -> Path:
        return self.root / "server.json"  # what up started: PIDs, ports, URI

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"


def pg_bin(program: str) -> str:
    """A PostgreSQL program: on PATH, else under Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(program) or next(
        iter(sorted(glob(f"/usr/lib/postgresql/*/bin/{program}"), reverse=True)), None
    )
    if found is None:
        raise TeamError(
            f"PostgreSQL's {program} is not installed: `apt-get install postgresql` (Debian's "
            "package; `make team-up` installs it where it is missing)"
        )
    return found


def as_db_owner(command: list[str]) -> list[str]:
    """``command`` as the user that owns the cluster: this one, or ``postgres`` under root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def load_secrets(state: State) -> dict[str, str]:
    """The passwords of the cluster and the users, made once (``secrets.json``, mode 600)."""
    if state.secrets.exists():
        return json.loads(state.secrets.read_text())
    made = {name: secrets.token_urlsafe(18) for name in ("db", ADMIN, WRITER, READER, "flask")}
    atomic_write_bytes(state.secrets, json.dumps(made, indent=1).encode())
    state.secrets.chmod(0o600)
    return made


def init_cluster(state: State, password: str) -> None:
    """``initdb`` a cluster that only answers passwords (scram-sha-256), once."""
    if (state.pgdata / "PG_VERSION").exists():
        return
    pwfile = state.root / "initdb.pw"
    pwfile.write_text(password)
    try:
        if os.geteuid() == 0:
            state.pgdata.mkdir(mode=0o700, exist_ok=True)
            shutil.chown(state.pgdata, "postgres")
            shutil.chown(pwfile, "postgres")
        command = [pg_bin("initdb"), "-D", str(state.pgdata), "-U", DB_USER, "-E", "UTF8"]
        command += ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
        done = subprocess.run(as_db_owner(command), capture_output=True, text=True)
        if done.returncode != 0:
            reach = " (as root it runs as `postgres`: can that user reach it?)" * (
                os.geteuid() == 0
            )
            raise TeamError(f"initdb {state.pgdata} failed{reach}: {done.stderr.strip()[-400:]}")
    finally:
        pwfile.unlink(missing_ok=True)


def start_postgres(state: State, port: int) -> int:
    """Start the cluster on 127.0.0.1:``port`` (its socket in the cluster folder); its PID."""
    log = state.log("postgres")
    log.touch()
    if os.geteuid() == 0:
        shutil.chown(log, "postgres")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {state.pgdata}"
    command = [pg_bin("pg_ctl"), "-D", str(state.pgdata), "-l", str(log), "-o", options]
    done = subprocess.run(as_db_owner([*command, "-w", "start"]), capture_output=True, text=True)
    if done.returncode != 0:
        raise TeamError(f"PostgreSQL did not start on port {port}: {log.read_text()[-400:]}")
    return int((state.pgdata / "postmaster.pid").read_text().split()[0])


def create_databases(port: int, password: str) -> None:
    import psycopg2

    with contextlib.closing(
        psycopg2.connect(
            host="127.0.0.1", port=port, user=DB_USER, password=password, dbname="postgres"
        )
    ) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            for name in DATABASES:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{name}"')


def write_server_files(state: State, pg_port: int, passwords: dict[str, str]) -> None:
    """The password file libpq reads (no password on a command line) and the auth app's ini."""
    state.pgpass.write_text(f"127.0.0.1:{pg_port}:*:{DB_USER}:{passwords['db']}\n")
    state.pgpass.chmod(0o600)
    ini = (
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = postgresql+psycopg2://{DB_USER}@127.0.0.1:{pg_port}/mlflow_auth\n"
        f"admin_username = {ADMIN}\n"
        f"admin_password = {passwords[ADMIN]}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = true\n"
        # a checked password is trusted for 60 s per worker (MLflow's default checks every
        # request's PBKDF2 hash again, which slows a run's hundreds of logging calls); a changed
        # password or a deleted user takes up to that long on the other worker
        "auth_cache_ttl_seconds = 60\n"
    )
    state.auth_ini.write_text(ini)
    state.auth_ini.chmod(0o600)


def start_mlflow(state: State, port: int, pg_port: int, passwords: dict[str, str]) -> int:
    """``mlflow server`` with the basic-auth app, PostgreSQL behind it and the artifacts it
    proxies under ``state.artifacts``, in a session of its own; its PID once it is healthy."""
    import requests

    state.artifacts.mkdir(exist_ok=True)
    command = [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
    command += [
        "--backend-store-uri",
        f"postgresql+psycopg2://{DB_USER}@127.0.0.1:{pg_port}/mlflow",
    ]
    command += ["--artifacts-destination", str(state.artifacts), "--serve-artifacts"]
    environment = {
        **os.environ,
        "PGPASSFILE": str(state.pgpass),
        "MLFLOW_AUTH_CONFIG_PATH": str(state.auth_ini),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": passwords["flask"],
    }
    with state.log("mlflow").open("ab") as log:
        process = subprocess.Popen(
            command,
            env=environment,
            cwd=state.root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TeamError(f"mlflow server exited: {state.log('mlflow').read_text()[-600:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return process.pid
        time.sleep(0.5)
    stop_group(process.pid)
    raise TeamError(
        f"mlflow server not healthy after {START_TIMEOUT_S} s: see {state.log('mlflow')}"
    )


def create_users(uri: str, passwords: dict[str, str]) -> None:
    """The writer and the reader, the writers' role (EDIT on every experiment and registered
    model) and the experiment, each once."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    with credentials(ADMIN, passwords[ADMIN]):
        admin = auth_client(uri)
        for user in (WRITER, READER):
            with contextlib.suppress(MlflowException):  # made by an earlier up
                admin.create_user(user, passwords[user])
        add_to_writers(admin, WRITER)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        if client.get_experiment_by_name(EXPERIMENT) is None:
            client.create_experiment(EXPERIMENT)


def auth_client(uri: str) -> Any:
    """MLflow's basic-auth admin client of the server at ``uri`` (quiet: its import warns about
    Starlette's deprecated WSGI middleware, which is MLflow's own business)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import mlflow.server

        return mlflow.server.get_app_client("basic-auth", tracking_uri=uri)


def add_to_writers(admin: Any, user: str) -> None:
    role = next((r for r in admin.list_roles("default") if r.name == WRITERS_ROLE), None)
    if role is None:
        role = admin.create_role("default", WRITERS_ROLE, "EDIT on every experiment and model")
        for resource in ("experiment", "registered_model"):
            admin.add_role_permission(role.id, resource, "*", "EDIT")
    if all(r.id != role.id for r in admin.list_user_roles(user)):
        admin.assign_role(user, role.id)


@contextlib.contextmanager
def credentials(username: str, password: str):
    """MLflow's client credentials for the block, then as they were."""
    keys = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    before = {key: os.environ.get(key) for key in keys}
    os.environ.update(zip(keys, (username, password), strict=True))
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def write_credentials(path: Path, username: str, password: str) -> None:
    """Set the ``mlflow_team`` entry of a Kedro credentials file (mode 600), other entries kept."""
    existing = yaml.safe_load(path.read_text()) if path.exists() else None
    entries = existing if isinstance(existing, dict) else {}
    entries[CREDENTIALS_KEY] = {
        "MLFLOW_TRACKING_USERNAME": username,
        "MLFLOW_TRACKING_PASSWORD": password,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, yaml.safe_dump(entries, sort_keys=False).encode())
    path.chmod(0o600)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited and not yet reaped, does not)."""
    with contextlib.suppress(ChildProcessError):  # reap it if it is this process's child
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's (postgres under root)
        pass
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def stop_group(pid: int, timeout: float = 20) -> None:
    """SIGTERM the process group ``pid`` leads, SIGKILL what is left after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid):  # SIGKILL is not refused: only reaping
        time.sleep(0.1)


def up(state: State, port: int, pg_port: int, credentials_file: Path) -> dict[str, Any]:
    """Start (or find running) the team's servers; what :func:`down` needs, in server.json."""
    if state.server.exists():
        running = json.loads(state.server.read_text())
        if alive(running["mlflow_pid"]) and alive(running["postgres_pid"]):
            return running
        raise TeamError(f"{state.server} names processes that have stopped: run `down` first")
    state.root.mkdir(parents=True, exist_ok=True)
    passwords = load_secrets(state)
    init_cluster(state, passwords["db"])
    postgres_pid = start_postgres(state, pg_port)
    started = {"postgres_pid": postgres_pid, "pg_port": pg_port, "pgdata": str(state.pgdata)}
    try:
        create_databases(pg_port, passwords["db"])
        write_server_files(state, pg_port, passwords)
        mlflow_pid = start_mlflow(state, port, pg_port, passwords)
        uri = f"http://127.0.0.1:{port}"
        started |= {"mlflow_pid": mlflow_pid, "port": port, "uri": uri}
        atomic_write_bytes(state.server, json.dumps(started, indent=1).encode())
        create_users(uri, passwords)
    except BaseException:
        if "mlflow_pid" in started:
            stop_group(started["mlflow_pid"])
        stop_postgres(state)
        state.server.unlink(missing_ok=True)
        raise
    write_credentials(credentials_file, WRITER, passwords[WRITER])
    return started


def stop_postgres(state: State, timeout: int = 120) -> None:
    """``pg_ctl stop``, waiting until the server is gone: ``fast`` (a clean shutdown), then, if
    that did not end it within ``timeout`` seconds (a loaded machine), ``immediate``."""
    for mode in ("fast", "immediate"):
        stop = [
            pg_bin("pg_ctl"),
            "-D",
            str(state.pgdata),
            "-m",
            mode,
            "-w",
            "-t",
            str(timeout),
            "stop",
        ]
        if subprocess.run(as_db_owner(stop), capture_output=True).returncode == 0:
            return


def down(state: State) -> dict[str, Any] | None:
    """Stop what :func:`up` started (its recorded PIDs); the data stays. None: nothing was up."""
    if not state.server.exists():
        return None
    started = json.loads(state.server.read_text())
    stop_group(started["mlflow_pid"])
    stop_postgres(state)
    state.server.unlink()
    return started


def add_user(state: State, name: str, reader: bool) -> str:
    """A new user with a fresh password (returned; also kept in secrets.json), a writer unless
    ``reader``."""
    started = json.loads(state.server.read_text())
    passwords = load_secrets(state)
    password = passwords.setdefault(name, secrets.token_urlsafe(18))
    atomic_write_bytes(state.secrets, json.dumps(passwords, indent=1).encode())
    with credentials(ADMIN, passwords[ADMIN]):
        admin = auth_client(started["uri"])
        admin.create_user(name, password)
        if not reader:
            add_to_writers(admin, name)
    return password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="croft-pipeline team", description=__doc__.splitlines()[0]
    )
    parser.add_argument("command", choices=("up", "down", "add-user"))
    parser.add_argument("name", nargs="?", help="add-user: the new user's name")
    parser.add_argument("--state", type=Path, default=Path(".team"), help="default: .team")
    parser.add_argument("--port", type=int, default=SERVER_PORT, help=f"default: {SERVER_PORT}")
    parser.add_argument("--pg-port", type=int, default=PG_PORT, help=f"default: {PG_PORT}")
    parser.add_argument(
        "--credentials",
        type=Path,
        default=Path("conf/local/credentials.yml"),
        help="the Kedro credentials file up writes the writer into",
    )
    parser.add_argument("--reader", action="store_true", help="add-user: READ only")
    args = parser.parse_args(argv)
    state = State(args.state.resolve())
    try:
        if args.command == "up":
            started = up(state, args.port, args.pg_port, args.credentials)
            print(
                f"MLflow server {started['uri']} (PID {started['mlflow_pid']}), PostgreSQL on "
                f"127.0.0.1:{started['pg_port']} (PID {started['postgres_pid']}); data in "
                f"{state.root}.\nThis project: `kedro run --env=team` (user {WRITER} in "
                f"{args.credentials}). The passwords: {state.secrets}.\nAnother machine: "
                "forward the port (`ssh -L 5055:127.0.0.1:5055 <this host>`) or serve it "
                "behind TLS, then CROFT_TEAM_SERVER=<its address> kedro run --env=team with its "
                f"own user in its conf/local/credentials.yml ({CREDENTIALS_KEY})."
            )
        elif args.command == "down":
            stopped = down(state)
            print(
                "nothing to stop"
                if stopped is None
                else f"stopped mlflow server (PID {stopped['mlflow_pid']}) and PostgreSQL (PID "
                f"{stopped['postgres_pid']}); the data stays in {state.root}"
            )
        else:
            if not args.name:
                parser.error("add-user needs the new user's name")
            add_user(state, args.name, args.reader)
            print(f"user {args.name} added; the password is in {state.secrets}")
    except TeamError as error:
        print(f"team {args.command}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
