"""Gateway API (v1/gateway/*).

* tb-mqtt-client's TBGatewayMqttClient (MQTT 5, the only protocol the SDK speaks) drives every call it
  offers: gw_connect_device, gw_send_telemetry, gw_send_attributes, gw_request_client_attributes,
  gw_request_shared_attributes, gw_subscribe_to_attribute, gw_set_server_side_rpc_request_handler +
  gw_send_rpc_reply, gw_claim, gw_disconnect_device. Its getSessionLimits request is answered with
  gatewayRateLimits.
* Over MQTT 3.1.1 (upstream paho-mqtt) the same topics work for a gateway that speaks the older protocol.
* Renaming a device behind a gateway over REST sends the gateway the service RPC gateway_device_renamed.
"""

from __future__ import annotations

import queue
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from acc_support import HOST, WAIT, eventually, next_item


def _create_gateway(rest, name: str):
    created = rest.ok(rest.post("/api/device", json={"name": name, "additionalInfo": {"gateway": True}}))
    assert created["additionalInfo"]["gateway"] is True, created
    device_id = created["id"]["id"]
    token = rest.ok(rest.get(f"/api/device/{device_id}/credentials"))["credentialsId"]
    return device_id, token


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


@pytest.fixture
def gateway_client(mqtt_port: int, rest):
    """Factory: a connected TBGatewayMqttClient whose subscriptions and session limits arrived."""
    opened = []

    def connect(token: str):
        from tb_gateway_mqtt import TBGatewayMqttClient

        client = TBGatewayMqttClient(HOST, port=mqtt_port, username=token)
        opened.append(client)
        client.connect()
        eventually(
            _present(
                lambda: client.is_connected()
                and client.rate_limits_received
                and not client.get_subscriptions_in_progress()
            )
        )
        return client

    yield connect
    for client in reversed(opened):
        client.stop()
        client.disconnect()


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_sdk_gateway_client_every_call(rest, gateway_client):
    _, token = _create_gateway(rest, _unique("acc-gw"))
    gw = gateway_client(token)
    name = _unique("acc-sub")

    gw.gw_connect_device(name, "acc-thermometer").get()
    device = eventually(_present(lambda: _device_by_name(rest, name)))
    assert device["type"] == "acc-thermometer", device
    device_id = device["id"]["id"]

    ts = int(time.time() * 1000) - 1000
    gw.gw_send_telemetry(name, {"ts": ts, "values": {"temperature": 21.5}}).get()
    latest = eventually(_present(lambda: rest.latest(device_id, ["temperature"]).get("temperature")))
    assert latest[0]["ts"] == ts and float(latest[0]["value"]) == 21.5, latest

    gw.gw_send_attributes(name, {"firmware": "fw-a"}).get()
    eventually(_present(lambda: rest.attributes(device_id, "CLIENT_SCOPE", ["firmware"]).get("firmware")))

    answers: "queue.Queue[dict]" = queue.Queue()
    gw.gw_request_client_attributes(name, ["firmware"], lambda content, error: answers.put(content))
    answer = next_item(answers, "client attribute answer")
    assert answer["device"] == name and answer["value"] == "fw-a", answer

    rest.save_attributes(device_id, "SHARED_SCOPE", {"target": 5, "mode": "eco"})
    gw.gw_request_shared_attributes(name, ["target", "mode"], lambda content, error: answers.put(content))
    answer = next_item(answers, "shared attribute answer")
    assert answer["values"] == {"target": 5, "mode": "eco"}, answer

    updates: "queue.Queue[dict]" = queue.Queue()
    gw.gw_subscribe_to_attribute(name, "target", updates.put)
    rest.save_attributes(device_id, "SHARED_SCOPE", {"target": 7})
    # The push of the save above may still be on its way: it names target too.
    update = next_item(updates, "shared attribute update")
    while update["data"].get("target") == 5:
        update = next_item(updates, "shared attribute update")
    assert update == {"device": name, "data": {"target": 7}}, update

    requests_seen: "queue.Queue[dict]" = queue.Queue()

    def on_rpc(client, content):
        requests_seen.put(content)
        client.gw_send_rpc_reply(content["device"], content["data"]["id"], {"ok": True, "echo": content["data"]["params"]})

    gw.gw_set_server_side_rpc_request_handler(on_rpc)
    resp = rest.post(
        f"/api/plugins/rpc/twoway/{device_id}", json={"method": "setTarget", "params": {"t": 9}, "timeout": 5000}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"ok": True, "echo": {"t": 9}}
    seen = next_item(requests_seen, "RPC request at the gateway")
    assert seen["device"] == name and seen["data"]["method"] == "setTarget", seen

    gw.gw_claim(name, "secret", 60000).get()
    gw.gw_disconnect_device(name).get()
    # Still served after the disconnect: a message names the device again.
    gw.gw_send_telemetry(name, {"humidity": 40}).get()
    eventually(_present(lambda: rest.latest(device_id, ["humidity"]).get("humidity")))


def test_sdk_gateway_gets_its_session_limits(rest, gateway_client):
    _, token = _create_gateway(rest, _unique("acc-gw"))
    gw = gateway_client(token)
    answers: "queue.Queue[dict]" = queue.Queue()
    gw.send_rpc_call("getSessionLimits", {"timeout": 5000}, lambda _id, body, *rest_: answers.put(body))
    limits = next_item(answers, "getSessionLimits answer")
    assert set(limits) >= {"maxPayloadSize", "maxInflightMessages", "rateLimits", "gatewayRateLimits"}, limits
    assert set(limits["gatewayRateLimits"]) == {"messages", "telemetryMessages", "telemetryDataPoints"}, limits


def test_gateway_over_mqtt311(rest, paho_device):
    from acc_support import Device

    gw_id, token = _create_gateway(rest, _unique("acc-gw311"))
    gw = paho_device(Device(id=gw_id, name="gw", token=token), protocol="v311")
    assert gw.subscribe("v1/gateway/rpc") == [1]
    name = _unique("acc-sub311")
    gw.publish("v1/gateway/connect", {"device": name})
    gw.publish("v1/gateway/telemetry", {name: [{"t": 1}]})
    device = _device_by_name(rest, name)
    assert device is not None, "created before the PUBACK"
    device_id = device["id"]["id"]
    assert rest.latest(device_id, ["t"])["t"][0]["value"] in ("1", 1), "committed before the PUBACK"

    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(
            rest.post, f"/api/plugins/rpc/twoway/{device_id}", json={"method": "ping", "params": {}, "timeout": 5000}
        )
        request = gw.wait_message(lambda m: m.topic == "v1/gateway/rpc", "RPC request").json()
        assert request["device"] == name and request["data"]["method"] == "ping", request
        gw.publish("v1/gateway/rpc", {"device": name, "id": request["data"]["id"], "data": {"pong": 1}})
        resp = call.result(timeout=WAIT)
    assert resp.status_code == 200 and resp.json() == {"pong": 1}, resp.text


def test_renaming_a_device_tells_its_gateway(rest, gateway_client):
    _, token = _create_gateway(rest, _unique("acc-gw"))
    gw = gateway_client(token)
    service: "queue.Queue[dict]" = queue.Queue()
    gw.set_server_side_rpc_request_handler(lambda _id, body: service.put(body))
    name = _unique("acc-sub")
    gw.gw_connect_device(name).get()
    device = eventually(_present(lambda: _device_by_name(rest, name)))
    device["name"] = f"{name}-renamed"
    rest.ok(rest.post("/api/device", json=device))
    body = next_item(service, "gateway_device_renamed")
    assert body == {"method": "gateway_device_renamed", "params": {name: f"{name}-renamed"}}, body
