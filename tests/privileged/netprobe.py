"""Traffic probes run inside a namespace: ``ip netns exec NS python3 netprobe.py CMD ...``.

Each command is bounded in packets and seconds and prints one JSON object. Standard
library only (no ping/iperf3 needed); raw sockets need root. Never sends anywhere but
the addresses it is given, which the tests take from namespaces they created.

``echo-server``, ``sink`` and ``source`` are the data-path bench's own probes
(src/iovctl/bench/probe.py), loaded by path like the bench runs them: no iovctl
import, whichever iovctl is installed. The commands here are the ones the bench
has no use for, and ``echo-client``, whose maximum-gap report the failover tests
judge (the bench's ``gap-client`` reports raw timestamps instead).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import struct
import sys
import time
from pathlib import Path
from types import ModuleType


def _load_bench_probe() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "src" / "iovctl" / "bench" / "probe.py"
    spec = importlib.util.spec_from_file_location("iovctl_bench_probe", path)
    assert spec is not None and spec.loader is not None, f"no bench probe at {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench_probe = _load_bench_probe()


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(dst: str, count: str, timeout: str = "0.5") -> dict[str, object]:
    """ICMP echo ``count`` times; how many came back."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.settimeout(float(timeout))
    ident, received = os.getpid() & 0xFFFF, 0
    for seq in range(int(count)):
        body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"iovctl-probe"
        packet = struct.pack("!BBHHH", 8, 0, _checksum(body), ident, seq) + body[8:]
        sock.sendto(packet, (dst, 0))
        deadline = time.monotonic() + float(timeout)
        while time.monotonic() < deadline:
            try:
                data, addr = sock.recvfrom(2048)
            except TimeoutError:
                break
            icmp = data[(data[0] & 0x0F) * 4 :]
            if addr[0] == dst and icmp[0] == 0 and struct.unpack("!HH", icmp[4:8]) == (ident, seq):
                received += 1
                break
    return {"sent": int(count), "received": received}


def ping_many(seconds: str, *dsts: str) -> dict[str, object]:
    """ICMP echo to every address in ``dsts`` at once, again every 0.2 s to those that
    have not answered, for up to ``seconds``; which answered. One process for a row of
    a reachability matrix: the whole row costs ``seconds`` at most."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.settimeout(0.05)
    ident, seq, answered = os.getpid() & 0xFFFF, 0, set()
    end, resend = time.monotonic() + float(seconds), 0.0
    while time.monotonic() < end and len(answered) < len(set(dsts)):
        if time.monotonic() >= resend:
            for dst in set(dsts) - answered:
                body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"iovctl-probe"
                packet = struct.pack("!BBHHH", 8, 0, _checksum(body), ident, seq) + body[8:]
                sock.sendto(packet, (dst, 0))
            seq, resend = (seq + 1) & 0xFFFF, time.monotonic() + 0.2
        try:
            data, addr = sock.recvfrom(2048)
        except TimeoutError:
            continue
        icmp = data[(data[0] & 0x0F) * 4 :]
        if addr[0] in dsts and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
            answered.add(addr[0])
    return {"answered": sorted(answered)}


def echo_client(dst: str, port: str, seconds: str) -> dict[str, object]:
    """Every 10 ms: one UDP datagram and one TCP message, each echoed back.

    Reports the longest silence on each (the failover gap) and whether the one TCP
    connection lived through the whole run.
    """
    end = time.monotonic() + float(seconds)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setblocking(False)
    tcp = socket.create_connection((dst, int(port)), timeout=5)
    tcp.setblocking(False)
    sent = udp_received = tcp_received = 0
    last_udp = last_tcp = time.monotonic()
    udp_gap = tcp_gap = 0.0
    tcp_error = None
    pending = b""
    while time.monotonic() < end:
        now = time.monotonic()
        msg = struct.pack("!Q", sent)
        udp.sendto(msg, (dst, int(port)))
        try:
            tcp.sendall(msg)
        except BlockingIOError:
            pass
        except OSError as exc:
            tcp_error = str(exc)
            break
        sent += 1
        while time.monotonic() < now + 0.01:
            time.sleep(0.001)
            try:
                while True:
                    udp.recv(64)
                    t = time.monotonic()
                    udp_gap, last_udp = max(udp_gap, t - last_udp), t
                    udp_received += 1
            except BlockingIOError:
                pass
            try:
                data = tcp.recv(65536)
                if not data:
                    tcp_error = "connection closed by peer"
                    break
                pending += data
                got = len(pending) // 8
                pending = pending[got * 8 :]
                if got:
                    t = time.monotonic()
                    tcp_gap, last_tcp = max(tcp_gap, t - last_tcp), t
                    tcp_received += got
            except BlockingIOError:
                pass
            except OSError as exc:
                tcp_error = str(exc)
                break
        if tcp_error:
            break
    # Let the last TCP echoes arrive (retransmissions may still be in flight).
    tcp.setblocking(True)
    tcp.settimeout(3)
    try:
        while tcp_received < sent and tcp_error is None:
            data = tcp.recv(65536)
            if not data:
                tcp_error = "connection closed by peer"
                break
            pending += data
            got = len(pending) // 8
            pending = pending[got * 8 :]
            tcp_received += got
    except OSError as exc:
        tcp_error = tcp_error or str(exc)
    tcp.close()
    return {
        "sent": sent,
        "udp_received": udp_received,
        "udp_max_gap_ms": round(udp_gap * 1000, 1),
        "tcp_received": tcp_received,
        "tcp_max_gap_ms": round(tcp_gap * 1000, 1),
        "tcp_error": tcp_error,
    }


def spoof(ifname: str, src_mac: str, count: str) -> dict[str, object]:
    """Send ``count`` broadcast ARP requests from ``ifname`` with source ``src_mac``."""
    mac = bytes.fromhex(src_mac.replace(":", ""))
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + bytes(4) + bytes(6) + bytes(4)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((ifname, 0))
    for _ in range(int(count)):
        sock.send(b"\xff" * 6 + mac + b"\x08\x06" + arp)
        time.sleep(0.01)
    return {"sent": int(count)}


def sniff(ifname: str, src_mac: str, seconds: str) -> dict[str, object]:
    """Count frames from ``src_mac`` seen on ``ifname`` for ``seconds``."""
    mac = bytes.fromhex(src_mac.replace(":", ""))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sock.bind((ifname, 0))
    sock.settimeout(0.05)
    print(json.dumps({"ready": True}), flush=True)
    seen, end = 0, time.monotonic() + float(seconds)
    while time.monotonic() < end:
        try:
            frame = sock.recv(2048)
        except TimeoutError:
            continue
        if frame[6:12] == mac:
            seen += 1
    return {"seen": seen}


COMMANDS = {
    "ping": ping,
    "ping-many": ping_many,
    "echo-server": bench_probe.echo_server,
    "echo-client": echo_client,
    "sink": bench_probe.sink,
    "source": bench_probe.source,
    "spoof": spoof,
    "sniff": sniff,
}

if __name__ == "__main__":
    print(json.dumps(COMMANDS[sys.argv[1]](*sys.argv[2:])), flush=True)
