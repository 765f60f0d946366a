"""A validator network's ports are picked before its validators start (CometBFT takes them in its
config, and each validator its peers' addresses): when another process takes one in between, a
network that never ran is created again on new ports (``ValidatorNetwork.start``)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pykoii.chain.network import ValidatorNetwork

pytestmark = pytest.mark.usefixtures("cometbft")


def test_a_port_taken_before_the_engine_binds_it_gives_a_fresh_network_new_ports(tmp_path: Path) -> None:
    network = ValidatorNetwork(tmp_path, count=2)
    network.create()
    taken = network.validators[1].info.p2p
    host, port = taken.rsplit(":", 1)
    holder = socket.socket()  # another process's listener, on the port picked for validator-2's p2p
    holder.bind((host, int(port)))
    holder.listen()
    try:
        network.start(timeout=120)
        try:
            assert network.validators[1].info.p2p != taken  # created again, on other ports
            assert all(v.running() for v in network.validators)
            network.wait_height(network.height(network.validators[0]) + 2, timeout=120)  # and it runs
        finally:
            network.stop()
    finally:
        holder.close()
