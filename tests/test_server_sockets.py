"""``ui.server_sockets``: the app server's connections get ``TCP_NODELAY`` (Streamlit's own listening socket
leaves it off), both those accepted later and those already open; other sockets are left alone."""

from __future__ import annotations

import socket
import sys

import pytest

from ui.server_sockets import disable_nagle

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")


def nodelay(s: socket.socket) -> int:
    return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_a_listener_bound_as_streamlit_binds_it_serves_every_connection_without_nagle() -> None:
    listener = socket.socket(family=socket.AF_INET)  # protocol 0, as Streamlit 1.67 binds it
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    opened: list[socket.socket] = [listener]
    try:
        early = socket.create_connection(listener.getsockname())
        accepted_early, _ = listener.accept()
        opened += [early, accepted_early]
        assert nodelay(accepted_early) == 0  # the defect this works around

        assert disable_nagle() >= 2

        late = socket.create_connection(listener.getsockname())
        accepted_late, _ = listener.accept()
        opened += [late, accepted_late]
        assert nodelay(accepted_early) and nodelay(accepted_late)  # open before, and inherited after
        assert nodelay(early) == 0  # an outgoing connection is not the server's to change
    finally:
        for s in opened:
            s.close()
