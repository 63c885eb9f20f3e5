"""The one place that asks the system for a free TCP port."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1", preferred: int = 0) -> int:
    """``preferred`` if nothing listens there, else a port the system picks (0: always the system's pick).

    A probe, not a reservation: another process may take the port before the caller binds it.
    """
    for port in dict.fromkeys((preferred, 0)):
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
                return probe.getsockname()[1]
            except OSError:
                continue
    raise OSError(f"no free port on {host}")
