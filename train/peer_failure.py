"""One line naming the peer, when a collective fails because another process of the job went away.

gloo says `Connection closed by peer [172.18.0.3]:41234` or `Read error [172.18.0.3]:41234: Connection reset by
peer`; NCCL says `ncclRemoteError`, `remote process exited`, `Connection closed by remote peer 172.18.0.3<41234>`
or that its communicator was aborted. torchrun then prints a long traceback per worker; the line made here comes
first and names the peer by host name where the address reverse-resolves (on a Docker network that is the
container's name). No torch import: unit-tested without it.
"""

from __future__ import annotations

import re
import socket
from typing import Callable

SIGNS = ("connection closed by peer", "connection closed by remote peer", "connection reset by peer",
         "nccl communicator was aborted", "remote end closed", "remote process exited", "ncclremoteerror")
GLOO_ADDRESS = re.compile(r"\[([0-9A-Fa-f.:]+)\]:(\d+)")
NCCL_ADDRESS = re.compile(r"([0-9A-Fa-f.:]*[0-9A-Fa-f])<(\d+)>")


def peer_address(message: str) -> str | None:
    """The remote address in gloo's [ADDR]:PORT or NCCL's ADDR<PORT>, if the message has one."""
    found = GLOO_ADDRESS.search(message) or NCCL_ADDRESS.search(message)
    return found.group(1) if found else None


def host_name(address: str, lookup: Callable[[str], tuple] = socket.gethostbyaddr) -> str | None:
    """The name `address` reverse-resolves to, or None."""
    try:
        return lookup(address)[0]
    except (OSError, UnicodeError, ValueError):
        return None


def peer_failure(message: str, lookup: Callable[[str], tuple] = socket.gethostbyaddr) -> str:
    """One line for an error caused by a peer that died or was stopped, or "" for any other error."""
    lowered = message.lower()
    if not any(sign in lowered for sign in SIGNS):
        return ""
    address = peer_address(message)
    if address is None:
        return ("error: a peer process of this job died or lost its connection (the collective failed: "
                f"{message.strip().splitlines()[0][:160]}); see the other nodes' logs for which and why")
    name = host_name(address, lookup)
    who = f"{name} ({address})" if name and name != address else address
    return (f"error: lost the connection to peer {who}: its training process died or was stopped; see that "
            "node's log for why (torchrun stops this node's workers next)")
