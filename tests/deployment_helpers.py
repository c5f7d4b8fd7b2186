"""Real programs for the deployment test and the cluster benchmark.

redis-server, PostgreSQL, uWSGI (with the [uwsgi] section of
shetphone.ini.example as it is), the media bridge and nginx (with
nginx.conf.example rendered for loopback). Each listens on 127.0.0.1 on a port
or socket chosen at run time, logs to its own file, is waited for by polling
(never a fixed sleep) and is stopped by whoever started it, even after a
failure. A missing program fails loudly: `make test` installs them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
UWSGI = Path(sys.executable).with_name("uwsgi")  # the running venv's: make test-python may use another
IS_ROOT = os.geteuid() == 0
# nginx's workers and the app's socket group when we are root, as on a Debian host.
WEB_USER = "www-data"
STARTUP_SECONDS = 90  # generous: two slow cores start five servers at once
ROUTE_COOKIE = "shetphone_route"
UPSTREAM_HEADER = "X-Shetphone-Upstream"  # added by the test's nginx only: which process answered


class ProgramMissing(RuntimeError):
    pass


def require(program: str) -> str:
    found = shutil.which(program) or (program if os.path.isfile(program) else None)
    if not found:
        raise ProgramMissing(f"{program} is missing: run scripts/system-packages.sh (make test does)")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(check: Callable[[], bool], what: str, timeout: float = STARTUP_SECONDS,
               process: Process | None = None) -> None:
    """Poll ``check`` until it is true; fail with the process's log if it died or time ran out."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and not process.running:
            raise RuntimeError(f"{process.name} exited ({process.popen.returncode}) before {what}:\n{process.log()}")
        try:
            if check():
                return
        except (OSError, requests.RequestException):
            pass
        if time.monotonic() > deadline:
            log = process.log() if process is not None else ""
            raise RuntimeError(f"timed out waiting for {what}\n{log}")
        time.sleep(0.1)


def loopback_session(cert: Path) -> requests.Session:
    """requests for our own servers: the test's certificate, and no proxy or CA bundle from the environment
    (with trust_env, REQUESTS_CA_BUNDLE would override ``verify``)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(cert)
    return session


def shared_directory(prefix: str) -> Path:
    """A temporary directory nginx's workers (www-data) may enter: sockets, static files, nginx's own."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


# --------------------------------------------------------------------------- processes


@dataclass
class Process:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path = ROOT
    popen: subprocess.Popen | None = None

    def start(self) -> Process:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-6000:]
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if not self.running:
            return
        self.popen.send_signal(sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)  # its own session: uWSGI's workers too
            self.popen.wait()


class Redis:
    def __init__(self, workdir: Path):
        self.binary = require("redis-server")
        self.port = free_port()
        self.workdir = workdir
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir), "--protected-mode", "yes"]
        self.process = Process("redis-server", argv, self.workdir / "redis.log").start()
        wait_until(self.ping, "redis-server to answer PING", process=self.process)

    def ping(self) -> bool:
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=2)
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False
        finally:
            client.close()

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def server_processes(parent: int) -> list[int]:
    """``parent`` and its children, from /proc."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[1]) == parent:
            children.append(int(stat.parent.name))
    return [parent, *children]


class Postgres:
    """A cluster made for the test (initdb), run as the postgres user when we are root."""

    def __init__(self) -> None:
        binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not binaries:
            raise ProgramMissing("PostgreSQL's server is missing (/usr/lib/postgresql/*/bin): "
                                 "apt-get install postgresql")
        self.bin = Path(binaries[-1]).parent
        # Its own directory outside pytest's (mode 0700, root's): the postgres user must enter it.
        self.root = Path(tempfile.mkdtemp(prefix="shetphone-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        if IS_ROOT:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if IS_ROOT:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed: {result.stdout}{result.stderr}")

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-o", options, "-w", "-t", "120",
                  "start")

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def processes(self) -> list[int]:
        """The postmaster and every process it started (backends, checkpointer, ...)."""
        return server_processes(self.postmaster_pid)

    def pause(self, pids: list[int] | None = None) -> list[int]:
        """SIGSTOP the server (or just ``pids``): it keeps its sockets but answers nothing, not even timeouts."""
        pids = self.processes() if pids is None else pids
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        return pids

    def resume(self, pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


# --------------------------------------------------------------------------- configuration


def uwsgi_section() -> str:
    """The [uwsgi] section of shetphone.ini.example, exactly as shipped."""
    text = (ROOT / "shetphone.ini.example").read_text(encoding="utf-8")
    start = text.index("[uwsgi]")
    return text[start : text.index("\n[", start) + 1]


def team_sections(public_url: str, database: str, message_queue: str, bridge_port: int) -> str:
    """The other tests' team (conftest.INI) on this cluster's database, queue and bridge port, behind one proxy."""
    from conftest import INI

    text = INI[INI.index("[shetphone]") :].format(
        public_url=public_url, extra=f"message_queue = {message_queue}\nproxy_hops = 1\n"
    )
    text = replace_once(text, "database = shetphone.sqlite3", f"database = {database}", "conftest.INI")
    return replace_once(text, "listen = 127.0.0.1:5001", f"listen = 127.0.0.1:{bridge_port}", "conftest.INI")


@dataclass
class Team:
    """One team's files and secrets: every process of a cluster reads the same ones."""

    root: Path
    public_url: str
    database: str
    message_queue: str
    bridge_port: int
    environ: dict[str, str] = field(default_factory=dict)

    @property
    def ini(self) -> Path:
        return self.root / "shetphone.ini"

    @property
    def auth_token(self) -> str:
        return self.environ["TWILIO_AUTH_TOKEN"]

    def write(self) -> Team:
        from conftest import PASSWORDS, PRESETS, htpasswd_line, twilio_environment  # the other tests' team

        self.root.mkdir(parents=True, exist_ok=True)
        sections = team_sections(self.public_url, self.database, self.message_queue, self.bridge_port)
        self.ini.write_text(uwsgi_section() + "\n" + sections, encoding="utf-8")
        (self.root / ".htpasswd").write_text("".join(htpasswd_line(n, p) for n, p in PASSWORDS.items()))
        (self.root / "presets.csv").write_text(PRESETS)
        self.environ = {
            **twilio_environment(),
            "SHETPHONE_CONFIG": str(self.ini),
            # Every process must sign sessions with the same key.
            "SHETPHONE_SECRET_KEY": secrets.token_hex(16),
        }
        return self

    def sign(self, path: str, params: dict[str, str]) -> str:
        return RequestValidator(self.auth_token).compute_signature(self.public_url + path, params)


class UwsgiInstance:
    """``uwsgi --ini shetphone.ini`` on its own unix socket, as shetphone@.service runs it."""

    def __init__(self, name: str, team: Team, socket_dir: Path, logs: Path):
        self.name = name
        self.team = team
        self.socket = socket_dir / f"{name}.sock"
        env = {**os.environ, **team.environ, "SHETPHONE_LISTEN": str(self.socket), "PYTHONUNBUFFERED": "1"}
        argv = [str(require(str(UWSGI))), "--ini", str(team.ini)]
        if IS_ROOT:
            argv += ["--chown-socket", f"root:{WEB_USER}"]  # as the unit does with shetphone:www-data
        self.process = Process(f"uwsgi {name}", argv, logs / f"uwsgi-{name}.log", env=env)

    @property
    def upstream(self) -> str:
        """How nginx names this process in $upstream_addr."""
        return f"unix:{self.socket}"

    def start(self) -> UwsgiInstance:
        self.process.start()
        return self

    def wait_ready(self) -> None:
        wait_until(lambda: unix_http_status(self.socket, "/healthz") == 200,
                   f"uWSGI {self.name} to answer /healthz", process=self.process)

    def stop(self) -> None:
        self.process.stop()


def unix_http_status(path: Path, target: str) -> int:
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(5)
        conn.connect(str(path))
        conn.sendall(f"GET {target} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        head = conn.recv(64).decode("latin-1")
    return int(head.split()[1])


class Bridge:
    def __init__(self, team: Team, logs: Path):
        env = {**os.environ, **team.environ, "PYTHONUNBUFFERED": "1"}
        self.port = team.bridge_port
        # Its used stream auth values in the team's directory, not the checkout's instance/.
        argv = [sys.executable, "-m", "shetphone.bridge", "--state", str(team.root / "bridge-state")]
        self.process = Process("bridge", argv, logs / "bridge.log", env=env)

    def start(self) -> Bridge:
        self.process.start()
        return self

    def wait_ready(self) -> None:
        def accepting() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True

        wait_until(accepting, "the bridge to listen", process=self.process)

    def stop(self) -> None:
        self.process.stop()


# --------------------------------------------------------------------------- TLS and nginx


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, which clients are told to trust."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [require("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def replace_once(text: str, old: str, new: str, source: str = "nginx.conf.example") -> str:
    """Render an example: every edit must find its line, or the example changed under the test."""
    count = text.count(old)
    if count != 1:
        raise AssertionError(f"{source}: expected {old!r} once, found it {count} times")
    return text.replace(old, new)


PREFIX_BEGIN = "# --- Under a path prefix"
PREFIX_END = "# --- end of the path prefix form"


def prefix_form(example: str) -> str:
    """The commented path prefix form of the example, uncommented (prose stays comment)."""
    block = example[example.index(PREFIX_BEGIN) : example.index(PREFIX_END)]
    lines = []
    for line in block.splitlines():
        if line.startswith("#    ") or line == "#":
            lines.append(line[1:])
    return "\n".join(lines) + "\n"


@dataclass
class NginxSite:
    """What the test's nginx serves: the example's main server, and the prefix form on a second port."""

    https_port: int
    http_port: int
    app_sockets: list[Path]
    bridge_port: int
    static_root: Path
    cert: Path
    key: Path
    prefix_port: int | None = None
    prefix_socket: Path | None = None


def render_site(site: NginxSite) -> str:
    example = (ROOT / "nginx.conf.example").read_text(encoding="utf-8")
    main = example[: example.index(PREFIX_BEGIN)]
    main = replace_once(main, "    listen 80;\n    listen [::]:80;\n", f"    listen 127.0.0.1:{site.http_port};\n")
    main = replace_once(main, "    listen 443 ssl http2;\n    listen [::]:443 ssl http2;\n",
                        f"    listen 127.0.0.1:{site.https_port} ssl http2;\n")
    main = replace_once(main, "/etc/letsencrypt/live/phone.example.org/fullchain.pem", str(site.cert))
    main = replace_once(main, "/etc/letsencrypt/live/phone.example.org/privkey.pem", str(site.key))
    main = replace_once(main, "server unix:/run/shetphone-1/app.sock", f"server unix:{site.app_sockets[0]}")
    main = replace_once(main, "server unix:/run/shetphone-2/app.sock", f"server unix:{site.app_sockets[1]}")
    main = replace_once(main, "server 127.0.0.1:5001;", f"server 127.0.0.1:{site.bridge_port};")
    main = replace_once(main, "alias /srv/shetphone/static/dist/assets/;", f"alias {site.static_root}/assets/;")
    # Test only: say which process answered, so the test knows where its requests went.
    main = replace_once(main, "    add_header Set-Cookie $shetphone_route_cookie always;\n",
                        "    add_header Set-Cookie $shetphone_route_cookie always;\n"
                        f"    add_header {UPSTREAM_HEADER} $upstream_addr always;\n")
    if site.prefix_port is None:
        return main
    prefixed = prefix_form(example)
    prefixed = prefixed.replace("/srv/shetphone/static/dist/assets/", f"{site.static_root}/assets/")
    prefixed = replace_once(prefixed, "proxy_pass http://shetphone_app/;", "proxy_pass http://shetphone_prefixed/;")
    prefixed = replace_once(prefixed, "proxy_pass http://shetphone_app/login;",
                            "proxy_pass http://shetphone_prefixed/login;")
    return main + f"""
upstream shetphone_prefixed {{
    server unix:{site.prefix_socket};
}}

server {{
    listen 127.0.0.1:{site.prefix_port} ssl;
    ssl_certificate {site.cert};
    ssl_certificate_key {site.key};
{prefixed}
}}
"""


def render_nginx_main(prefix: Path, site_file: Path) -> str:
    user = f"user {WEB_USER} {WEB_USER};\n" if IS_ROOT else ""
    temp = "\n".join(f"    {kind}_temp_path {prefix / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                           "scgi"))
    return f"""{user}daemon off;
master_process on;
worker_processes 1;
pid {prefix / 'nginx.pid'};
error_log {prefix / 'error.log'} info;
events {{
    worker_connections 1024;
}}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {prefix / 'access.log'};
{temp}
    include {site_file};
}}
"""


class Nginx:
    def __init__(self, site: NginxSite, prefix: Path):
        self.binary = require("nginx")
        self.site = site
        self.prefix = prefix
        site_file = prefix / "shetphone-site.conf"
        site_file.write_text(render_site(site), encoding="utf-8")
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(render_nginx_main(prefix, site_file), encoding="utf-8")
        self.process = Process("nginx", [self.binary, "-p", str(prefix), "-c", str(self.conf), "-e",
                                         str(prefix / "error.log")], prefix / "nginx.out")

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.site.https_port}"

    def check(self) -> None:
        result = subprocess.run([self.binary, "-t", "-p", str(self.prefix), "-c", str(self.conf), "-e",
                                 str(self.prefix / "error.log")], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"nginx -t refused the rendered configuration:\n{result.stderr}")

    def start(self) -> Nginx:
        self.check()
        self.process.start()
        probe = loopback_session(self.site.cert)
        wait_until(lambda: probe.get(self.url + "/healthz", timeout=5).ok, "nginx to proxy /healthz",
                   process=self.process)
        probe.close()
        return self

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""

    def stop(self) -> None:
        self.process.stop()


# --------------------------------------------------------------------------- the whole cluster


PREFIX = "/shetphone"


class Cluster:
    """redis-server, PostgreSQL, app instances A and B, the bridge, nginx in front; and, for the
    path prefix form, instance C (SQLite, no Redis) behind nginx's second port under /shetphone/.

    ``instances=1, shared=False`` is the baseline: one process, SQLite, no Redis.
    """

    def __init__(self, base: Path, *, instances: int = 2, shared: bool = True, with_prefix: bool = True):
        self.base = base
        self.shared = shared
        self.instance_count = instances
        self.with_prefix = with_prefix
        self.logs = base / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.visible = shared_directory("shetphone-deploy-")  # sockets, static files, nginx: www-data enters
        self.redis: Redis | None = None
        self.postgres: Postgres | None = None
        self.apps: list[UwsgiInstance] = []
        self.prefixed: UwsgiInstance | None = None
        self.bridge: Bridge | None = None
        self.nginx: Nginx | None = None
        self.https_port = free_port()
        self.prefix_port = free_port() if with_prefix else None
        self.database_name = "shetphone"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def prefix_url(self) -> str:
        return f"https://127.0.0.1:{self.prefix_port}{PREFIX}"

    def start(self) -> Cluster:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        message_queue = database = ""
        if self.shared:
            self.redis = Redis(self._dir("redis"))
            self.redis.start()
            self.postgres = Postgres()
            self.postgres.start()
            database = self.postgres.create_database(self.database_name)
            message_queue = self.redis.url
        sockets = self.visible / "sockets"
        sockets.mkdir(mode=0o755)
        static = self.visible / "static"
        (static / "assets").mkdir(parents=True, mode=0o755)
        (static / "assets" / "probe-3f9a1c.js").write_text("export const probe = 1;\n")
        (static / "assets" / "probe-3f9a1c.js").chmod(0o644)
        cert, key = make_certificate(self._dir("tls"))
        self.cert = cert

        self.team = Team(self.base / "team", self.url, database or "instance/shetphone.sqlite3", message_queue,
                         free_port()).write()
        names = ["a", "b"][: self.instance_count]
        self.apps = [UwsgiInstance(name, self.team, sockets, self.logs).start() for name in names]
        self.bridge = Bridge(self.team, self.logs).start()
        if self.with_prefix:
            self.prefix_team = Team(self.base / "team-prefixed", self.prefix_url, "instance/shetphone.sqlite3", "",
                                    free_port()).write()
            self.prefixed = UwsgiInstance("c", self.prefix_team, sockets, self.logs).start()
        for app in self.apps:
            app.wait_ready()
        if self.prefixed is not None:
            self.prefixed.wait_ready()
        self.bridge.wait_ready()

        app_sockets = [app.socket for app in self.apps]
        site = NginxSite(
            https_port=self.https_port, http_port=free_port(), app_sockets=(app_sockets * 2)[:2],
            bridge_port=self.team.bridge_port, static_root=static, cert=cert, key=key,
            prefix_port=self.prefix_port, prefix_socket=self.prefixed.socket if self.prefixed else None,
        )
        nginx_prefix = self.visible / "nginx"
        nginx_prefix.mkdir(mode=0o755)
        self.nginx = Nginx(site, nginx_prefix).start()

    def _dir(self, name: str) -> Path:
        path = self.base / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def session(self, instance: UwsgiInstance | None = None) -> requests.Session:
        """A browser: trusts the test's certificate; pinned to ``instance`` by nginx's route cookie."""
        session = loopback_session(self.cert)
        if instance is not None:
            session.cookies.set(ROUTE_COOKIE, self.route_to(instance), domain="127.0.0.1", path="/")
        return session

    def route_to(self, instance: UwsgiInstance) -> str:
        """A route cookie value nginx's consistent hash sends to ``instance`` (found by asking nginx)."""
        cache = self.__dict__.setdefault("_routes", {})
        if instance.name in cache:
            return cache[instance.name]
        for attempt in range(1000):
            value = f"route-{attempt}"
            response = loopback_session(self.cert).get(self.url + "/healthz", cookies={ROUTE_COOKIE: value},
                                                       timeout=10)
            if response.headers.get(UPSTREAM_HEADER) == instance.upstream:
                cache[instance.name] = value
                return value
        raise AssertionError(f"no route cookie leads to {instance.name}")

    def post_signed(self, path: str, params: dict[str, str], instance: UwsgiInstance | None = None,
                    team: Team | None = None, base_url: str | None = None) -> requests.Response:
        """POST as Twilio does, through nginx, signed over public_url + path."""
        team = team or self.team
        headers = {"X-Twilio-Signature": team.sign(path, params)}
        return self.session(instance).post((base_url or team.public_url) + path, data=params, headers=headers,
                                           timeout=30, allow_redirects=False)

    def logs_text(self) -> str:
        parts = []
        for process in [*(app.process for app in self.apps), *( [self.prefixed.process] if self.prefixed else []),
                        *([self.bridge.process] if self.bridge else [])]:
            parts.append(f"----- {process.name}\n{process.log()}")
        if self.nginx is not None:
            parts.append(f"----- nginx error.log\n{self.nginx.error_log()}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Everything started, in reverse order; each stop tried even if another fails."""
        stoppers = [self.nginx, self.bridge, self.prefixed, *reversed(self.apps), self.redis]
        stops = [thing.stop for thing in stoppers if thing is not None]
        if self.postgres is not None:
            stops.append(self.postgres.destroy)
        errors = []
        for stop in stops:
            try:
                stop()
            except Exception as error:  # keep stopping the others
                errors.append(error)
        for kept in ("error.log", "access.log"):  # nginx's logs outlive its directory
            if (self.visible / "nginx" / kept).exists():
                shutil.copy(self.visible / "nginx" / kept, self.logs / f"nginx-{kept}")
        shutil.rmtree(self.visible, ignore_errors=True)
        if errors:
            raise errors[0]
