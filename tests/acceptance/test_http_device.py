"""HTTP device API with the SDK's own HTTP client (`tb_device_http.TBHTTPDevice`, shipped by tb-mqtt-client).

* Telemetry and client attributes posted by the SDK are stored (answered after the commit).
* `request_attributes` returns ThingsBoard's {"client": ..., "shared": ...} shape.
* A server-side RPC reaches the SDK's RPC long poll as {"id", "method", "params"}; its answer on
  rpc/{id} completes the REST call.
* A shared-attribute update reaches the SDK's attribute long poll; its polls that time out (408) are
  renewed by the SDK.
* A client-side RPC is answered by the default rules (getCurrentTime).
* An unknown token is 401, a payload that is not JSON 400.
"""

from __future__ import annotations

import queue
from datetime import datetime
from typing import List

import pytest
import requests
from tb_device_http import TBHTTPDevice

from acc_support import eventually, next_item, now_ms, time_candidates


@pytest.fixture
def http_device(http_url: str):
    """Factory: a TBHTTPDevice for a device's token; its long polls last 2 s (the SDK renews them)."""
    opened: List[TBHTTPDevice] = []

    def make(token: str) -> TBHTTPDevice:
        device = TBHTTPDevice(http_url, token)
        device._TBHTTPDevice__session.trust_env = False  # loopback, never through a proxy
        device._TBHTTPDevice__config["timeout"] = 2
        opened.append(device)
        return device

    yield make
    for device in opened:
        for endpoint in ("attributes", "rpc"):
            device.unsubscribe(endpoint)


def test_sdk_posts_telemetry_and_attributes(rest, new_device, http_device):
    device = new_device()
    client = http_device(device.token)
    assert client.test_connection(), "the SDK's connection test posts {} as telemetry"
    client.send_telemetry({"temperature": 21.5, "door": "open"}, timestamp=datetime(2024, 1, 1), queued=False)
    latest = rest.latest(device.id, ["temperature", "door"])
    assert latest["temperature"][0]["ts"] == 1704067200000, latest
    assert latest["temperature"][0]["value"] in ("21.5", 21.5), latest
    assert latest["door"][0]["value"] == "open", latest

    client.send_attributes({"firmware": "1.4.2", "slots": 4})
    stored = rest.attributes(device.id, "CLIENT_SCOPE", ["firmware", "slots"])
    assert stored["firmware"]["value"] == "1.4.2"
    assert stored["slots"]["value"] == 4

    rest.save_attributes(device.id, "SHARED_SCOPE", {"target": 22})
    # The SDK names its parameters client_keys/shared_keys, which ThingsBoard ignores: all attributes.
    got = client.request_attributes(client_keys=["firmware"], shared_keys=["target"])
    assert got == {"client": {"firmware": "1.4.2", "slots": 4}, "shared": {"target": 22}}


def test_sdk_receives_and_answers_a_server_side_rpc(rest, new_device, http_device):
    device = new_device()
    client = http_device(device.token)
    seen: "queue.Queue[dict]" = queue.Queue()

    def on_rpc(request: dict) -> None:
        seen.put(request)
        # send_rpc(rpc_id=0) would post a client-side RPC (0 is falsy in the SDK): answer on rpc/{id}.
        client._publish_data({"result": "ok", "echo": request.get("params")}, f"rpc/{request['id']}")

    client.subscribe("rpc", on_rpc)
    params = {"pin": 4, "value": 1}
    # The call may come before the SDK's first poll: it waits, and the poll gets it when it opens.
    resp = rest.post(
        f"/api/plugins/rpc/twoway/{device.id}", json={"method": "setGpio", "params": params, "timeout": 10000}
    )
    assert resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text[:500]}"
    assert resp.json() == {"result": "ok", "echo": params}
    request = next_item(seen, "RPC request at the SDK")
    assert request == {"id": 0, "method": "setGpio", "params": params}


def test_sdk_receives_a_shared_attribute_update(rest, new_device, http_device):
    device = new_device()
    client = http_device(device.token)
    seen: "queue.Queue[dict]" = queue.Queue()
    client.subscribe("attributes", seen.put)
    rounds: List[int] = []

    def delivered():
        # An update reaches only a poll that is open: save until one arrives (the SDK re-polls).
        rounds.append(len(rounds))
        rest.save_attributes(device.id, "SHARED_SCOPE", {"round": rounds[-1]})
        try:
            return seen.get(timeout=0.5)
        except queue.Empty:
            raise AssertionError(f"no update after {len(rounds)} save(s)") from None

    update = eventually(delivered)
    assert update in [{"round": n} for n in rounds], update


def test_sdk_client_side_rpc_is_answered_by_the_rules(new_device, http_device):
    device = new_device()
    client = http_device(device.token)
    before = now_ms()
    answer = client.send_rpc("getCurrentTime")
    assert isinstance(answer, dict) and "time" in answer, answer
    assert any(t >= before / 1000 - 1 for t in time_candidates(answer["time"])), answer


def test_unknown_token_and_bad_payload(http_url, new_device, http_device):
    assert not http_device("no-such-token").test_connection()
    session = requests.Session()
    session.trust_env = False
    resp = session.post(f"{http_url}/api/v1/no-such-token/telemetry", json={"a": 1}, timeout=10)
    assert resp.status_code == 401, resp.text
    device = new_device()
    resp = session.post(f"{http_url}/api/v1/{device.token}/telemetry", data="{not json", timeout=10)
    assert resp.status_code == 400, resp.text
    assert resp.json()["errorCode"] == 31, resp.text
