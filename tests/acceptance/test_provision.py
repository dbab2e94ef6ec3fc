"""Device provisioning with tb-mqtt-client's `TBDeviceMqttClient.provision(...)` (MQTT, `provision` as
user name, `/provision/request` and `/provision/response`) and over HTTP (`POST /api/v1/provision`), and
device profiles saved and deleted over REST (see docs/device-api.md, "Provisioning").
"""

from __future__ import annotations

import uuid

from acc_support import HOST, Rest, SdkDevice


def _profile(rest: Rest, kind: str = "ALLOW_CREATE_NEW_DEVICES") -> dict:
    key = f"key-{uuid.uuid4().hex[:12]}"
    body = {
        "name": f"acc-profile-{uuid.uuid4().hex[:8]}",
        "provisionType": kind,
        "provisionDeviceKey": key,
        "profileData": {"provisionConfiguration": {"type": kind, "provisionDeviceSecret": "acc-secret"}},
    }
    profile = rest.ok(rest.post("/api/deviceProfile", json=body))
    assert profile["provisionDeviceKey"] == key, profile
    return profile


def test_sdk_provisions_a_device_that_then_connects(rest, mqtt_port):
    from tb_device_mqtt import TBDeviceMqttClient

    profile = _profile(rest)
    name = f"acc-prov-{uuid.uuid4().hex[:8]}"
    creds = TBDeviceMqttClient.provision(
        HOST, profile["provisionDeviceKey"], "acc-secret", port=mqtt_port, device_name=name
    )
    assert creds is not None, "provisioning answered no credentials"
    assert creds["status"] == "SUCCESS" and creds["credentialsType"] == "ACCESS_TOKEN", creds
    device = rest.ok(rest.get(f"/api/tenant/device?deviceName={name}"))
    assert device["type"] == profile["name"], device
    # The SDK connects at once with what it got.
    sdk = SdkDevice(mqtt_port, creds["credentialsValue"]).connect()
    try:
        assert sdk.client.is_connected()
    finally:
        sdk.client.disconnect()


def test_sdk_provisioning_with_basic_credentials_and_refusals(rest, mqtt_port):
    from tb_device_mqtt import TBDeviceMqttClient

    profile = _profile(rest)
    key = profile["provisionDeviceKey"]
    name = f"acc-basic-{uuid.uuid4().hex[:8]}"
    creds = TBDeviceMqttClient.provision(
        HOST, key, "acc-secret", port=mqtt_port, device_name=name, client_id="acc-c", username="acc-u", password="acc-p"
    )
    assert creds == {
        "credentialsValue": {"clientId": "acc-c", "userName": "acc-u", "password": "acc-p"},
        "credentialsType": "MQTT_BASIC",
        "status": "SUCCESS",
    }, creds
    # A wrong secret, and the same name again: no credentials.
    assert TBDeviceMqttClient.provision(HOST, key, "wrong", port=mqtt_port, device_name="other") is None
    assert TBDeviceMqttClient.provision(HOST, key, "acc-secret", port=mqtt_port, device_name=name) is None


def test_http_provisioning_and_profile_rest(rest, http_url):
    profile = _profile(rest)
    anonymous = Rest(http_url)
    name = f"acc-http-{uuid.uuid4().hex[:8]}"
    body = {"deviceName": name, "provisionDeviceKey": profile["provisionDeviceKey"], "provisionDeviceSecret": "acc-secret"}
    answer = anonymous.ok(anonymous.post("/api/v1/provision", json=body))
    assert answer["status"] == "SUCCESS", answer
    assert anonymous.ok(anonymous.post("/api/v1/provision", json=body)) == {
        "errorMsg": "Failed to provision device!",
        "status": "FAILURE",
    }
    # The profile is in use: it cannot be deleted until its device is gone.
    pid = profile["id"]["id"]
    resp = rest.delete(f"/api/deviceProfile/{pid}")
    assert resp.status_code == 400, resp.text
    assert resp.json()["message"] == "The device profile referenced by the devices cannot be deleted!"
    device = rest.ok(rest.get(f"/api/tenant/device?deviceName={name}"))
    rest.ok(rest.delete(f"/api/device/{device['id']['id']}"))
    rest.ok(rest.delete(f"/api/deviceProfile/{pid}"))
    assert rest.get(f"/api/deviceProfile/{pid}").status_code == 404
