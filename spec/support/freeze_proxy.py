#!/usr/bin/env python3
"""A TCP proxy for specs that can freeze: it forwards 127.0.0.1:LISTEN to 127.0.0.1:TARGET,
and after SIGUSR1 stops forwarding on every connection open at that moment, in both
directions, without closing them (a half-open link, a wedged middlebox). Connections made
later are forwarded normally. Prints its port and pid on the first line of stdout.

usage: freeze_proxy.py TARGET_PORT"""
import os
import selectors
import signal
import socket
import sys

target = int(sys.argv[1])
sel = selectors.DefaultSelector()
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(64)
listener.setblocking(False)
sel.register(listener, selectors.EVENT_READ, None)
pairs = {}      # socket -> its peer
frozen = set()  # sockets that no longer forward
print(listener.getsockname()[1], os.getpid(), flush=True)


def freeze(signum, frame):
    frozen.update(pairs.keys())


signal.signal(signal.SIGUSR1, freeze)

while True:
    try:
        events = sel.select(timeout=0.1)
    except InterruptedError:
        continue
    for key, _ in events:
        s = key.fileobj
        if s is listener:
            try:
                client, _ = listener.accept()
            except BlockingIOError:
                continue
            upstream = socket.create_connection(("127.0.0.1", target))
            for a, b in ((client, upstream), (upstream, client)):
                a.setblocking(False)
                pairs[a] = b
                sel.register(a, selectors.EVENT_READ, None)
            continue
        if s in frozen:
            continue  # the bytes stay in the kernel's buffers: nobody reads them
        try:
            data = s.recv(65536)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            data = b""
        peer = pairs.get(s)
        if not data:
            for x in (s, peer):
                if x is not None and x in pairs:
                    try:
                        sel.unregister(x)
                    except (KeyError, ValueError):
                        pass
                    pairs.pop(x, None)
                    frozen.discard(x)
                    x.close()
            continue
        try:
            peer.sendall(data)
        except OSError:
            pass
    # A frozen socket stays readable: out of the selector, so that select does not spin.
    for s in list(frozen):
        try:
            sel.unregister(s)
        except (KeyError, ValueError):
            pass
