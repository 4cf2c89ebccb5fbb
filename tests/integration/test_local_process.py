"""`local.process.port_is_free` answers "could a server listen here now", over real sockets."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

from endpoint.sockets import listening_socket
from local.process import port_is_free

# A server that accepts one connection and holds it until killed.
HOLDING_SERVER = """
import socket, sys, time
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen()
print(server.getsockname()[1], flush=True)
connection, _ = server.accept()
time.sleep(60)
"""


def test_a_listening_port_is_not_free() -> None:
    # Given a socket listening on a port
    with listening_socket("127.0.0.1", 0) as listening:
        port = listening.getsockname()[1]
        # When / Then the port is reported as taken
        assert not port_is_free(port)
    # And free again once the listener is closed
    assert port_is_free(port)


def test_a_port_whose_server_was_killed_mid_connection_is_free() -> None:
    # Given a server process with an open client connection
    server = subprocess.Popen([sys.executable, "-c", HOLDING_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        time.sleep(0.2)
        # When the server is killed, which leaves its side of the connection in TIME_WAIT
        server.kill()
        server.wait(timeout=10)
        time.sleep(0.2)
        # Then a plain bind is refused, yet a new server could listen, so the port counts as free
        with socket.socket() as plain_probe:
            try:
                plain_probe.bind(("127.0.0.1", port))
                plain_bind_refused = False
            except OSError:
                plain_bind_refused = True
        assert plain_bind_refused
        assert port_is_free(port)
        client.close()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
