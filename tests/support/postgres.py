"""PostgreSQL for the tests: the server in HOOKMAP_TEST_DATABASE_URL, else a throwaway cluster.

Fixtures (a pytest plugin, registered by ``tests/conftest.py``):

- ``postgres_server`` (session): the server, as a `PostgresServer`; its ``url`` names a
  database made for the session.
- ``postgres_url`` (session): that URL.
- ``postgres_database`` (function): the URL of a fresh, empty database for one test,
  dropped after it, so store tests run in isolation.

The throwaway cluster is ``initdb`` into a temporary folder, listening on 127.0.0.1 only
at a free port, its unix socket in that folder, fsync off (nothing in it outlives the
session); stopped and removed at session end. PostgreSQL refuses to run as root, so as
root it runs as the ``postgres`` system user that Debian's package creates, owning the
folder. When no server can be had the tests skip, saying why and how to get one.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.support import Unavailable

if TYPE_CHECKING:
    import psycopg

#: A server to use instead of a throwaway cluster (its role needs CREATEDB for
#: ``postgres_database``).
ENV_URL = "HOOKMAP_TEST_DATABASE_URL"
#: Look for initdb and pg_ctl only in this folder (a folder without them shows the skip).
ENV_BINDIR = "HOOKMAP_TEST_PG_BINDIR"
#: Where Debian's packages put the server binaries, one folder per major version.
LIB_PATTERN = "/usr/lib/postgresql/*/bin"
SESSION_DATABASE = "hookmap_test"
_BINARIES = ("initdb", "pg_ctl")
_HOW = f"install them (apt-get install postgresql) or set {ENV_URL} to a server's URL"


# -- finding the binaries -------------------------------------------------------------


def find_bindir(
    path: str | None = None, lib_pattern: str = LIB_PATTERN, bindir: str | None = None
) -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``: *bindir* alone when given, else the
    first folder on *path* (default ``$PATH``) that holds both, else the newest
    *lib_pattern* folder (Debian keeps them off ``PATH``)."""
    if bindir is not None:
        if _holds_binaries(Path(bindir)):
            return Path(bindir)
        raise Unavailable(
            f"PostgreSQL server binaries ({', '.join(_BINARIES)}) not found in {bindir!r}"
            f" (set by {ENV_BINDIR}): {_HOW}"
        )
    initdb = shutil.which("initdb", path=path)
    if initdb is not None and _holds_binaries(Path(initdb).parent):
        return Path(initdb).parent
    for candidate in sorted(Path("/").glob(lib_pattern.lstrip("/")), key=_version, reverse=True):
        if _holds_binaries(candidate):
            return candidate
    raise Unavailable(
        f"PostgreSQL server binaries ({', '.join(_BINARIES)}) not found on PATH or in"
        f" {lib_pattern}: {_HOW}"
    )


def _holds_binaries(folder: Path) -> bool:
    return all(os.access(folder / name, os.X_OK) for name in _BINARIES)


def _version(bindir: Path) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15/bin`` -> (15,); a folder not named by a version sorts first."""
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))


# -- the throwaway cluster ------------------------------------------------------------


@dataclass
class Cluster:
    """A PostgreSQL cluster in a temporary folder, run by `start` and removed by `stop`."""

    bindir: Path
    base: Path
    owner: pwd.struct_passwd | None  # who runs it when we are root; None: ourselves
    port: int = 0

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @classmethod
    def create(cls, bindir: Path) -> Cluster:
        """initdb into a new temporary folder (owned by ``postgres`` when we are root)."""
        owner = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable(
                    "running as root, which PostgreSQL refuses, and there is no 'postgres'"
                    " system user to run it as (apt-get install postgresql creates one),"
                    f" or set {ENV_URL} to a server's URL"
                ) from None
        base = Path(tempfile.mkdtemp(prefix="hookmap-pg-"))
        cluster = cls(bindir, base, owner)
        try:
            if owner is not None:
                os.chown(base, owner.pw_uid, owner.pw_gid)
            cluster._run(
                "initdb",
                "--pgdata",
                str(cluster.data),
                "--username=postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",  # a test cluster: nothing to keep after a crash
            )
            settings = {
                "listen_addresses": "'127.0.0.1'",
                "unix_socket_directories": f"'{base}'",
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
            }
            with (cluster.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
                conf.write("\n# hookmap tests\n")
                conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        except BaseException:
            cluster.remove()
            raise
        return cluster

    def start(self, attempts: int = 3) -> None:
        """Start on a free loopback port; another port when the first was taken meanwhile."""
        for attempt in range(attempts):
            self.port = _free_port()
            try:
                self._run(
                    "pg_ctl",
                    "--pgdata",
                    str(self.data),
                    "--log",
                    str(self.log),
                    "--wait",
                    "--timeout=60",
                    "-o",
                    f"-p {self.port}",
                    "start",
                )
                return
            except Unavailable as why:
                if "already in use" not in str(why) or attempt == attempts - 1:
                    raise
                self.log.unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its folder."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "--pgdata", str(self.data), "-m", "fast", "--wait", "stop")
        finally:
            self.remove()

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        # PG* variables of the caller's shell (PGDATA, PGPORT, ...) must not steer our cluster.
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        owner = self.owner
        try:
            done = subprocess.run(
                [str(self.bindir / program), *args],
                cwd=self.base,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                user=owner.pw_uid if owner else None,
                group=owner.pw_gid if owner else None,
                extra_groups=[] if owner else None,
            )
        except (OSError, subprocess.SubprocessError) as error:
            raise Unavailable(f"PostgreSQL's {program} could not run: {error}") from error
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()
            if program == "pg_ctl" and self.log.exists():
                output += "\n" + self.log.read_text(encoding="utf-8", errors="replace")
            tail = " | ".join(output.splitlines()[-6:])
            what = f"{program} {args[-1]}" if program == "pg_ctl" else program
            who = f" as user {owner.pw_name!r}" if owner else ""
            raise Unavailable(f"PostgreSQL's {what} failed{who} (exit {done.returncode}): {tail}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- the server the tests get ---------------------------------------------------------


@dataclass(frozen=True)
class PostgresServer:
    """A server the tests may create databases on."""

    url: str  # the session's database
    admin_url: str  # where CREATE/DROP DATABASE are sent

    def url_for(self, database: str) -> str:
        """This server's URL for another database."""
        return with_database(self.admin_url, database)

    def create_database(self, name: str) -> str:
        """CREATE DATABASE *name* (empty: from template0) and return its URL."""
        from psycopg import sql

        with self._admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
            )
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE *name*, closing connections a test left open (FORCE, PG 13+)."""
        from psycopg import sql

        with self._admin() as conn:
            force = sql.SQL(" WITH (FORCE)") if conn.info.server_version >= 130000 else sql.SQL("")
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(name), force)
            )

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        import psycopg

        return psycopg.connect(self.admin_url, autocommit=True, connect_timeout=10)


def with_database(url: str, database: str) -> str:
    """*url* (a URL or a ``key=value`` connection string) naming *database* instead."""
    parts = urlsplit(url)
    if parts.scheme in ("postgres", "postgresql"):
        return urlunsplit(parts._replace(path="/" + database))
    from psycopg.conninfo import make_conninfo

    return make_conninfo(url, dbname=database)


def redacted(url: str) -> str:
    """*url* with its password hidden, for messages."""
    url = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", url)


def _require_psycopg() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError as error:
        raise Unavailable(
            f"psycopg is not installed ({error}): pip install -e '.[dev]' (or '.[postgresql]')"
        ) from None


def _connectable(url: str) -> None:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise Unavailable(f"cannot connect to {ENV_URL} ({redacted(url)}): {first}") from None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The PostgreSQL server for this session (see the module's docstring)."""
    given = os.environ.get(ENV_URL)
    try:
        _require_psycopg()
        if given:
            _connectable(given)
        else:
            cluster = Cluster.create(find_bindir(bindir=os.environ.get(ENV_BINDIR)))
    except Unavailable as why:
        pytest.skip(str(why))
    if given:
        yield PostgresServer(url=given, admin_url=given)
        return
    try:
        cluster.start()
        admin = PostgresServer(url="", admin_url=cluster.admin_url())
        server = PostgresServer(admin.create_database(SESSION_DATABASE), admin.admin_url)
    except BaseException as error:
        cluster.stop()
        if isinstance(error, Unavailable):
            pytest.skip(str(error))
        raise
    try:
        yield server
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """URL of a database made for this session, on the session's server."""
    return postgres_server.url


@pytest.fixture
def postgres_database(
    postgres_server: PostgresServer, request: pytest.FixtureRequest
) -> Iterator[str]:
    """URL of a fresh, empty database for this test alone, dropped after it."""
    import psycopg

    stem = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    name = f"t_{stem}_{secrets.token_hex(4)}"
    try:
        url = postgres_server.create_database(name)
    except psycopg.errors.InsufficientPrivilege as error:
        pytest.skip(f"the role in {ENV_URL} may not create databases ({error}): grant it CREATEDB")
    try:
        yield url
    finally:
        postgres_server.drop_database(name)
