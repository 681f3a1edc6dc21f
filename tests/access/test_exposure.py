"""Who may reach the dashboard: every loopback spelling is loopback, anything else needs named users."""

from __future__ import annotations

import socket

import pytest

from flows.access.exposure import (NAMED_USERS, OPEN_DEMO, SHARED_PASSWORD, describe_mode, exposure_refusal,
                                   is_loopback, listening_hosts, sign_in_mode)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "127.255.1.9", "::1", "[::1]", "localhost",
                                  "LOCALHOST", "app.localhost", "::ffff:127.0.0.1"])
def test_loopback_forms_are_loopback(host: str) -> None:
    assert is_loopback(host)
    assert exposure_refusal([host], named_users=False) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "192.168.0.5", "128.0.0.1", "example.org", "",
                                  None, "::ffff:10.0.0.1"])
def test_other_addresses_are_refused_without_named_users(host: str | None) -> None:
    assert not is_loopback(host)
    message = exposure_refusal(["127.0.0.1", host], named_users=False)
    assert message is not None and message.startswith("refused")
    assert "clinfuse users add" in message and "127.0.0.1" in message  # says what to do
    assert exposure_refusal([host], named_users=True) is None  # named users sign in: any address


def test_listening_hosts_sees_what_a_socket_binds() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.3", 0))
        sock.listen()
        assert "127.0.0.3" in listening_hosts()
    assert "127.0.0.3" not in listening_hosts()  # closed: no longer listed


def test_sign_in_mode_precedence_and_text() -> None:
    assert sign_in_mode(False, False) == OPEN_DEMO and sign_in_mode(False, True) == SHARED_PASSWORD
    assert sign_in_mode(True, True) == NAMED_USERS
    assert "every permission" in describe_mode(OPEN_DEMO) and "own name" in describe_mode(NAMED_USERS)
