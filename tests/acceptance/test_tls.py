"""MQTT over TLS (docs/device-api.md, Connecting; docs/configuration.md, mqtts_addr), with paho-mqtt
3.1.1 and 5, tb-mqtt-client and mosquitto_pub:

- an access token works over TLS as over TCP, without a client certificate;
- a device whose credentials are X509_CERTIFICATE (its PEM, set over REST) logs in with that
  certificate alone, and its telemetry is stored;
- a certificate that belongs to no device is refused with CONNACK 5 / 0x87;
- X.509 chain provisioning: a profile holding a CA creates the device named by the CN of a leaf it
  signed (the client sends leaf and CA); a leaf another CA signed is refused.
The certificates are made with openssl; the server's is signed by a CA the clients trust.
"""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

import acc_support as acc
from acc_support import HOST, PahoDevice, SdkDevice, TlsFiles, eventually

PROTOCOLS = ["v311", "v5"]


def set_x509(rest, device, cert_path) -> dict:
    creds = rest.ok(rest.get(f"/api/device/{device.id}/credentials"))
    creds["credentialsType"] = "X509_CERTIFICATE"
    creds["credentialsValue"] = cert_path.read_text()
    return rest.ok(rest.post("/api/device/credentials", json=creds))


def stored(rest, device_id, key, value):
    def check():
        latest = rest.latest(device_id, [key])
        points = latest.get(key) or []
        return points and str(points[0]["value"]) == str(value)

    eventually(check)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_token_over_tls(paho, mqtts_port, pki, new_device, rest, protocol):
    device = new_device()
    client = PahoDevice(paho, mqtts_port, device.token, protocol=protocol, tls=TlsFiles(pki.ca))
    try:
        client.connect()
        assert client.publish("v1/devices/me/telemetry", {"tls_token": 1}) == 0
    finally:
        client.close()
    stored(rest, device.id, "tls_token", 1)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_device_certificate_logs_in(paho, mqtts_port, pki, new_device, rest, protocol):
    device = new_device()
    cert, key = pki.issue(f"device-{protocol}")
    saved = set_x509(rest, device, cert)
    assert saved["credentialsType"] == "X509_CERTIFICATE"
    assert "BEGIN" not in saved["credentialsValue"] and "\n" not in saved["credentialsValue"]
    client = PahoDevice(paho, mqtts_port, None, protocol=protocol, tls=TlsFiles(pki.ca, str(cert), str(key)))
    try:
        client.connect()
        assert client.publish("v1/devices/me/telemetry", {"tls_x509": protocol}) == 0
    finally:
        client.close()
    stored(rest, device.id, "tls_x509", protocol)


# paho's callback API v2 reports the MQTT 3.1.1 return code 5 as its reason 0x87 (Not authorized).
@pytest.mark.parametrize("protocol, expected", [("v311", 0x87), ("v5", 0x87)])
def test_unknown_certificate_is_refused(paho, mqtts_port, pki, protocol, expected):
    cert, key = pki.issue("nobody")
    client = PahoDevice(paho, mqtts_port, None, protocol=protocol, tls=TlsFiles(pki.ca, str(cert), str(key)))
    try:
        with pytest.raises(AssertionError) as refused:
            client.connect()
        assert f"{expected:#04x}" in str(refused.value), str(refused.value)
    finally:
        client.close()


def test_sdk_with_device_certificate(mqtts_port, pki, new_device, rest):
    device = new_device()
    cert, key = pki.issue("sdk-device")
    set_x509(rest, device, cert)
    sdk = SdkDevice(mqtts_port, None, tls=TlsFiles(pki.ca, str(cert), str(key)))
    try:
        sdk.connect()
        sdk.client.send_telemetry({"tls_sdk": 7}).get()
    finally:
        sdk.close()
    stored(rest, device.id, "tls_sdk", 7)


def test_mosquitto_pub_with_device_certificate(mqtts_port, pki, new_device, rest):
    device = new_device()
    cert, key = pki.issue("mosquitto-device")
    set_x509(rest, device, cert)
    value = uuid.uuid4().hex[:8]
    done = subprocess.run(
        ["mosquitto_pub", "-h", HOST, "-p", str(mqtts_port), "--cafile", str(pki.ca), "--cert", str(cert),
         "--key", str(key), "-q", "1", "-t", "v1/devices/me/telemetry", "-m", json.dumps({"tls_mosquitto": value})],
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, f"mosquitto_pub failed: {done.stderr}"
    stored(rest, device.id, "tls_mosquitto", value)


def chain_file(pki, leaf):
    """The leaf followed by its CA: the chain a device presents for X.509 chain provisioning."""
    chain = leaf.with_name(leaf.stem + "-chain.pem")
    chain.write_text(leaf.read_text() + pki.ca.read_text())
    return chain


def chain_profile(rest, name, ca_path, allow_create=True):
    return rest.ok(rest.post("/api/deviceProfile", json={
        "name": name, "type": "DEFAULT", "transportType": "DEFAULT", "provisionType": "X509_CERTIFICATE_CHAIN",
        "profileData": {"provisionConfiguration": {
            "type": "X509_CERTIFICATE_CHAIN", "provisionDeviceSecret": ca_path.read_text(),
            "certificateRegExPattern": r"^chain-(.+)$", "allowCreateNewDevicesByX509Certificate": allow_create,
        }},
    }))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_chain_provisioning_creates_the_device(paho, mqtts_port, pki, rest, tmp_path, protocol):
    """A profile holding a CA creates the device its signed leaf names (the CN through the
    profile's pattern); a leaf the CA did not sign is refused with 0x87."""
    device_ca = acc.Pki(tmp_path / "chain-ca")
    profile = chain_profile(rest, f"chain-{protocol}-{uuid.uuid4().hex[:6]}", device_ca.ca)
    name = f"{protocol}-{uuid.uuid4().hex[:6]}"
    cert, key = device_ca.issue(f"chain-{name}")
    client = PahoDevice(paho, mqtts_port, None, protocol=protocol,
                        tls=TlsFiles(pki.ca, str(chain_file(device_ca, cert)), str(key)))
    try:
        client.connect()
        assert client.publish("v1/devices/me/telemetry", {"tls_chain": protocol}) == 0
    finally:
        client.close()
    created = rest.ok(rest.get("/api/tenant/devices", params={"deviceName": name}))
    assert created["deviceProfileId"] == profile["id"]
    creds = rest.ok(rest.get(f"/api/device/{created['id']['id']}/credentials"))
    assert creds["credentialsType"] == "X509_CERTIFICATE"
    stored(rest, created["id"]["id"], "tls_chain", protocol)

    # Signed by another CA but presented with the profile's CA: refused.
    forged, forged_key = pki.issue(f"chain-forged-{name}")
    client = PahoDevice(paho, mqtts_port, None, protocol=protocol,
                        tls=TlsFiles(pki.ca, str(chain_file(device_ca, forged)), str(forged_key)))
    try:
        with pytest.raises(AssertionError) as refused:
            client.connect()
        assert "0x87" in str(refused.value), str(refused.value)
    finally:
        client.close()
    assert rest.get("/api/tenant/devices", params={"deviceName": f"forged-{name}"}).status_code == 404
