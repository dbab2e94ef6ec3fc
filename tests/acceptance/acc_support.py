"""Helpers for the ferroboard acceptance suite.

Bounded waiting, a small REST client built on `requests`, and thin wrappers that drive the two real
MQTT clients the suite uses:

* `SdkDevice`  - ThingsBoard's Python SDK (`tb-mqtt-client`, class TBDeviceMqttClient). It connects with
  MQTT 5 through its bundled paho fork (`tb-paho-mqtt-client`), which installs itself as the `paho` package.
* `PahoDevice` - upstream `paho-mqtt` 2.x, MQTT 3.1.1 or MQTT 5. Because upstream paho-mqtt also installs
  the `paho` package, `tests/acceptance/run` puts it in its own directory (ACCEPTANCE_UPSTREAM_PAHO) and
  `load_upstream_paho` imports it there without disturbing the SDK's copy.

Nothing here changes either client; the wrappers only call their public API and collect callbacks.
"""

from __future__ import annotations

import base64
import email.utils
import importlib
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import types
import uuid
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, List, Optional, Tuple

import requests

HOST = "127.0.0.1"

# Default bound for every wait on the server (seconds). Generous for a 2-core machine; passing tests
# return as soon as the condition holds.
WAIT = float(os.environ.get("ACCEPTANCE_WAIT_SECONDS", "10"))

# Accounts the server creates on its first start (docs/configuration.md). The suite sets the passwords.
SYSADMIN_EMAIL = "sysadmin@thingsboard.org"
TENANT_EMAIL = "tenant@thingsboard.org"
SYSADMIN_PASSWORD = "acceptance-Sysadmin-7f3c"
TENANT_PASSWORD = "acceptance-Tenant-2b9d"

TELEMETRY_TOPIC = "v1/devices/me/telemetry"
ATTRIBUTES_TOPIC = "v1/devices/me/attributes"
RPC_REQUEST_PREFIX = "v1/devices/me/rpc/request/"
RPC_RESPONSE_PREFIX = "v1/devices/me/rpc/response/"


# --------------------------------------------------------------------------------------------------
# waiting


def now_ms() -> int:
    return int(time.time() * 1000)


def eventually(check: Callable[[], Any], timeout: float = WAIT, interval: float = 0.05) -> Any:
    """Call `check` until it returns without raising AssertionError, at most `timeout` seconds.

    Returns what `check` returned; at the deadline the last AssertionError is raised again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError as exc:
            if time.monotonic() >= deadline:
                raise AssertionError(f"still not true after {timeout:g} s: {exc}") from None
        time.sleep(interval)


def next_item(q: "queue.Queue[Any]", what: str, timeout: float = WAIT) -> Any:
    """The next item of a queue filled by a client callback, waiting at most `timeout` seconds."""
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no {what} within {timeout:g} s") from None


# --------------------------------------------------------------------------------------------------
# REST


@dataclass(frozen=True)
class Device:
    id: str
    name: str
    token: str


def _describe(resp: requests.Response) -> str:
    return f"{resp.request.method} {resp.url} -> HTTP {resp.status_code}: {resp.text[:800]!r}"


class Rest:
    """A `requests` session against ferroboard's ThingsBoard-compatible REST API."""

    def __init__(self, base_url: str, token: Optional[str] = None, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # never send loopback traffic through a proxy from the environment
        if token:
            self.session.headers["X-Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return self.session.request(method, self.base_url + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    @staticmethod
    def ok(resp: requests.Response) -> Any:
        """Assert HTTP 200 and return the JSON body (None for an empty body)."""
        assert resp.status_code == 200, _describe(resp)
        if not resp.content.strip():
            return None
        try:
            return resp.json()
        except ValueError:
            raise AssertionError(f"body is not JSON: {_describe(resp)}") from None

    # devices ------------------------------------------------------------------------------------

    def create_device(self, name: str) -> Device:
        created = self.ok(self.post("/api/device", json={"name": name}))
        assert isinstance(created, dict) and isinstance(created.get("id"), dict), f"unexpected Device JSON: {created}"
        assert created["id"].get("entityType") == "DEVICE", f"unexpected device id: {created['id']}"
        assert created.get("name") == name, f"unexpected Device JSON: {created}"
        device_id = created["id"]["id"]
        creds = self.ok(self.get(f"/api/device/{device_id}/credentials"))
        assert creds.get("credentialsType") == "ACCESS_TOKEN", f"unexpected DeviceCredentials: {creds}"
        token = creds.get("credentialsId")
        assert isinstance(token, str) and token, f"no access token in DeviceCredentials: {creds}"
        return Device(id=device_id, name=name, token=token)

    # time series ----------------------------------------------------------------------------------

    def latest(self, device_id: str, keys: Iterable[str], strict: bool = False) -> dict:
        path = f"/api/plugins/telemetry/DEVICE/{device_id}/values/timeseries?keys={','.join(keys)}"
        if strict:
            path += "&useStrictDataTypes=true"
        body = self.ok(self.get(path))
        assert isinstance(body, dict), f"latest values are not a JSON object: {body!r}"
        return body

    def history(self, device_id: str, keys: Iterable[str], start_ts: int, end_ts: int) -> dict:
        path = (
            f"/api/plugins/telemetry/DEVICE/{device_id}/values/timeseries"
            f"?keys={','.join(keys)}&startTs={start_ts}&endTs={end_ts}"
        )
        body = self.ok(self.get(path))
        assert isinstance(body, dict), f"history is not a JSON object: {body!r}"
        return body

    # attributes -------------------------------------------------------------------------------------

    def attributes(self, device_id: str, scope: str, keys: Iterable[str]) -> dict:
        """Attributes of one scope as {key: AttributeData row}."""
        path = f"/api/plugins/telemetry/DEVICE/{device_id}/values/attributes/{scope}?keys={','.join(keys)}"
        rows = self.ok(self.get(path))
        assert isinstance(rows, list), f"attributes are not a JSON list: {rows!r}"
        return {row.get("key"): row for row in rows}

    def save_attributes(self, device_id: str, scope: str, values: dict) -> None:
        self.ok(self.post(f"/api/plugins/telemetry/DEVICE/{device_id}/{scope}", json=values))

    def delete_attributes(self, device_id: str, scope: str, keys: Iterable[str]) -> None:
        self.ok(self.delete(f"/api/plugins/telemetry/DEVICE/{device_id}/{scope}?keys={','.join(keys)}"))


def login(base_url: str, username: str, password: str) -> requests.Response:
    session = requests.Session()
    session.trust_env = False
    return session.post(
        base_url.rstrip("/") + "/api/auth/login", json={"username": username, "password": password}, timeout=30
    )


def jwt_part(token: str, index: int) -> dict:
    """Decode one base64url part of a JWT (0 = header, 1 = claims) without checking the signature."""
    parts = token.split(".")
    assert len(parts) == 3, f"not a three-part JWT: {token[:60]!r}"
    segment = parts[index]
    decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    value = json.loads(decoded)
    assert isinstance(value, dict), f"JWT part {index} is not a JSON object: {value!r}"
    return value


# --------------------------------------------------------------------------------------------------
# "current time" values, for the getCurrentTime client-side RPC

_JS_DATE = re.compile(r"^[A-Z][a-z]{2} ([A-Z][a-z]{2} \d{1,2} \d{4} \d{2}:\d{2}:\d{2}) (?:GMT|UTC)([+-]\d{4})")
_ISO_FRACTION = re.compile(r"(\.\d{6})\d+")


def time_candidates(value: Any) -> List[float]:
    """Epoch seconds that a JSON value may denote: epoch ms or s (number or numeric string), ISO 8601,
    RFC 2822, or JavaScript's Date.toString() text (what String(new Date()) gives)."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        out = []
        for scale in (1000.0, 1.0):
            seconds = value / scale
            if 946684800 <= seconds <= 4102444800:  # years 2000..2100
                out.append(seconds)
        return out
    if not isinstance(value, str):
        return []
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return time_candidates(float(text))
    match = _JS_DATE.match(text)
    if match:
        return [datetime.strptime(f"{match.group(1)} {match.group(2)}", "%b %d %Y %H:%M:%S %z").timestamp()]
    try:
        parsed = datetime.fromisoformat(_ISO_FRACTION.sub(r"\1", text.replace("Z", "+00:00")))
    except ValueError:
        parsed = None
    if parsed is not None:
        if parsed.tzinfo is None:  # no offset given: accept UTC or this machine's local time
            return [parsed.replace(tzinfo=timezone.utc).timestamp(), parsed.timestamp()]
        return [parsed.timestamp()]
    try:
        return [email.utils.parsedate_to_datetime(text).timestamp()]
    except (TypeError, ValueError, IndexError):
        return []


# --------------------------------------------------------------------------------------------------
# upstream paho-mqtt


def _is_paho(name: str) -> bool:
    return name == "paho" or name.startswith("paho.")


def load_upstream_paho(directory: str) -> types.SimpleNamespace:
    """Import upstream paho-mqtt from `directory` (a `pip install --target` tree) under its own module
    objects, leaving whatever `paho` is importable from site-packages (the SDK's fork) untouched."""
    directory = str(Path(directory).resolve())
    saved = {name: mod for name, mod in sys.modules.items() if _is_paho(name)}
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, directory)
    try:
        client = importlib.import_module("paho.mqtt.client")
        enums = importlib.import_module("paho.mqtt.enums")
        package = sys.modules["paho.mqtt"]
    finally:
        sys.path.remove(directory)
        for name in [name for name in sys.modules if _is_paho(name)]:
            del sys.modules[name]
        sys.modules.update(saved)
    location = str(Path(client.__file__).resolve())
    if not location.startswith(directory + os.sep):
        raise RuntimeError(f"paho-mqtt was imported from {location}, not from {directory}")
    return types.SimpleNamespace(
        version=package.__version__,
        location=location,
        Client=client.Client,
        MQTTv311=client.MQTTv311,
        MQTTv5=client.MQTTv5,
        CallbackAPIVersion=enums.CallbackAPIVersion,
        MQTTErrorCode=enums.MQTTErrorCode,
    )


def random_client_id() -> str:
    return "acc-" + uuid.uuid4().hex[:16]


def connack_code(
    paho: types.SimpleNamespace,
    port: int,
    *,
    protocol: str,
    username: Optional[str],
    password: Optional[str] = None,
    client_id: Optional[str] = None,
    timeout: float = WAIT,
) -> int:
    """Connect once with upstream paho and return the CONNACK code exactly as the server sent it:
    the MQTT 3.1.1 return code (0..5) for protocol "v311", the MQTT 5 reason code for "v5"."""
    cid = random_client_id() if client_id is None else client_id
    codes: List[int] = []
    if protocol == "v311":
        # Callback API v1 hands MQTT 3.x clients the raw CONNACK return code (v2 maps it to a v5 reason).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            client = paho.Client(paho.CallbackAPIVersion.VERSION1, client_id=cid, protocol=paho.MQTTv311)
        client.on_connect = lambda _c, _u, _flags, rc: codes.append(int(rc))
    elif protocol == "v5":
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=cid, protocol=paho.MQTTv5)
        client.on_connect = lambda _c, _u, _flags, reason, _props: codes.append(int(reason.value))
    else:
        raise ValueError(protocol)
    if username is not None:
        client.username_pw_set(username, password)

    lost = (paho.MQTTErrorCode.MQTT_ERR_NO_CONN, paho.MQTTErrorCode.MQTT_ERR_CONN_LOST)
    client.connect(HOST, port, keepalive=30)
    deadline = time.monotonic() + timeout
    try:
        while not codes:
            rc = client.loop(timeout=0.1)
            if not codes and rc in lost:
                raise AssertionError(f"the server closed the MQTT connection without a CONNACK (paho rc {rc})")
            if time.monotonic() > deadline:
                raise AssertionError(f"no CONNACK within {timeout:g} s")
    finally:
        client.disconnect()  # closes the socket if paho has not done so already
    return codes[0]


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    qos: int

    def json(self) -> Any:
        return json.loads(self.payload)


class PahoDevice:
    """A device connection made with upstream paho-mqtt (callback API v2) and its network thread."""

    def __init__(
        self,
        paho: types.SimpleNamespace,
        port: int,
        username: Optional[str],
        password: Optional[str] = None,
        protocol: str = "v5",
        client_id: Optional[str] = None,
        tls: Optional["TlsFiles"] = None,
    ):
        if protocol not in ("v311", "v5"):
            raise ValueError(protocol)
        self.protocol = protocol
        self.port = port
        version = paho.MQTTv5 if protocol == "v5" else paho.MQTTv311
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=random_client_id() if client_id is None else client_id,
            protocol=version,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set(ca_certs=str(tls.ca), certfile=tls.cert, keyfile=tls.key)
        self._cv = threading.Condition()
        self._connack: Optional[int] = None
        self._subacks: dict = {}
        self._pubacks: dict = {}
        self._messages: List[Message] = []
        self.disconnect_reason: Optional[int] = None
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    # callbacks (paho's network thread)
    def _on_connect(self, _client, _userdata, _flags, reason, _properties):
        with self._cv:
            self._connack = int(reason.value)
            self._cv.notify_all()

    def _on_subscribe(self, _client, _userdata, mid, reason_codes, _properties):
        with self._cv:
            self._subacks[mid] = [int(rc.value) for rc in reason_codes]
            self._cv.notify_all()

    def _on_publish(self, _client, _userdata, mid, reason, _properties):
        with self._cv:
            self._pubacks[mid] = int(reason.value)
            self._cv.notify_all()

    def _on_message(self, _client, _userdata, msg):
        with self._cv:
            self._messages.append(Message(msg.topic, bytes(msg.payload), msg.qos))
            self._cv.notify_all()

    def _on_disconnect(self, _client, _userdata, _flags, reason, _properties):
        with self._cv:
            self.disconnect_reason = int(reason.value)
            self._cv.notify_all()

    def _wait(self, predicate: Callable[[], bool], what: str, timeout: float) -> None:
        with self._cv:
            if not self._cv.wait_for(predicate, timeout):
                raise AssertionError(f"{self.protocol} paho client: no {what} within {timeout:g} s")

    # actions (test thread)
    def connect(self, timeout: float = WAIT) -> "PahoDevice":
        self.client.connect(HOST, self.port, keepalive=60)
        self.client.loop_start()
        self._wait(lambda: self._connack is not None, "CONNACK", timeout)
        assert self._connack == 0, f"{self.protocol} CONNECT refused with code {self._connack:#04x}"
        return self

    def subscribe(self, topic: str, qos: int = 1, timeout: float = WAIT) -> List[int]:
        """SUBSCRIBE and return the SUBACK codes (granted QoS, or a failure code >= 0x80)."""
        rc, mid = self.client.subscribe(topic, qos)
        assert rc == 0, f"paho could not send SUBSCRIBE {topic}: rc {rc}"
        self._wait(lambda: mid in self._subacks, f"SUBACK for {topic}", timeout)
        with self._cv:
            return self._subacks[mid]

    def publish(self, topic: str, payload: Any, qos: int = 1, timeout: float = WAIT) -> int:
        """PUBLISH (dicts and lists as JSON) and wait until it is written (QoS 0) or acknowledged (QoS 1).
        Returns the PUBACK reason code (always 0 for MQTT 3.1.1 and for QoS 0)."""
        data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        info = self.client.publish(topic, data, qos=qos)
        assert info.rc == 0, f"paho could not queue PUBLISH {topic}: rc {info.rc}"
        self._wait(lambda: info.mid in self._pubacks, "PUBACK" if qos else "completed QoS 0 PUBLISH", timeout)
        with self._cv:
            return self._pubacks[info.mid]

    def wait_message(self, predicate: Callable[[Message], bool], what: str, timeout: float = WAIT) -> Message:
        """Remove and return the first received message that satisfies `predicate`."""
        found: List[Message] = []

        def ready() -> bool:
            for i, msg in enumerate(self._messages):
                if predicate(msg):
                    found.append(self._messages.pop(i))
                    return True
            return False

        self._wait(ready, what, timeout)
        return found[0]

    def received(self) -> List[Message]:
        with self._cv:
            return list(self._messages)

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


# --------------------------------------------------------------------------------------------------
# tb-mqtt-client


class SdkDevice:
    """A device connection made with tb-mqtt-client's TBDeviceMqttClient (the object is `.client`)."""

    # What TBDeviceMqttClient subscribes to by itself once connected (its _on_connect).
    SUBSCRIPTIONS = (
        "v1/devices/me/attributes",
        "v1/devices/me/attributes/response/+",
        "v1/devices/me/rpc/request/+",
        "v1/devices/me/rpc/response/+",
    )

    def __init__(self, port: int, token: Optional[str], tls: Optional["TlsFiles"] = None, **options: Any):
        """`options` go to TBDeviceMqttClient as they are (e.g. `chunk_size` for firmware downloads)."""
        from tb_device_mqtt import TBDeviceMqttClient

        self.tls = tls
        self.client = TBDeviceMqttClient(HOST, port=port, username=token, **options)
        self._cv = threading.Condition()
        self.granted: List[int] = []
        # The SDK sends its SUBSCRIBEs on connect but offers no SUBACK hook. It leaves its paho client's
        # on_subscribe unset, so the suite listens there (read-only) to know the server registered them
        # before it triggers attribute pushes or RPCs.
        self.client._client.on_subscribe = self._on_subscribe

    def _on_subscribe(self, _client, _userdata, _mid, reason_codes, _properties):
        with self._cv:
            self.granted.extend(int(rc.value) for rc in reason_codes)
            self._cv.notify_all()

    def connect(self, timeout: float = WAIT) -> "SdkDevice":
        if self.tls is None:
            self.client.connect()
        else:
            self.client.connect(
                tls=True, ca_certs=str(self.tls.ca), cert_file=self.tls.cert, key_file=self.tls.key
            )

        def ready() -> bool:
            return self.client.is_connected() and len(self.granted) >= len(self.SUBSCRIPTIONS)

        with self._cv:
            done = self._cv.wait_for(ready, timeout)
        if not done:
            state = "connected" if self.client.is_connected() else "not connected"
            raise AssertionError(
                f"TBDeviceMqttClient {state} after {timeout:g} s; SUBACK codes so far: {self.granted} "
                f"(it subscribes to {list(self.SUBSCRIPTIONS)})"
            )
        return self

    def close(self) -> None:
        self.client.stop()
        self.client.disconnect()


# --------------------------------------------------------------------------------------------------
# certificates (openssl)


@dataclass(frozen=True)
class TlsFiles:
    """What a TLS client is given: the CA to trust, and optionally its own certificate and key."""

    ca: Path
    cert: Optional[str] = None
    key: Optional[str] = None


class Pki:
    """A certificate authority in a directory, made with the openssl command: the server's certificate
    (for 127.0.0.1 and localhost) and device certificates on demand."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_key = self.dir / "ca.key"
        self.ca = self.dir / "ca.pem"
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-keyout", self.ca_key, "-out", self.ca, "-days", "30", "-subj", "/CN=acceptance CA")
        self.server_cert, self.server_key = self.issue(
            "ferroboard", san="IP:127.0.0.1,DNS:localhost", days=30, ext="serverAuth"
        )

    def _openssl(self, *args: Any) -> None:
        done = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise AssertionError(f"openssl {' '.join(map(str, args))} failed: {done.stderr.strip()}")

    def issue(self, cn: str, san: Optional[str] = None, days: int = 30, ext: str = "clientAuth") -> Tuple[Path, Path]:
        """A key and a certificate signed by the CA; returns (certificate path, key path)."""
        name = re.sub(r"[^A-Za-z0-9]+", "-", cn) + "-" + uuid.uuid4().hex[:6]
        key, csr, cert, conf = (self.dir / f"{name}.{x}" for x in ("key", "csr", "pem", "cnf"))
        self._openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-keyout", key, "-out", csr, "-subj", f"/CN={cn}")
        lines = [f"extendedKeyUsage={ext}"]
        if san:
            lines.append(f"subjectAltName={san}")
        conf.write_text("\n".join(lines) + "\n")
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key, "-CAcreateserial",
                      "-out", cert, "-extfile", conf, "-days", days)
        return cert, key
