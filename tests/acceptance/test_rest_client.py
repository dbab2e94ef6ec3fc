"""ThingsBoard's Python REST client (tb-rest-client, `RestClientCE`) against the REST API
(docs/rest-api.md): as the tenant administrator it creates, updates and deletes a device profile,
creates a customer and a customer user, assigns a device to the customer and reads it back; as the
system administrator it creates a tenant. The client parses every answer into its models, so a JSON
shape it does not expect fails here.
"""

from __future__ import annotations

import uuid

import pytest

import acc_support as acc

import tb_rest_client.rest_client_ce as rest_client_ce
from tb_rest_client.rest import ApiException

RestClientCE = rest_client_ce.RestClientCE


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """The client logs in with plain `requests.post`, which honours proxy variables: loopback only."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, acc.HOST)


def client(http_url: str, email: str, password: str):
    """A RestClientCE logged in (its token-refresh thread is not started)."""
    c = RestClientCE(base_url=http_url)
    c.login(username=email, password=password)
    return c


def suffix() -> str:
    return uuid.uuid4().hex[:8]


def test_device_profile_create_update_delete(http_url):
    tenant = client(http_url, acc.TENANT_EMAIL, acc.TENANT_PASSWORD)
    profile = rest_client_ce.DeviceProfile(
        name=f"rc-profile-{suffix()}", type="DEFAULT", transport_type="DEFAULT", provision_type="DISABLED",
        profile_data=rest_client_ce.DeviceProfileData(
            configuration={"type": "DEFAULT"}, transport_configuration={"type": "DEFAULT"},
            provision_configuration={"type": "DISABLED"},
        ),
    )
    saved = tenant.save_device_profile(profile)
    assert saved.id is not None and saved.id.entity_type == "DEVICE_PROFILE"
    assert saved.name == profile.name

    saved.description = "updated by tb-rest-client"
    updated = tenant.save_device_profile(saved)
    assert updated.id.id == saved.id.id
    assert tenant.get_device_profile_by_id(saved.id).description == "updated by tb-rest-client"

    page = tenant.get_device_profiles(page_size=100, page=0, text_search=profile.name)
    assert [p.name for p in page.data] == [profile.name]
    infos = tenant.get_device_profile_infos(page_size=100, page=0, text_search=profile.name)
    assert [p.id.id for p in infos.data] == [saved.id.id]

    tenant.delete_device_profile(saved.id)
    with pytest.raises(ApiException) as gone:
        tenant.get_device_profile_by_id(saved.id)
    assert gone.value.status == 404


def test_customer_user_and_device_assignment(http_url):
    tenant = client(http_url, acc.TENANT_EMAIL, acc.TENANT_PASSWORD)
    customer = tenant.save_customer(rest_client_ce.Customer(title=f"rc-customer-{suffix()}"))
    assert customer.id.entity_type == "CUSTOMER"
    assert tenant.get_customer_by_id(customer.id).title == customer.title

    email = f"rc-user-{suffix()}@example.com"
    user = tenant.save_user(
        rest_client_ce.User(authority="CUSTOMER_USER", email=email, customer_id=customer.id, first_name="Rest"),
        send_activation_mail=False,
    )
    assert user.id.entity_type == "USER"
    read = tenant.get_user_by_id(user.id)
    assert read.email == email and read.customer_id.id == customer.id.id

    default_profile = tenant.get_default_device_profile_info()
    profile_id = rest_client_ce.DeviceProfileId(default_profile.id.id, "DEVICE_PROFILE")
    device = tenant.save_device(
        rest_client_ce.Device(name=f"rc-device-{suffix()}", type="default", device_profile_id=profile_id)
    )
    assert device.customer_id is None or device.customer_id.id != customer.id.id
    assigned = tenant.assign_device_to_customer(customer.id, device.id)
    assert assigned.customer_id.id == customer.id.id
    again = tenant.get_device_by_id(device.id)
    assert again.customer_id.id == customer.id.id and again.name == device.name
    devices = tenant.get_customer_devices(customer.id, page_size=10, page=0)
    assert [d.name for d in devices.data] == [device.name]
    users = tenant.get_customer_users(customer.id, page_size=10, page=0)
    assert [u.email for u in users.data] == [email]
    customers = tenant.get_customers(page_size=10, page=0, text_search=customer.title)
    assert [c.title for c in customers.data] == [customer.title]


def test_sysadmin_creates_a_tenant(http_url):
    sysadmin = client(http_url, acc.SYSADMIN_EMAIL, acc.SYSADMIN_PASSWORD)
    title = f"rc-tenant-{suffix()}"
    tenant = sysadmin.save_tenant(rest_client_ce.Tenant(title=title))
    assert tenant.id.entity_type == "TENANT"
    assert sysadmin.get_tenant_by_id(tenant.id).title == title
    tenants = sysadmin.get_tenants(page_size=10, page=0, text_search=title)
    assert [t.title for t in tenants.data] == [title]
