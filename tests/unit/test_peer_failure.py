"""train/peer_failure.py without torch: which errors are blamed on a peer that went away, and how it is named."""
import socket

import pytest

from train import peer_failure as peer



def lookup(address):
    names = {"172.18.0.3": ("torchdev-node1-1.torchdev_default", [], [address])}
    if address not in names:
        raise socket.herror(1, "Unknown host")
    return names[address]


@pytest.mark.parametrize("message, says", [
    ("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [172.18.0.3]:17264",
     "error: lost the connection to peer torchdev-node1-1.torchdev_default (172.18.0.3): its training process "
     "died or was stopped"),
    ("[pair.cc:598] Read error [172.18.0.9]:4512: Connection reset by peer",
     "error: lost the connection to peer 172.18.0.9: its training process died"),
    ("NCCL error: remote process exited or there was a network error, NCCL version 2.14.3\nncclRemoteError: ...\n"
     "socketProgress: Connection closed by remote peer 172.18.0.3<52322>",
     "error: lost the connection to peer torchdev-node1-1.torchdev_default (172.18.0.3)"),
    ("NCCL communicator was aborted on rank 2.", "error: a peer process of this job died or lost its connection "
                                                 "(the collective failed: NCCL communicator was aborted on rank 2.)"),
])
def test_a_lost_peer_is_named_in_one_line(message, says):
    line = peer.peer_failure(message, lookup)
    assert line.startswith(says) and "\n" not in line


@pytest.mark.parametrize("message", ["CUDA out of memory", "Expected all tensors to be on the same device",
                                     "mat1 and mat2 shapes cannot be multiplied [64x16]:[32x4]"])
def test_other_errors_are_not_blamed_on_a_peer(message):
    assert peer.peer_failure(message, lookup) == ""
