"""A network tripwire for subprocesses under test: with `RRG_NET_LOG` set, every name lookup or connection to a
host that is not this machine is written to that file (one line: pid, event, address) and refused.

Put this folder on `PYTHONPATH` (`tests.netguard.guarded_env`): Python imports `sitecustomize` at start-up, in
every interpreter the subprocess spawns too, and the audit hook sees `socket.getaddrinfo` and `socket.connect`
whatever library makes them (urllib, requests, huggingface_hub, ...). Local sockets (AF_UNIX, loopback) pass.
"""

import os
import sys

_LOCAL = {None, b"", "", "localhost", "127.0.0.1", "::1", b"localhost", b"127.0.0.1", b"::1"}


def _hook(event: str, args: tuple) -> None:
    if event == "socket.getaddrinfo":
        host = args[0]
    elif event == "socket.connect" and isinstance(args[1], tuple):
        host = args[1][0]
    else:
        return
    if host in _LOCAL:
        return
    with open(os.environ["RRG_NET_LOG"], "a") as fh:
        fh.write(f"{os.getpid()} {event} {host!r}\n")
    raise OSError(f"network access refused under test: {event} {host!r}")


if os.environ.get("RRG_NET_LOG"):
    sys.addaudithook(_hook)
