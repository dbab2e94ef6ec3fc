"""ThingsBoard's IoT Gateway (`thingsboard-gateway` from PyPI), headless, with its MQTT connector.

The gateway is not among the suite's pinned clients (it brings its own dependency set): install it into a
virtualenv of its own and name its executable, e.g.

    python3 -m venv /tmp/tbgw && /tmp/tbgw/bin/pip install thingsboard-gateway==3.8.5
    ACCEPTANCE_TB_GATEWAY=/tmp/tbgw/bin/thingsboard-gateway tests/acceptance/run -k iot_gateway

Without ACCEPTANCE_TB_GATEWAY (or without the `mosquitto` broker binary) the test is skipped. It starts a
Mosquitto broker of its own on a free port, points the IoT Gateway's MQTT connector at it and the gateway
at ferroboard, then:

* a JSON message published to the broker becomes telemetry and client attributes of a device the gateway
  creates (profile from the connector's mapping), through v1/gateway/connect, telemetry and attributes;
* renaming that device over REST sends the gateway the service RPC gateway_device_renamed, after which the
  gateway's next data goes to the renamed device and no device of the old name appears.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from acc_support import HOST, eventually

GATEWAY = os.environ.get("ACCEPTANCE_TB_GATEWAY")
STARTUP = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _present(fetch):
    """A check for `eventually`: what `fetch` returns, once it is something."""

    def check():
        value = fetch()
        assert value, "not there yet"
        return value

    return check


def _device_by_name(rest, name: str):
    resp = rest.get(f"/api/tenant/devices?deviceName={name}")
    return resp.json() if resp.status_code == 200 else None


@pytest.mark.skipif(not GATEWAY, reason="ACCEPTANCE_TB_GATEWAY names no thingsboard-gateway executable")
@pytest.mark.skipif(shutil.which("mosquitto") is None, reason="needs the mosquitto broker binary")
def test_iot_gateway_with_mqtt_connector(rest, mqtt_port, paho, tmp_path: Path):
    broker_port = _free_port()
    (tmp_path / "mosquitto.conf").write_text(f"listener {broker_port} {HOST}\nallow_anonymous true\n")
    broker = subprocess.Popen(
        ["mosquitto", "-c", str(tmp_path / "mosquitto.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    gateway = None
    try:
        token = f"iotgw-{uuid.uuid4().hex}"
        name = f"acc-iotgw-{uuid.uuid4().hex[:8]}"
        created = rest.post(
            f"/api/device?accessToken={token}", json={"name": name, "additionalInfo": {"gateway": True}}
        )
        assert created.status_code == 200, created.text

        python = Path(GATEWAY).with_name("python")
        package = subprocess.run(
            [str(python), "-c", "import os, thingsboard_gateway as g; print(os.path.dirname(g.__file__))"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        config = tmp_path / "config"
        shutil.copytree(Path(package) / "config", config)
        main = json.loads((config / "tb_gateway.json").read_text())
        main["thingsboard"].update(
            host=HOST, port=mqtt_port, remoteConfiguration=False, remoteShell=False,
            security={"type": "accessToken", "accessToken": token},
        )
        main["thingsboard"]["statistics"]["enable"] = False
        main["connectors"] = [{"type": "mqtt", "name": "Broker", "configuration": "mqtt.json"}]
        (config / "tb_gateway.json").write_text(json.dumps(main))
        connector = json.loads((config / "mqtt.json").read_text())
        connector["broker"].update(host=HOST, port=broker_port, clientId=f"iotgw-{uuid.uuid4().hex[:8]}")
        mapping = connector["mapping"][0]
        topic = f"acc/{uuid.uuid4().hex[:8]}/data"
        sensor = f"acc-iotgw-sensor-{uuid.uuid4().hex[:8]}"
        mapping["topicFilter"] = topic
        mapping["converter"]["deviceInfo"].update(deviceNameExpression=sensor, deviceProfileExpression="acc-iotgw")
        connector["mapping"] = [mapping]
        connector["requestsMapping"] = {}
        (config / "mqtt.json").write_text(json.dumps(connector))
        workdir = tmp_path / "run"
        workdir.mkdir()
        log = open(workdir / "gateway.log", "wb")
        gateway = subprocess.Popen(
            [GATEWAY], cwd=workdir, env={**os.environ, "TB_GW_CONFIG_DIR": str(config)}, stdout=log, stderr=log
        )

        publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"acc-pub-{uuid.uuid4().hex[:8]}")
        publisher.connect(HOST, broker_port)
        publisher.loop_start()

        def sensor_with(value: float):
            publisher.publish(topic, json.dumps({"temperature": value, "humidity": 40, "power": 1.5}), qos=1)
            device = _device_by_name(rest, sensor)
            if device is None:
                return None
            latest = rest.latest(device["id"]["id"], ["temperature"]).get("temperature")
            return device if latest and float(latest[0]["value"]) == value else None

        device = eventually(_present(lambda: sensor_with(21.5)), timeout=STARTUP, interval=1.0)
        assert device["type"] == "acc-iotgw", device
        device_id = device["id"]["id"]
        attrs = rest.attributes(device_id, "CLIENT_SCOPE", ["power"])
        assert float(attrs["power"]["value"]) == 1.5, attrs

        device["name"] = f"{sensor}-renamed"
        rest.ok(rest.post("/api/device", json=device))
        # Data published before the gateway handled the service RPC would still use the old name.
        eventually(
            _present(lambda: b"Received renamed gateway device notification" in (workdir / "gateway.log").read_bytes()),
            timeout=30,
            interval=0.5,
        )

        def renamed_gets(value: float):
            publisher.publish(topic, json.dumps({"temperature": value, "humidity": 41, "power": 1.5}), qos=1)
            latest = rest.latest(device_id, ["temperature"]).get("temperature")
            return latest and float(latest[0]["value"]) == value

        eventually(_present(lambda: renamed_gets(30.5)), timeout=30, interval=1.0)
        assert _device_by_name(rest, sensor) is None, "the gateway kept the old name"
        publisher.loop_stop()
        publisher.disconnect()
    finally:
        for proc in (gateway, broker):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
