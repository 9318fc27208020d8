"""Make every non-loopback socket connection fail, and record who tried."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager


class NetworkBlocked(OSError):
    """Raised in place of a connection to anything but loopback."""


def _is_loopback(address) -> bool:
    """True for a loopback (host, port) tuple or a loopback host name / address."""
    host = address[0] if isinstance(address, tuple) else str(address)
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name that is not localhost


def _is_ip_literal(host) -> bool:
    """A numeric address needs no name lookup: it is blocked at connect instead."""
    try:
        ipaddress.ip_address(host if isinstance(host, str) else host.decode())
    except (ValueError, AttributeError):
        return False
    return True


@contextmanager
def loopback_only(attempts: list[str] | None = None) -> Iterator[list[str]]:
    """Within the block, connections to non-loopback addresses raise; yields the attempts (the
    list given, e.g. one that writes each to a file, or a new one)."""
    attempts = [] if attempts is None else attempts
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex
    original_getaddrinfo = socket.getaddrinfo

    def guarded(method):
        def connect(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
                attempts.append(repr(address))
                raise NetworkBlocked(f"network access blocked in tests: {address!r}")
            return method(sock, address)

        return connect

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and not _is_loopback(host) and not _is_ip_literal(host):
            attempts.append(f"getaddrinfo({host!r})")
            raise socket.gaierror(socket.EAI_NONAME, f"name lookup blocked in tests: {host!r}")
        return original_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = guarded(original_connect)
    socket.socket.connect_ex = guarded(original_connect_ex)
    socket.getaddrinfo = getaddrinfo
    try:
        yield attempts
    finally:
        socket.socket.connect = original_connect
        socket.socket.connect_ex = original_connect_ex
        socket.getaddrinfo = original_getaddrinfo
