"""The demo shop's private PostgreSQL cluster: initdb, start/stop as a supervised service."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from lakehouse.config import Settings
from lakehouse.ingest.cdc.settings import CdcSettings
from lakehouse.runtime.processes import Service, port_open


class PostgresMissingError(RuntimeError):
    """Raised when no PostgreSQL server binaries are installed."""


def postgres_bin_dir() -> Path:
    """Folder with ``initdb``/``postgres``/``pg_ctl`` (Debian: /usr/lib/postgresql/<v>/bin)."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    on_path = shutil.which("initdb")
    if on_path and Path(on_path).with_name("postgres").exists():
        return Path(on_path).parent
    raise PostgresMissingError(
        "PostgreSQL server not installed: run scripts/install_debian_packages.sh "
        "(Debian package 'postgresql')"
    )


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _as_cluster_owner(cdc: CdcSettings, command: Sequence[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the cluster owner (exec, no extra process)."""
    if not _running_as_root():
        return list(command)
    user = cdc.pg_os_user
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *command]


def _check_reachable_by(owner: str, folder: Path) -> None:
    """The cluster owner must be able to walk down to its data folder."""
    entry = pwd.getpwnam(owner)
    for parent in reversed(folder.parents):
        mode = parent.stat()
        can_enter = (
            mode.st_mode & 0o001
            or (mode.st_uid == entry.pw_uid and mode.st_mode & 0o100)
            or (mode.st_gid == entry.pw_gid and mode.st_mode & 0o010)
        )
        if not can_enter:
            raise PermissionError(
                f"PostgreSQL runs as {owner!r}, which cannot enter {parent}: "
                f"put pg_data_dir (TRIVAS_CDC__PG_DATA_DIR) somewhere {owner!r} can reach"
            )


def pg_data_dir(settings: Settings, cdc: CdcSettings) -> Path:
    return settings.path(cdc.pg_data_dir)


def postgres_service(settings: Settings, cdc: CdcSettings) -> Service:
    """The supervised private PostgreSQL cluster."""
    logs = settings.path(settings.paths.logs)
    return Service("cdc-postgres", settings.path(cdc.connect_dir), logs / "cdc-postgres.log")


def init_cluster(settings: Settings, cdc: CdcSettings) -> bool:
    """``initdb`` the private cluster once; False if it already exists."""
    data = pg_data_dir(settings, cdc)
    if (data / "PG_VERSION").exists():
        return False
    data.mkdir(parents=True, exist_ok=True)
    if _running_as_root():
        _check_reachable_by(cdc.pg_os_user, data)
        entry = pwd.getpwnam(cdc.pg_os_user)
        os.chown(data, entry.pw_uid, entry.pw_gid)
    data.chmod(0o700)
    command = _as_cluster_owner(
        cdc,
        [
            str(postgres_bin_dir() / "initdb"),
            "-D", str(data),
            "-U", "postgres",
            "--encoding=UTF8", "--locale=C",
            # Local socket (inside the 0700 data dir) for the admin; passwords over TCP.
            "--auth-local=trust", "--auth-host=scram-sha-256",
        ],
    )  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd="/")
    if result.returncode != 0:
        raise RuntimeError(f"initdb failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return True


def start_postgres(settings: Settings, cdc: CdcSettings) -> int:
    """Start (or reuse) the private cluster; returns its pid."""
    init_cluster(settings, cdc)
    data = pg_data_dir(settings, cdc)
    command = _as_cluster_owner(
        cdc,
        [
            str(postgres_bin_dir() / "postgres"),
            "-D", str(data),
            "-c", f"port={cdc.pg_port}",
            "-c", "listen_addresses=localhost",
            "-c", f"unix_socket_directories={data}",
            "-c", "wal_level=logical",
            "-c", "max_replication_slots=8",
            "-c", "max_wal_senders=8",
            "-c", "shared_buffers=64MB",
            # A slot left behind by a removed connector must not fill the disk with WAL.
            "-c", "max_slot_wal_keep_size=2GB",
        ],
    )  # fmt: skip
    service = postgres_service(settings, cdc)
    return service.start(
        command,
        ready=lambda: port_open("localhost", cdc.pg_port) and _admin_answers(settings, cdc),
        timeout_s=60,
        cwd=Path("/"),
    )


def stop_postgres(settings: Settings, cdc: CdcSettings, grace_s: float = 30.0) -> bool:
    """Fast shutdown (SIGINT: disconnect clients, checkpoint); False if it was not running."""
    return postgres_service(settings, cdc).stop(grace_s, signum=signal.SIGINT)


def admin_connection(settings: Settings, cdc: CdcSettings, database: str = "postgres"):  # noqa: ANN201
    """A superuser connection to the private cluster over its unix socket."""
    import psycopg2

    return psycopg2.connect(
        host=str(pg_data_dir(settings, cdc)),
        port=cdc.pg_port,
        user="postgres",
        dbname=database,
        connect_timeout=3,
    )


def _admin_answers(settings: Settings, cdc: CdcSettings) -> bool:
    import psycopg2

    try:
        admin_connection(settings, cdc).close()
        return True
    except psycopg2.OperationalError:
        return False
