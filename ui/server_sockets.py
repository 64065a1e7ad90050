"""Turn Nagle's algorithm off on the app server's sockets, as servers do for request/response traffic.

Streamlit 1.67 serves through uvicorn on a listening socket it binds itself
(``streamlit.web.server.starlette.starlette_server._bind_socket``: ``socket.socket(family=...)``, protocol
left at 0). Accepted connections inherit that 0, and asyncio turns ``TCP_NODELAY`` on only for sockets that
say ``IPPROTO_TCP`` — so every connection keeps Nagle's algorithm on (the same defect as uvicorn's own
pre-bound sockets, Kludex/uvicorn#3149). A response written in two pieces (headers, then body) then waits
for the browser's delayed ACK: every request after the first on a keep-alive connection took 44 ms instead
of ~1 ms (measured on this app's server: ``/_stcore/health`` and static files, 8 requests each), and a page
loads some sixty static files over six connections. The WebSocket's deltas wait the same way.

Linux passes ``TCP_NODELAY`` from a listening socket to the connections it accepts, so setting it on the
listener once fixes every later connection; the connections already accepted get it directly. Elsewhere
(no ``/proc``) this does nothing. Remove it once Streamlit binds with ``IPPROTO_TCP`` or sets the option.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
from collections.abc import Iterator
from contextlib import suppress

import streamlit as st


def _tcp_sockets() -> Iterator[socket.socket]:
    """A duplicate of every TCP socket this process holds (closing one leaves the original open)."""
    for name in os.listdir("/proc/self/fd"):
        try:
            fd = int(name)
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            copy = os.dup(fd)
        except (OSError, ValueError):  # closed meanwhile
            continue
        try:
            dup = socket.socket(fileno=copy)  # family, type and protocol read from the socket itself
        except OSError:  # not a socket Python can wrap
            os.close(copy)
            continue
        if dup.family in (socket.AF_INET, socket.AF_INET6) and dup.type == socket.SOCK_STREAM:
            yield dup
        else:
            dup.close()


def disable_nagle() -> int:
    """Set ``TCP_NODELAY`` on this process's listening TCP sockets and on the connections they accepted.
    Returns how many sockets it set it on (0 where there is no ``/proc``)."""
    if not sys.platform.startswith("linux") or not os.path.isdir("/proc/self/fd"):
        return 0
    listening: set[int] = set()
    connected: list[socket.socket] = []
    tuned = 0
    for s in _tcp_sockets():
        try:
            if not s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                connected.append(s)
                continue
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            listening.add(s.getsockname()[1])
            tuned += 1
        except OSError:  # closed meanwhile
            pass
        s.close()
    for s in connected:  # accepted before the listener was fixed: the first browser's connections
        with s, suppress(OSError):
            if s.getsockname()[1] in listening:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                tuned += 1
    return tuned


@st.cache_resource(show_spinner=False)
def serve_without_nagle() -> int:
    """Once per server process, at its first script run (the server is listening by then)."""
    return disable_nagle()
