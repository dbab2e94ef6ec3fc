"""Session fixtures of the ferroboard acceptance suite.

One ferroboard server is started per test session, exactly as docs/configuration.md says an operator starts it
(`ferroboard serve`, configured only through FERROBOARD_* environment variables), on free loopback ports,
with a fresh database and a temporary copy of the project's rules/ directory. Tests reach it only through
real clients: tb-mqtt-client, paho-mqtt and requests (see acc_support.py).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

import acc_support as acc

LOG_TAIL_LINES = 200
STARTUP_TIMEOUT = float(os.environ.get("ACCEPTANCE_STARTUP_TIMEOUT", "60"))
STOP_TIMEOUT = 10.0  # docs/configuration.md: exit 0 within 10 seconds of SIGTERM
TEST_TIMEOUT = int(os.environ.get("ACCEPTANCE_TEST_TIMEOUT", "90"))
RESERVED_PORTS = {1883, 8883, 8080}  # the embedded defaults, which another server on the machine may hold


@dataclass(frozen=True)
class Settings:
    project_root: Path
    binary: Path
    rules_dir: Path
    upstream_paho: Path


SETTINGS = pytest.StashKey[Settings]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--project-root",
        default=None,
        help="ferroboard project root (default: $FERROBOARD_PROJECT_ROOT, else the current directory)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Check what the suite needs before anything is collected or started, with a plain message."""
    config = session.config
    root = Path(
        config.getoption("--project-root") or os.environ.get("FERROBOARD_PROJECT_ROOT") or os.getcwd()
    ).resolve()
    problems: List[str] = []

    bin_env = os.environ.get("FERROBOARD_BIN")
    if bin_env:
        binary = Path(bin_env).expanduser()
        binary = binary if binary.is_absolute() else Path.cwd() / binary
        origin = "FERROBOARD_BIN"
    else:
        binary = root / "target" / "release" / "ferroboard"
        origin = "default location"
    if not binary.is_file():
        problems.append(
            f"ferroboard binary not found: {binary} ({origin}). Build it with `cargo build --release` in the "
            f"project root, or set FERROBOARD_BIN to a built binary; tests/acceptance/run does the build."
        )
    elif not os.access(binary, os.X_OK):
        problems.append(f"ferroboard binary is not executable: {binary} ({origin})")

    rules = root / "rules"
    if not rules.is_dir():
        problems.append(
            f"no rules directory at {rules}: the server runs with a copy of the project's rules/ "
            f"(FERROBOARD_RULES_DIR). Is {root} the project root? (--project-root / FERROBOARD_PROJECT_ROOT)"
        )

    paho_dir = os.environ.get("ACCEPTANCE_UPSTREAM_PAHO", "")
    if not paho_dir or not (Path(paho_dir) / "paho" / "mqtt" / "client.py").is_file():
        problems.append(
            "upstream paho-mqtt not found (ACCEPTANCE_UPSTREAM_PAHO is unset or wrong). Start the suite with "
            "tests/acceptance/run, which installs it beside the test virtualenv."
        )

    if problems:
        raise pytest.UsageError("ferroboard acceptance suite cannot run:\n  - " + "\n  - ".join(problems))
    config.stash[SETTINGS] = Settings(root, binary.resolve(), rules, Path(paho_dir).resolve())


def _version(dist: str, path: Optional[Path] = None) -> str:
    try:
        if path is None:
            return importlib.metadata.version(dist)
        for found in importlib.metadata.distributions(path=[str(path)]):
            if found.metadata["Name"].lower() == dist:
                return found.version
    except importlib.metadata.PackageNotFoundError:
        pass
    return "not installed"


def pytest_report_header(config: pytest.Config) -> List[str]:
    settings = config.stash.get(SETTINGS, None)
    if settings is None:
        return []
    database = os.environ.get("ACCEPTANCE_DATABASE_URL") and "ACCEPTANCE_DATABASE_URL" or "SQLite in a temp dir"
    return [
        f"ferroboard: {settings.binary} (project {settings.project_root}); database: {database}",
        "clients: tb-mqtt-client {} (tb-paho-mqtt-client {}), paho-mqtt {}, requests {}".format(
            _version("tb-mqtt-client"),
            _version("tb-paho-mqtt-client"),
            _version("paho-mqtt", settings.upstream_paho),
            _version("requests"),
        ),
    ]


# --------------------------------------------------------------------------------------------------
# the server


class Server:
    def __init__(
        self,
        proc: subprocess.Popen,
        workdir: Path,
        http_port: int,
        mqtt_port: int,
        log_path: Path,
        mqtts_port: int,
        pki: acc.Pki,
    ):
        self.proc = proc
        self.workdir = workdir
        self.http_port = http_port
        self.mqtt_port = mqtt_port
        self.mqtts_port = mqtts_port
        self.pki = pki
        self.http_url = f"http://{acc.HOST}:{http_port}"
        self.log_path = log_path

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(cannot read {self.log_path}: {exc})"
        tail = text.splitlines()[-lines:]
        return "\n".join(tail) if tail else "(the log is empty)"

    def exited(self) -> Optional[int]:
        return self.proc.poll()

    def stop(self) -> Optional[str]:
        """SIGTERM, then wait; returns a problem description, or None when it exited 0 in time."""
        if self.proc.poll() is not None:
            return f"ferroboard had already exited (code {self.proc.returncode}) before the end of the session"
        self.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return f"ferroboard did not exit within {STOP_TIMEOUT:g} s of SIGTERM (killed)"
        if code != 0:
            return f"ferroboard exited with code {code} {time.monotonic() - started:.1f} s after SIGTERM, not 0"
        return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


_SERVER: Optional[Server] = None


def _free_ports(count: int) -> List[int]:
    """Ports the OS hands out for loopback right now, distinct, never one of the embedded defaults."""
    held: List[socket.socket] = []
    ports: List[int] = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((acc.HOST, 0))
            held.append(sock)
            port = sock.getsockname()[1]
            if port not in RESERVED_PORTS and port not in ports:
                ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def _say(config: pytest.Config, text: str) -> None:
    """Print a line on the terminal even while pytest captures output."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        sys.stderr.write(text + "\n")
        return
    with capture.global_and_fixture_disabled():
        reporter.ensure_newline()
        reporter.line(text, yellow=True)


def _database(config: pytest.Config, workdir: Path) -> Tuple[str, str, Callable[[], None]]:
    """(FERROBOARD_DATABASE_URL, description, cleanup)."""
    given = os.environ.get("ACCEPTANCE_DATABASE_URL", "").strip()
    if not given:
        return f"sqlite://{workdir / 'ferroboard.db'}", "SQLite file in the session's temp dir", lambda: None
    if given.startswith(("postgres://", "postgresql://")) and shutil.which("psql"):
        name = f"ferroboard_acc_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        create = subprocess.run(
            ["psql", "-w", "-q", "-v", "ON_ERROR_STOP=1", "-d", given, "-c", f'CREATE DATABASE "{name}"'],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if create.returncode == 0:
            url = urlunsplit(urlsplit(given)._replace(path="/" + name))

            def drop() -> None:
                subprocess.run(
                    ["psql", "-w", "-q", "-d", given, "-c", f'DROP DATABASE IF EXISTS "{name}"'],
                    capture_output=True,
                    timeout=60,
                )

            return url, f"fresh PostgreSQL database {name} (dropped at the end)", drop
        _say(
            config,
            f"acceptance: could not create a fresh database with psql ({create.stderr.strip()}); "
            "using ACCEPTANCE_DATABASE_URL as given, which must then be an empty database",
        )
    return given, "ACCEPTANCE_DATABASE_URL as given (must be empty)", lambda: None


def _start_server(config: pytest.Config, settings: Settings) -> Tuple[Server, Callable[[], None]]:
    workdir = Path(tempfile.mkdtemp(prefix="ferroboard-acceptance-"))
    rules = workdir / "rules"
    shutil.copytree(settings.rules_dir, rules)
    db_url, db_description, db_cleanup = _database(config, workdir)
    http_port, mqtt_port, mqtts_port = _free_ports(3)
    pki = acc.Pki(workdir / "pki")

    # Only what the contract names, nothing inherited from the caller's FERROBOARD_* settings.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERROBOARD_")}
    env.update(
        FERROBOARD_HTTP_ADDR=f"{acc.HOST}:{http_port}",
        FERROBOARD_MQTT_ADDR=f"{acc.HOST}:{mqtt_port}",
        FERROBOARD_MQTTS_ADDR=f"{acc.HOST}:{mqtts_port}",
        FERROBOARD_TLS_CERT=str(pki.server_cert),
        FERROBOARD_TLS_KEY=str(pki.server_key),
        FERROBOARD_DATABASE_URL=db_url,
        FERROBOARD_RULES_DIR=str(rules),
        FERROBOARD_SYSADMIN_PASSWORD=acc.SYSADMIN_PASSWORD,
        FERROBOARD_ADMIN_PASSWORD=acc.TENANT_PASSWORD,
    )
    env.setdefault("RUST_LOG", "info")

    log_path = workdir / "ferroboard.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(settings.binary), "serve"],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(proc, workdir, http_port, mqtt_port, log_path, mqtts_port, pki)

    probe = requests.Session()
    probe.trust_env = False
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last = "no answer yet"
    problem = None
    while True:
        code = proc.poll()
        if code is not None:
            problem = f"ferroboard exited with code {code} before GET /api/health answered 200"
            break
        try:
            resp = probe.get(server.http_url + "/api/health", timeout=2)
            if resp.status_code == 200:
                break
            last = f"HTTP {resp.status_code} {resp.text[:300]!r}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        if time.monotonic() > deadline:
            problem = f"GET /api/health did not answer 200 within {STARTUP_TIMEOUT:g} s (last: {last})"
            break
        time.sleep(0.1)

    if problem:
        server.kill()
        db_cleanup()
        _say(
            config,
            f"ferroboard did not start: {problem}\n  binary: {settings.binary}\n  database: {db_description}\n"
            f"  log: {log_path}\n---- ferroboard log, last {LOG_TAIL_LINES} lines ----\n{server.log_tail()}\n"
            f"---- end of ferroboard log ----",
        )
        pytest.exit(f"ferroboard did not start: {problem}", returncode=1)
    return server, db_cleanup


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest):
    """The ferroboard server of this test session."""
    global _SERVER
    server, db_cleanup = _start_server(request.config, request.config.stash[SETTINGS])
    _SERVER = server
    try:
        yield server
    finally:
        problem = server.stop()
        db_cleanup()
        keep = problem or request.session.testsfailed
        if not keep:
            shutil.rmtree(server.workdir, ignore_errors=True)
        if problem:  # reported as an error of the last test, with the log tail (pytest_runtest_makereport)
            pytest.fail(f"{problem} (docs/configuration.md, Signals)", pytrace=False)


@pytest.fixture(autouse=True)
def _server_alive(server: Server):
    """Fail a test, with the log tail, when the server is found dead before or after it."""
    code = server.exited()
    if code is not None:
        pytest.fail(f"ferroboard is not running (exited with code {code})", pytrace=False)
    yield
    code = server.exited()
    if code is not None:
        pytest.fail(f"ferroboard exited with code {code} during this test", pytrace=False)


@pytest.fixture(autouse=True)
def _test_deadline():
    """Bound every test, so that a client stuck waiting can never hang the run."""

    def expired(_signum, _frame):
        raise TimeoutError(f"test took longer than {TEST_TIMEOUT} s (ACCEPTANCE_TEST_TIMEOUT)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed and _SERVER is not None:
        state = "running" if _SERVER.exited() is None else f"exited with code {_SERVER.exited()}"
        report.sections.append(
            (f"ferroboard log, last {LOG_TAIL_LINES} lines (server {state}; {_SERVER.log_path})", _SERVER.log_tail())
        )
    return report


# --------------------------------------------------------------------------------------------------
# client fixtures


@pytest.fixture(scope="session")
def http_url(server: Server) -> str:
    return server.http_url


@pytest.fixture(scope="session")
def mqtt_port(server: Server) -> int:
    return server.mqtt_port


@pytest.fixture(scope="session")
def mqtts_port(server: Server) -> int:
    return server.mqtts_port


@pytest.fixture(scope="session")
def pki(server: Server) -> acc.Pki:
    """The CA that signed the server's TLS certificate; it issues device certificates too."""
    return server.pki


@pytest.fixture(scope="session")
def rest(server: Server) -> acc.Rest:
    """A REST session logged in as the default tenant administrator (X-Authorization: Bearer)."""
    resp = acc.login(server.http_url, acc.TENANT_EMAIL, acc.TENANT_PASSWORD)
    assert resp.status_code == 200, f"tenant administrator login failed: HTTP {resp.status_code} {resp.text[:500]}"
    token = resp.json().get("token")
    assert isinstance(token, str) and token, f"no token in the login answer: {resp.text[:500]}"
    return acc.Rest(server.http_url, token)


@pytest.fixture(scope="session")
def paho(request: pytest.FixtureRequest):
    """Upstream paho-mqtt, imported from its own directory."""
    return acc.load_upstream_paho(str(request.config.stash[SETTINGS].upstream_paho))


@pytest.fixture
def new_device(rest: acc.Rest, request: pytest.FixtureRequest) -> Callable[[], acc.Device]:
    """Factory: create a device with a unique name (POST /api/device); returns id, name, access token."""
    label = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:48]

    def create() -> acc.Device:
        return rest.create_device(f"acc-{label}-{uuid.uuid4().hex[:8]}")

    return create


@pytest.fixture
def sdk_device(mqtt_port: int, new_device):
    """Factory: connect a TBDeviceMqttClient for a device and wait until its subscriptions are acknowledged."""
    opened: List[acc.SdkDevice] = []

    def connect(device: acc.Device, **options) -> acc.SdkDevice:
        client = acc.SdkDevice(mqtt_port, device.token, **options)
        opened.append(client)
        return client.connect()

    yield connect
    for client in reversed(opened):
        client.close()


@pytest.fixture
def paho_device(paho, mqtt_port: int, new_device):
    """Factory: connect an upstream paho-mqtt client (protocol "v311" or "v5") with a device's token."""
    opened: List[acc.PahoDevice] = []

    def connect(device: acc.Device, protocol: str = "v5", password: Optional[str] = None) -> acc.PahoDevice:
        client = acc.PahoDevice(paho, mqtt_port, device.token, password=password, protocol=protocol)
        opened.append(client)
        return client.connect()

    yield connect
    for client in reversed(opened):
        client.close()
