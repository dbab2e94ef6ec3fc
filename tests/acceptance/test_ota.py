"""Firmware over the air.

* tb-mqtt-client's own update flow end to end: a package uploaded over REST and assigned to the device,
  the SDK learns it from the pushed fw_* shared attributes, downloads it in chunks, verifies the checksum
  and reports fw_state DOWNLOADING ... UPDATED, all readable over REST (states the SDK sends within one
  millisecond keep the later one). When the SDK's verification fails, it reports FAILED and asks for the
  firmware again by itself (its own retry); the test waits for that, never loosening the check: the file
  it finally stores must be the uploaded one.
* paho-mqtt, MQTT 3.1.1: the raw bytes of chunk ranges, the end of the file, and errors on v2/fw/error.
"""

from __future__ import annotations

import hashlib

import pytest

from acc_support import WAIT, eventually, now_ms

FW_STATES = "fw_state"


def image(size: int) -> bytes:
    """Deterministic, not repetitive file content."""
    out = bytearray()
    block = b"ferroboard"
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out.extend(block)
    return bytes(out[:size])


def upload_package(rest, profile_id: str, title: str, data: bytes, algorithm: str) -> dict:
    info = rest.ok(
        rest.post(
            "/api/otaPackage",
            json={
                "title": title,
                "version": "1.0",
                "type": "FIRMWARE",
                "deviceProfileId": {"entityType": "DEVICE_PROFILE", "id": profile_id},
                "additionalInfo": {"description": "acceptance"},
            },
        )
    )
    assert info["hasData"] is False, info
    package_id = info["id"]["id"]
    stored = rest.ok(
        rest.post(
            f"/api/otaPackage/{package_id}",
            params={"checksumAlgorithm": algorithm},
            files={"file": (f"{title}.bin", data, "application/octet-stream")},
        )
    )
    assert stored["hasData"] is True and stored["dataSize"] == len(data), stored
    return stored


def assign(rest, device_id: str, package: dict) -> dict:
    body = rest.ok(rest.get(f"/api/device/{device_id}"))
    body["firmwareId"] = package["id"]
    saved = rest.ok(rest.post("/api/device", json=body))
    assert saved["firmwareId"] == package["id"], saved
    return saved


def state_rows(rest, device_id: str, since: int) -> list:
    """(ts, fw_state) since `since`, oldest first."""
    history = rest.history(device_id, [FW_STATES], since, now_ms() + 60_000)
    return sorted((row["ts"], row["value"]) for row in history.get(FW_STATES, []))


def states_in_order(rest, device_id: str, since: int) -> list:
    return [value for _, value in state_rows(rest, device_id, since)]


@pytest.mark.parametrize(
    "algorithm,chunk_size,size",
    [("SHA256", 4096, 20_000), ("CRC32", 0, 9_000), ("MURMUR3_128", 1500, 7_777)],
)
def test_sdk_firmware_update_flow(rest, new_device, sdk_device, tmp_path, monkeypatch, algorithm, chunk_size, size):
    # The SDK's default handler stores the received file under its title in the working directory.
    monkeypatch.chdir(tmp_path)
    device = new_device()
    info = rest.ok(rest.get(f"/api/device/{device.id}"))
    data = image(size)
    title = f"acc-fw-{algorithm.lower()}"
    package = upload_package(rest, info["deviceProfileId"]["id"], title, data, algorithm)

    sdk = sdk_device(device, chunk_size=chunk_size)
    since = now_ms() - 1000
    # How a device waits for updates with the SDK: it subscribes to v2/fw/response/+ (refused, as by
    # ThingsBoard, without closing the session), reports IDLE and asks for the fw_* attributes (none yet).
    sdk.client.get_firmware_update()
    def idle():
        states = states_in_order(rest, device.id, since)
        assert states == ["IDLE"], f"fw_state so far: {states}"

    eventually(idle)

    assign(rest, device.id, package)

    def updated():
        states = states_in_order(rest, device.id, since)
        assert states[-1:] == ["UPDATED"], f"fw_state so far: {states}"
        return states

    states = eventually(updated, timeout=max(WAIT, 60))
    rows = state_rows(rest, device.id, since)
    assert states[:4] == ["IDLE", "QUEUED", "INITIATED", "DOWNLOADING"], rows
    # The SDK reports each state without a timestamp, some from inside its network callback, so two
    # can reach the server in the same millisecond and the later one replaces the earlier (as in
    # ThingsBoard). What is stored still follows the SDK's flow: forward only, except that a FAILED
    # verification is followed by the SDK's own new download.
    rank = {"DOWNLOADING": 0, "DOWNLOADED": 1, "VERIFIED": 2, "FAILED": 2, "UPDATING": 3, "UPDATED": 4}
    flow = states[3:]
    for before, after in zip(flow, flow[1:]):
        if before == "FAILED":
            assert after == "DOWNLOADING", rows
        elif after == "DOWNLOADING":
            # The retry's FAILED may share a millisecond with DOWNLOADED.
            assert before == "DOWNLOADED", rows
        else:
            assert rank[after] > rank[before], rows
    # Every failed verification was the SDK's own, followed by its own new download.
    assert (tmp_path / title).read_bytes() == data
    latest = rest.latest(device.id, ["current_fw_title", "current_fw_version", "fw_error"])
    assert latest["current_fw_title"][0]["value"] == title
    assert latest["current_fw_version"][0]["value"] == "1.0"
    assert latest["fw_error"][0]["value"] == ""

    shared = rest.attributes(
        device.id, "SHARED_SCOPE", ["fw_title", "fw_version", "fw_size", "fw_checksum", "fw_checksum_algorithm"]
    )
    assert {k: v["value"] for k, v in shared.items()} == {
        "fw_title": title,
        "fw_version": "1.0",
        "fw_size": size,
        "fw_checksum": package["checksum"],
        "fw_checksum_algorithm": algorithm,
    }
    server = rest.latest(device.id, ["target_fw_title", "target_fw_version", "target_fw_ts"])
    assert server["target_fw_title"][0]["value"] == title
    assert server["target_fw_version"][0]["value"] == "1.0"


def test_paho_chunk_byte_ranges(rest, new_device, paho_device):
    device = new_device()
    info = rest.ok(rest.get(f"/api/device/{device.id}"))
    data = image(10_000)
    package = upload_package(rest, info["deviceProfileId"]["id"], "acc-fw-ranges", data, "SHA256")
    assign(rest, device.id, package)
    client = paho_device(device, protocol="v311")
    # ThingsBoard refuses the SDK's wildcard filter (0x80 on 3.1.1) and keeps the session.
    assert client.subscribe("v2/fw/response/+") == [0x80]

    def chunk(request: int, index: int, payload: str):
        client.publish(f"v2/fw/request/{request}/chunk/{index}", payload)
        msg = client.wait_message(
            lambda m: m.topic in (f"v2/fw/response/{request}/chunk/{index}", "v2/fw/error"),
            f"answer to chunk {index} of request {request}",
        )
        return msg.topic, msg.payload

    assert chunk(1, 0, "4096") == ("v2/fw/response/1/chunk/0", data[:4096])
    assert chunk(1, 1, "") == ("v2/fw/response/1/chunk/1", data[4096:8192]), "the size remembered"
    assert chunk(1, 2, "") == ("v2/fw/response/1/chunk/2", data[8192:])
    assert chunk(1, 3, "") == ("v2/fw/response/1/chunk/3", b""), "past the end: an empty chunk"
    assert chunk(2, 7, "1000") == ("v2/fw/response/2/chunk/7", data[7000:8000])
    assert chunk(3, 0, "") == ("v2/fw/response/3/chunk/0", data), "no size: the whole file"
    assert chunk(4, 0, "abc") == ("v2/fw/error", b"Invalid chunk size: abc")
    assert chunk(5, 1, "999") == ("v2/fw/response/5/chunk/1", data[999:1998]), "still served after an error"
