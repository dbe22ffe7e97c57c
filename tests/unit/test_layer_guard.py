"""The unit layer's guard: a unit test cannot reach the network or start a process."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from .conftest import LayerViolation


def test_a_network_connection_is_refused() -> None:
    """Connecting a TCP socket, even to loopback, fails with the layer's own error."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s, pytest.raises(LayerViolation, match="integration"):
        s.connect(("127.0.0.1", 9))


def test_listening_is_refused() -> None:
    """Binding a TCP socket fails too: a server belongs to the integration layer."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s, pytest.raises(LayerViolation):
        s.bind(("127.0.0.1", 0))


def test_a_process_is_refused() -> None:
    """Starting a process fails: processes belong to the system layer."""
    with pytest.raises(LayerViolation, match="system"):
        subprocess.run([sys.executable, "-c", "pass"], check=False)


def test_a_local_socket_pair_still_works() -> None:
    """Unix socket pairs (asyncio's self-pipe, wake-ups) are not network and stay allowed."""
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"x")
        assert b.recv(1) == b"x"
