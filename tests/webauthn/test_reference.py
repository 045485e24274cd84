"""Ceremonies against keyctl's reference server on loopback, with the virtual authenticator in-process and
over UDP: registration, username-first and username-less login, what the server recorded."""

from __future__ import annotations

import httpx
import pytest

from keyctl.authenticator import AttestationMode, VirtualAuthenticator, new_state
from keyctl.hid.inprocess import connect
from keyctl.webauthn import flows, signin
from tests.webauthn.conftest import Opener, Reference, authenticator, client


def _me(session: object) -> dict[str, object]:
    answer = session.call("GET", "/api/me")  # type: ignore[attr-defined]
    assert isinstance(answer, dict)
    return answer


def test_register_then_log_in_username_first_and_username_less(
    reference: Reference, transport: Opener
) -> None:
    key = authenticator()
    open_device = transport(key)
    with reference.account("alice@example.com") as session:
        registered = flows.register(
            session,
            client(reference.url, open_device),
            flows.Request(user="alice@example.com", name="Alice's key", resident=True),
        )
        assert registered.verified
        assert registered.rp_id == "localhost"
        passkeys = _me(session)["passkeys"]
        assert isinstance(passkeys, list)
        assert [(p["id"], p["name"]) for p in passkeys] == [(registered.credential_id, "Alice's key")]
        signin.sign_out(session)

        first = flows.login(
            session, client(reference.url, open_device), flows.Request(user="alice@example.com")
        )
        assert (first.user, first.credential_id, first.method) == (
            "alice@example.com",
            registered.credential_id,
            "passkey",
        )
        assert first.server["method"] == "passkey"
        assert _me(session)["email"] == "alice@example.com"
        signin.sign_out(session)

    with reference.session() as fresh:
        anonymous = flows.login(fresh, client(reference.url, open_device), flows.Request())
        assert anonymous.user == "alice@example.com"  # taken from the server's verdict
        assert anonymous.credential_id == registered.credential_id


def test_a_non_discoverable_passkey_needs_the_user_name(reference: Reference) -> None:
    from keyctl.errors import NoCredential
    from keyctl.hid.inprocess import connect

    key = authenticator()
    with reference.account("bob@example.com") as session:
        flows.register(
            session,
            client(reference.url, lambda: connect(key)),
            flows.Request(user="bob@example.com", resident=False),
        )
        signin.sign_out(session)
        ok = flows.login(
            session, client(reference.url, lambda: connect(key)), flows.Request(user="bob@example.com")
        )
        assert ok.verified
        signin.sign_out(session)
        with pytest.raises(NoCredential, match="Passkey not found on this device"):
            flows.login(session, client(reference.url, lambda: connect(key)), flows.Request())


@pytest.mark.parametrize(
    ("mode", "recorded"),
    [(AttestationMode.X5C, "packed"), (AttestationMode.SELF, "packed"), (AttestationMode.NONE, "none")],
)
def test_the_server_records_the_attestation_format(
    reference: Reference, mode: AttestationMode, recorded: str
) -> None:
    key = VirtualAuthenticator(new_state(attestation_mode=mode))
    with reference.account("carol@example.com") as session:
        flows.register(
            session, client(reference.url, lambda: connect(key)), flows.Request(user="carol@example.com")
        )
        (passkey,) = _me(session)["passkeys"]  # type: ignore[misc]
    assert passkey["attestation_format"] == recorded
    admin = httpx.get(
        f"{reference.url}/api/admin/users",
        headers={"Authorization": f"Bearer {reference.server.admin_token}"},
    ).json()
    (user,) = admin["users"]
    assert user["passkeys"][0]["attestation_format"] == recorded
