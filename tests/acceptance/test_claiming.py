"""Device claiming and customers.

* A tenant administrator creates a customer and a customer user without a mail
  (POST /api/user?sendActivationMail=false); the user sets its password through the activation link
  (GET /api/user/{id}/activationLink, POST /api/noauth/activate) and gets its tokens.
* tb-mqtt-client's claim() opens the device's claim window (v1/devices/me/claim); the customer user then
  claims the device by name: 200 {"device", "response": "SUCCESS"}; a second claim answers 400 with the
  bare JSON string "CLAIMED"; a wrong secret answers "FAILURE".
"""

from __future__ import annotations

import uuid

import requests

from acc_support import Rest, eventually

PASSWORD = "acc-Customer-1"


def customer_user(rest: Rest, http_url: str) -> tuple:
    """A new customer and an activated user of it; returns (customer id, Rest logged in as the user)."""
    title = f"acc-customer-{uuid.uuid4().hex[:8]}"
    customer = rest.ok(rest.post("/api/customer", json={"title": title}))
    customer_id = customer["id"]["id"]
    user = rest.ok(
        rest.post(
            "/api/user?sendActivationMail=false",
            json={
                "email": f"{title}@example.org",
                "authority": "CUSTOMER_USER",
                "customerId": {"entityType": "CUSTOMER", "id": customer_id},
            },
        )
    )
    assert user["authority"] == "CUSTOMER_USER" and user["customerId"]["id"] == customer_id, user
    link = rest.get(f"/api/user/{user['id']['id']}/activationLink")
    assert link.status_code == 200 and link.headers["Content-Type"].startswith("text/plain"), link.text
    assert link.text.startswith(http_url.rstrip("/") + "/api/noauth/activate?activateToken="), link.text
    token = link.text.split("activateToken=", 1)[1]
    session = requests.Session()
    session.trust_env = False
    pair = session.post(
        http_url.rstrip("/") + "/api/noauth/activate?sendActivationMail=false",
        json={"activateToken": token, "password": PASSWORD},
        timeout=30,
    )
    assert pair.status_code == 200, pair.text
    return customer_id, Rest(http_url, pair.json()["token"])


def wait_acknowledged(info) -> None:
    """Waits for the PUBACK of a TBPublishInfo (the server stores the window before it)."""

    def acknowledged() -> None:
        infos = info.message_info if isinstance(info.message_info, list) else [info.message_info]
        assert infos and all(i.is_published() for i in infos), "claim message not acknowledged yet"

    eventually(acknowledged)


def test_sdk_claim_then_customer_user_claims(rest, http_url, new_device, sdk_device):
    device = new_device()
    customer_id, user = customer_user(rest, http_url)
    sdk = sdk_device(device)

    info = sdk.client.claim(secret_key="acc-secret", duration=60000)
    wait_acknowledged(info)
    claimed = user.post(f"/api/customer/device/{device.name}/claim", json={"secretKey": "acc-secret"})
    body = Rest.ok(claimed)
    assert body["response"] == "SUCCESS", body
    assert body["device"]["id"]["id"] == device.id and body["device"]["customerId"]["id"] == customer_id, body
    owned = Rest.ok(user.get(f"/api/customer/{customer_id}/devices?pageSize=10&page=0"))
    assert [d["name"] for d in owned["data"]] == [device.name], owned

    again = user.post(f"/api/customer/device/{device.name}/claim", json={"secretKey": "acc-secret"})
    assert again.status_code == 400 and again.json() == "CLAIMED", again.text


def test_wrong_secret_fails(rest, http_url, new_device, sdk_device):
    device = new_device()
    _, user = customer_user(rest, http_url)
    sdk = sdk_device(device)
    wait_acknowledged(sdk.client.claim(secret_key="right", duration=60000))
    wrong = user.post(f"/api/customer/device/{device.name}/claim", json={"secretKey": "wrong"})
    assert wrong.status_code == 400 and wrong.json() == "FAILURE", wrong.text
    # A tenant administrator may not claim.
    denied = rest.post(f"/api/customer/device/{device.name}/claim", json={"secretKey": "right"})
    assert denied.status_code == 403, denied.text
