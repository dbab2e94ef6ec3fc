"""Live updates over WebSocket, as ThingsBoard's widgets subscribe (websocket-client).

A device publishes with tb-mqtt-client; a browser-like client subscribed over
`/api/ws/plugins/telemetry?token=JWT` (the legacy `tsSubCmds` / `attrSubCmds` / `historyCmds` format)
or over `/api/ws` (first message `{"authCmd": {...}, "cmds": [...]}`) receives the current values first,
then one update per change: `{"subscriptionId", "errorCode": 0, "errorMsg": null, "data": {key: [[ts, "value"]]}}`,
values as strings.
"""

from __future__ import annotations

import json
from typing import Any, Dict

import pytest
import websocket

from acc_support import WAIT, now_ms


def ws_base(http_url: str) -> str:
    return "ws" + http_url[len("http"):]


def token_of(rest) -> str:
    return rest.session.headers["X-Authorization"][len("Bearer "):]


def recv_update(ws: websocket.WebSocket, subscription: int) -> Dict[str, Any]:
    """The next update of `subscription` (others are skipped)."""
    while True:
        ws.settimeout(WAIT)
        update = json.loads(ws.recv())
        if update.get("subscriptionId") == subscription:
            return update


def test_latest_values_then_live_updates_on_the_legacy_endpoint(http_url, rest, new_device, sdk_device):
    device = new_device()
    sdk = sdk_device(device)
    assert sdk.client.send_telemetry({"ts": 1_700_000_000_000, "values": {"temperature": 20.5}}).get() == 0
    ws = websocket.create_connection(f"{ws_base(http_url)}/api/ws/plugins/telemetry?token={token_of(rest)}", timeout=WAIT)
    try:
        ws.send(json.dumps({
            "tsSubCmds": [{"entityType": "DEVICE", "entityId": device.id, "scope": "LATEST_TELEMETRY",
                           "cmdId": 10, "keys": "temperature"}],
            "historyCmds": [],
            "attrSubCmds": [{"entityType": "DEVICE", "entityId": device.id, "scope": "CLIENT_SCOPE", "cmdId": 11}],
        }))
        first = recv_update(ws, 10)
        assert first == {
            "subscriptionId": 10, "errorCode": 0, "errorMsg": None,
            "data": {"temperature": [[1_700_000_000_000, "20.5"]]},
            "latestValues": {"temperature": 1_700_000_000_000},
        }
        assert recv_update(ws, 11)["data"] == {}

        assert sdk.client.send_telemetry({"ts": 1_700_000_001_000, "values": {"temperature": 21, "humidity": 40}}).get() == 0
        live = recv_update(ws, 10)
        assert live["errorCode"] == 0
        assert live["data"] == {"temperature": [[1_700_000_001_000, "21"]]}, "only the subscribed key, as a string"

        assert sdk.client.send_attributes({"firmware": "1.4.2"}).get() == 0
        attr = recv_update(ws, 11)
        [(ts, value)] = attr["data"]["firmware"]
        assert value == "1.4.2" and abs(ts - now_ms()) < 60_000

        ws.send(json.dumps({"historyCmds": [{"entityType": "DEVICE", "entityId": device.id, "cmdId": 12,
                                             "keys": "temperature", "startTs": 1_699_999_999_000,
                                             "endTs": 1_700_000_002_000, "limit": 10, "agg": "NONE"}]}))
        assert recv_update(ws, 12)["data"] == {
            "temperature": [[1_700_000_000_000, "20.5"], [1_700_000_001_000, "21"]]
        }
    finally:
        ws.close()


def test_auth_command_on_api_ws(http_url, rest, new_device, sdk_device):
    device = new_device()
    sdk = sdk_device(device)
    ws = websocket.create_connection(f"{ws_base(http_url)}/api/ws", timeout=WAIT)
    try:
        ws.send(json.dumps({
            "authCmd": {"cmdId": 0, "token": token_of(rest)},
            "cmds": [{"type": "TIMESERIES", "entityType": "DEVICE", "entityId": device.id, "cmdId": 1, "keys": ""}],
        }))
        assert recv_update(ws, 1)["data"] == {}
        assert sdk.client.send_telemetry({"pressure": 1013}).get() == 0
        update = recv_update(ws, 1)
        [(_, value)] = update["data"]["pressure"]
        assert value == "1013"
        assert update["latestValues"]["pressure"] == update["data"]["pressure"][0][0]
    finally:
        ws.close()


def test_without_auth_command_the_socket_is_closed_with_policy_violation(http_url):
    ws = websocket.create_connection(f"{ws_base(http_url)}/api/ws", timeout=WAIT)
    try:
        ws.send(json.dumps({"cmds": []}))
        opcode, payload = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        assert int.from_bytes(payload[:2], "big") == 1008, payload
    finally:
        ws.close()


def test_legacy_endpoint_refuses_a_bad_token(http_url):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(f"{ws_base(http_url)}/api/ws/plugins/telemetry?token=not-a-jwt", timeout=WAIT)
    assert refused.value.status_code == 401
