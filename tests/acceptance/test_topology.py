"""The compose topology as processes: HAProxy (Debian's package) with deploy/haproxy.cfg in front of two
ferroboard nodes sharing one PostgreSQL database and a Redis of the test's own.

* A device connected through HAProxy is served (telemetry acknowledged and stored).
* A server-side RPC and a shared-attribute push reach a device on either node, whichever node takes the
  REST call.
* A node stopped mid-test (SIGTERM: readiness off, drain window, graceful stop) loses no acknowledged
  data, and its devices reconnect through HAProxy to the other node, where RPCs reach them again.

It needs PostgreSQL, so it runs in the PostgreSQL run of the suite (ACCEPTANCE_DATABASE_URL=postgres://...).
Without haproxy it is skipped, except under CI=true, where a missing haproxy fails it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

import acc_support as acc
import conftest

# HAProxy checks every 2 s and takes a node out after 2 failed checks: the drain window is longer.
DRAIN_MS = 5000
WAIT = 30.0


def _require_haproxy() -> str:
    found = shutil.which("haproxy") or (os.path.exists("/usr/sbin/haproxy") and "/usr/sbin/haproxy")
    if found:
        return str(found)
    if os.environ.get("CI") == "true":
        pytest.fail("haproxy is required under CI=true (apt-get install haproxy; scripts/test installs it)")
    pytest.skip("haproxy is not installed (apt-get install haproxy); the topology test needs it")


def _pg_admin_url() -> str:
    given = os.environ.get("ACCEPTANCE_DATABASE_URL", "").strip()
    if not given.startswith(("postgres://", "postgresql://")):
        pytest.skip(
            "the two nodes share one PostgreSQL database: this test runs in the PostgreSQL run of the suite "
            "(ACCEPTANCE_DATABASE_URL=postgres://...)"
        )
    if not shutil.which("psql"):
        pytest.fail("psql is required to create the topology's database (apt-get install postgresql-client)")
    return given


def _psql(admin: str, sql: str) -> None:
    done = subprocess.run(
        ["psql", "-w", "-q", "-v", "ON_ERROR_STOP=1", "-d", admin, "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"psql {sql!r}: {done.stderr.strip()}"


class Proc:
    """A child process with its output in a log file."""

    def __init__(self, name: str, args: List[str], env: Dict[str, str], workdir: Path):
        self.name = name
        self.log_path = workdir / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                args, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(cannot read {self.log_path}: {exc})"

    def stop(self, timeout: float = 20.0) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class Node:
    def __init__(self, proc: Proc, http_port: int, mqtt_port: int):
        self.proc = proc
        self.http_url = f"http://{acc.HOST}:{http_port}"
        self.http_port = http_port
        self.mqtt_port = mqtt_port

    def sessions(self) -> float:
        """The node's `ferroboard_mqtt_sessions` gauge."""
        text = requests.get(self.http_url + "/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith("ferroboard_mqtt_sessions ") or line.startswith("ferroboard_mqtt_sessions{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


class Topology:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.procs: List[Proc] = []
        self.nodes: List[Node] = []
        self.lb_mqtt = self.lb_http = self.lb_stats = 0

    def backend_status(self, backend: str) -> Dict[str, str]:
        """HAProxy's view of a backend's servers: {"node1": "UP", ...} (its CSV statistics)."""
        try:
            text = requests.get(f"http://{acc.HOST}:{self.lb_stats}/stats;csv", timeout=5).text
        except requests.RequestException as exc:
            raise AssertionError(f"HAProxy statistics: {exc}") from None
        lines = text.splitlines()
        header = lines[0].lstrip("# ").split(",")
        px, sv, st = header.index("pxname"), header.index("svname"), header.index("status")
        out = {}
        for line in lines[1:]:
            cols = line.split(",")
            if len(cols) > st and cols[px] == backend and cols[sv] not in ("FRONTEND", "BACKEND"):
                out[cols[sv]] = cols[st]
        return out

    def logs(self) -> str:
        return "\n".join(f"---- {p.name} ----\n{p.tail()}" for p in self.procs)


@pytest.fixture
def topology(request: pytest.FixtureRequest):
    haproxy = _require_haproxy()
    admin = _pg_admin_url()
    redis_server = shutil.which("redis-server")
    if not redis_server:
        pytest.fail("redis-server is required (apt-get install redis-server)")
    settings = request.config.stash[conftest.SETTINGS]
    workdir = Path(tempfile.mkdtemp(prefix="ferroboard-topology-"))
    rules = workdir / "rules"
    shutil.copytree(settings.rules_dir, rules)
    name = f"ferroboard_acc_topo_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    _psql(admin, f'CREATE DATABASE "{name}"')
    db_url = urlunsplit(urlsplit(admin)._replace(path="/" + name))
    topo = Topology(workdir)
    redis_port, topo.lb_mqtt, topo.lb_http, topo.lb_stats, *node_ports = conftest._free_ports(8)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("FERROBOARD_", "FB_"))}
    try:
        redis = Proc(
            "redis",
            [redis_server, "--port", str(redis_port), "--bind", acc.HOST, "--save", "", "--appendonly", "no"],
            base_env,
            workdir,
        )
        topo.procs.append(redis)
        jwt_secret = uuid.uuid4().hex * 3
        for index in range(2):
            http_port, mqtt_port = node_ports[2 * index], node_ports[2 * index + 1]
            env = dict(base_env)
            env.update(
                FERROBOARD_HTTP_ADDR=f"{acc.HOST}:{http_port}",
                FERROBOARD_MQTT_ADDR=f"{acc.HOST}:{mqtt_port}",
                FERROBOARD_DATABASE_URL=db_url,
                FERROBOARD_REDIS_URL=f"redis://{acc.HOST}:{redis_port}/",
                FERROBOARD_NODE_ID=f"node{index + 1}",
                FERROBOARD_RULES_DIR=str(rules),
                FERROBOARD_JWT_SECRET=jwt_secret,
                FERROBOARD_SYSADMIN_PASSWORD=acc.SYSADMIN_PASSWORD,
                FERROBOARD_ADMIN_PASSWORD=acc.TENANT_PASSWORD,
                FERROBOARD_SHUTDOWN_DRAIN_MS=str(DRAIN_MS),
            )
            env.setdefault("RUST_LOG", "info")
            proc = Proc(f"node{index + 1}", [str(settings.binary), "serve"], env, workdir)
            topo.procs.append(proc)
            topo.nodes.append(Node(proc, http_port, mqtt_port))
            # One after the other: the first applies the migrations and creates the accounts.
            acc.eventually(lambda: _ready(topo.nodes[-1]), timeout=60)
        lb_env = dict(base_env)
        lb_env.update(
            FB_LB_MQTT_BIND=f"{acc.HOST}:{topo.lb_mqtt}",
            FB_LB_HTTP_BIND=f"{acc.HOST}:{topo.lb_http}",
            FB_LB_STATS_BIND=f"{acc.HOST}:{topo.lb_stats}",
            FB_DNS=f"{acc.HOST}:53",
        )
        for index, node in enumerate(topo.nodes, start=1):
            lb_env[f"FB_NODE{index}_HOST"] = acc.HOST
            lb_env[f"FB_NODE{index}_MQTT_PORT"] = str(node.mqtt_port)
            lb_env[f"FB_NODE{index}_HTTP_PORT"] = str(node.http_port)
        cfg = settings.project_root / "deploy" / "haproxy.cfg"
        topo.procs.append(Proc("haproxy", [haproxy, "-db", "-f", str(cfg)], lb_env, workdir))

        def all_up():
            for backend in ("mqtt_nodes", "http_nodes"):
                status = topo.backend_status(backend)
                assert status == {"node1": "UP", "node2": "UP"}, f"{backend}: {status}"

        acc.eventually(all_up, timeout=WAIT)
        yield topo
    except BaseException:
        print(topo.logs())
        raise
    finally:
        for proc in reversed(topo.procs):
            proc.stop()
        _psql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(workdir, ignore_errors=True)


def _ready(node: Node) -> None:
    assert node.proc.proc.poll() is None, f"{node.proc.name} exited:\n{node.proc.tail()}"
    try:
        code = requests.get(node.http_url + "/api/health/ready", timeout=2).status_code
    except requests.RequestException as exc:
        raise AssertionError(f"{node.proc.name}: {exc}") from None
    assert code == 200, f"{node.proc.name} ready: {code}"


def _rest(base: str) -> acc.Rest:
    resp = acc.login(base, acc.TENANT_EMAIL, acc.TENANT_PASSWORD)
    assert resp.status_code == 200, f"login at {base}: HTTP {resp.status_code} {resp.text[:300]}"
    return acc.Rest(base, resp.json()["token"])


class Counting(acc.PahoDevice):
    """A paho device that counts its CONNACKs (paho reconnects on its own after a lost connection)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.connects = 0
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)

    def _on_connect(self, client, userdata, flags, reason, properties):
        with self._cv:
            self.connects += 1 if int(reason.value) == 0 else 0
        super()._on_connect(client, userdata, flags, reason, properties)
        if int(reason.value) == 0:
            # A new session has no subscriptions: subscribe again, as a device does.
            client.subscribe(acc.RPC_REQUEST_PREFIX + "+", 1)
            client.subscribe(acc.ATTRIBUTES_TOPIC, 1)


def _rpc_round_trip(rest: acc.Rest, device: acc.Device, client: Counting, tag: str) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        call = pool.submit(
            rest.post,
            f"/api/plugins/rpc/twoway/{device.id}",
            json={"method": "ping", "params": {"tag": tag}, "timeout": 10000},
            timeout=30,
        )
        request = client.wait_message(
            lambda m: m.topic.startswith(acc.RPC_REQUEST_PREFIX) and tag in m.payload.decode(),
            f"RPC {tag}",
            timeout=WAIT,
        )
        request_id = request.topic[len(acc.RPC_REQUEST_PREFIX):]
        client.publish(acc.RPC_RESPONSE_PREFIX + request_id, {"pong": tag}, qos=1)
        resp = call.result(timeout=30)
    assert resp.status_code == 200, f"RPC {tag} via {rest.base_url}: HTTP {resp.status_code} {resp.text[:300]}"
    assert resp.json() == {"pong": tag}


def _shared_push(rest: acc.Rest, device: acc.Device, client: Counting, tag: str) -> None:
    rest.save_attributes(device.id, "SHARED_SCOPE", {"tag": tag})
    got = client.wait_message(
        lambda m: m.topic == acc.ATTRIBUTES_TOPIC and tag in m.payload.decode(), f"shared push {tag}", timeout=WAIT
    )
    assert got.json() == {"tag": tag}


def test_two_nodes_behind_haproxy(topology: Topology, paho):
    topo = topology
    lb = _rest(f"http://{acc.HOST}:{topo.lb_http}")
    direct = [_rest(node.http_url) for node in topo.nodes]
    devices = [lb.create_device(f"topo-{uuid.uuid4().hex[:8]}") for _ in range(2)]

    # Through HAProxy, leastconn puts the two devices on different nodes.
    clients: List[Counting] = []
    for index, device in enumerate(devices):
        client = Counting(paho, topo.lb_mqtt, device.token, protocol="v311").connect(timeout=WAIT)
        clients.append(client)

        def placed(expected=index + 1):
            counts = [node.sessions() for node in topo.nodes]
            assert sum(counts) == expected, f"sessions per node {counts}, expected {expected} in all"
            assert max(counts) == 1, f"sessions per node {counts}: leastconn spreads them"
            return counts

        acc.eventually(placed, timeout=WAIT)
        client._wait(lambda: client.connects >= 1, "first CONNACK", WAIT)
    for client in clients:
        acc.eventually(lambda c=client: c.subscribe(acc.RPC_REQUEST_PREFIX + "+", 1) == [1], timeout=WAIT)
        assert client.subscribe(acc.ATTRIBUTES_TOPIC, 1) == [1]

    # An RPC and a shared-attribute push reach each device whichever node takes the REST call.
    for d, (device, client) in enumerate(zip(devices, clients)):
        for n, rest in enumerate(direct):
            _rpc_round_trip(rest, device, client, f"d{d}-via-node{n + 1}")
            _shared_push(rest, device, client, f"d{d}-push-node{n + 1}")

    # Telemetry from both devices, every message acknowledged before the next; then node 1 is
    # stopped mid-stream. A PUBLISH not acknowledged (the session ended under it) is re-sent by
    # paho after the reconnect; only what was acknowledged is checked.
    acked: Dict[int, List[int]] = {0: [], 1: []}
    stop_after = 15
    stopped_node = topo.nodes[0]
    survivor = topo.nodes[1]
    stopper: Optional[threading.Thread] = None
    exit_code: List[Optional[int]] = []
    deadline = time.monotonic() + 60
    n = 0
    while n < 40 and time.monotonic() < deadline:
        if n == stop_after:
            stopper = threading.Thread(target=lambda: exit_code.append(stopped_node.proc.stop()))
            stopper.start()
        for d, client in enumerate(clients):
            try:
                code = client.publish(acc.TELEMETRY_TOPIC, {"n": n}, qos=1, timeout=3)
                if code == 0:
                    acked[d].append(n)
            except AssertionError:
                pass  # not acknowledged: the session is being moved
        n += 1
    assert stopper is not None
    stopper.join(timeout=30)
    assert exit_code == [0], f"node1 exit code {exit_code}, the graceful stop exits 0:\n{stopped_node.proc.tail()}"

    # Both devices are now on the surviving node (the one of node 1 reconnected through HAProxy).
    acc.eventually(lambda: _assert_eq(survivor.sessions(), 2.0, "sessions on node2"), timeout=WAIT)
    assert topo.backend_status("mqtt_nodes")["node1"].startswith("DOWN")
    survivor_rest = direct[1]
    for d, (device, client) in enumerate(zip(devices, clients)):
        acc.eventually(lambda c=client: _assert_eq(bool(c.connects), True, "connected"), timeout=WAIT)
        _rpc_round_trip(lb, device, client, f"d{d}-after-failover")
        # Everything acknowledged is stored.
        history = survivor_rest.history(device.id, ["n"], 0, acc.now_ms() + 60_000)
        stored = {int(float(point["value"])) for point in history.get("n", [])}
        missing = sorted(set(acked[d]) - stored)
        assert not missing, f"device {d}: acknowledged but not stored: {missing} (acked {acked[d]})"
        assert len(acked[d]) >= stop_after, f"device {d} acknowledged only {acked[d]}"
    # The device of node 1 reconnected: more than one CONNACK.
    assert max(client.connects for client in clients) >= 2, [client.connects for client in clients]
    print(
        f"topology: published 0..{n - 1} per device, node1 stopped after {stop_after}; acknowledged "
        f"{[len(acked[d]) for d in (0, 1)]}, CONNACKs {[c.connects for c in clients]}, all acknowledged stored"
    )
    for client in clients:
        client.close()


def _assert_eq(got, expected, what: str):
    assert got == expected, f"{what}: {got!r}, expected {expected!r}"
    return got
