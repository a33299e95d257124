"""A network namespace joined to this host by a veth pair: a replica "on another host" whose
path to the database can be cut (a blackhole route) while the tests still reach it. Root only.

    host side  10.214.K.1/30 on vh<id>, plus 10.214.K.5/32: the address the database listens on
    namespace  10.214.K.2/30 on vn<id>, route to 10.214.K.5 via 10.214.K.1
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


class Netns:
    def __init__(self) -> None:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            pytest.skip("network namespaces need root and iproute2")
        tag = os.getpid() % 100_000
        self.name = f"neuron-t{tag}"
        self.host_if, self.ns_if = f"vh{tag}", f"vn{tag}"
        k = 20 + os.getpid() % 200
        self.host_ip, self.ns_ip, self.db_ip = f"10.214.{k}.1", f"10.214.{k}.2", f"10.214.{k}.5"
        self.network = f"10.214.{k}.0/29"
        self.prefix = ["ip", "netns", "exec", self.name]

    def create(self) -> Netns:
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            _ip("link", "set", self.ns_if, "netns", self.name)
            _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _ip("addr", "add", f"{self.db_ip}/32", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            inside = ["-n", self.name]
            _ip(*inside, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
            _ip(*inside, "link", "set", self.ns_if, "up")
            _ip(*inside, "link", "set", "lo", "up")
            _ip(*inside, "route", "add", f"{self.db_ip}/32", "via", self.host_ip)
        except BaseException:
            self.delete()
            raise
        return self

    def cut_database(self) -> None:
        """Packets from the namespace to the database's address go nowhere."""
        _ip("-n", self.name, "route", "replace", "blackhole", f"{self.db_ip}/32")

    def restore_database(self) -> None:
        _ip("-n", self.name, "route", "replace", f"{self.db_ip}/32", "via", self.host_ip)

    def delete(self) -> None:
        """Deleting the namespace deletes its veth end, and with it the host's."""
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "delete", self.host_if], capture_output=True, timeout=30)
