"""Traffic probes of ``iovctl bench datapath``, run inside a namespace as a script.

``ip netns exec NS python3 -I probe.py [--realtime] COMMAND ARGS...`` prints one JSON object as its
last line (servers print ``{"ready": true}`` first, once they listen). Every command
is bounded in packets and in seconds, and only talks to the address it is given,
which the bench takes from namespaces it created.

Standard library only, and no iovctl imports: it is run by path in a fresh
interpreter inside the namespace, so that the measuring processes are not the
process that drives iovctl (two cores, one GIL).
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

#: Longest any single wait of a probe may take, whatever it was asked.
MAX_SECONDS = 120.0


def _ready() -> None:
    print(json.dumps({"ready": True}), flush=True)


def _bounded(seconds: str) -> float:
    return min(float(seconds), MAX_SECONDS)


def rr_server(port: str, seconds: str) -> dict[str, Any]:
    """UDP echo for request-response latency, for at most ``seconds``."""
    end = time.monotonic() + _bounded(seconds)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", int(port)))
    sock.settimeout(0.2)
    _ready()
    served = 0
    while time.monotonic() < end:
        try:
            data, addr = sock.recvfrom(2048)
        except TimeoutError:
            continue
        sock.sendto(data, addr)
        served += 1
    return {"served": served}


def rr_client(dst: str, port: str, count: str, warmup: str, timeout: str) -> dict[str, Any]:
    """``warmup`` then ``count`` UDP round trips, one at a time; samples in microseconds.

    A round trip without an answer within ``timeout`` seconds counts as lost; the whole
    run stops at ``count * timeout`` seconds at the latest.
    """
    n, w, wait = int(count), int(warmup), float(timeout)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((dst, int(port)))
    sock.settimeout(wait)
    end = time.monotonic() + min((n + w) * wait, MAX_SECONDS)
    samples: list[float] = []
    lost = 0
    for seq in range(n + w):
        if time.monotonic() >= end:
            lost += n + w - seq
            break
        msg = struct.pack("!Q", seq)
        t0 = time.perf_counter_ns()
        sock.send(msg)
        try:
            while sock.recv(64) != msg:  # a late answer to an earlier (lost) request
                pass
        except TimeoutError:
            if seq >= w:
                lost += 1
            continue
        if seq >= w:
            samples.append((time.perf_counter_ns() - t0) / 1000)
    return {"samples_us": samples, "lost": lost}


def sink(port: str, seconds: str) -> dict[str, Any]:
    """Accept one TCP connection and count what arrives, for at most ``seconds``."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", int(port)))
    srv.listen(1)
    srv.settimeout(_bounded(seconds))
    _ready()
    conn, _ = srv.accept()
    conn.settimeout(_bounded(seconds))
    total, first, last = 0, 0.0, 0.0
    buf = bytearray(1 << 18)
    while True:
        got = conn.recv_into(buf)
        if not got:
            break
        last = time.monotonic()
        if not first:
            first = last
        total += got
    elapsed = last - first
    return {"bytes": total, "seconds": elapsed, "mbps": total * 8 / elapsed / 1e6 if elapsed else 0}


def source(dst: str, port: str, seconds: str) -> dict[str, Any]:
    """Send over one TCP connection as fast as it goes, for ``seconds``."""
    conn = socket.create_connection((dst, int(port)), timeout=5)
    buf, total = memoryview(b"\0" * (1 << 18)), 0
    end = time.monotonic() + _bounded(seconds)
    while time.monotonic() < end:
        total += conn.send(buf)
    conn.close()
    return {"bytes": total}


def echo_server(port: str, seconds: str) -> dict[str, Any]:
    """UDP and TCP echo on ``port`` for at most ``seconds`` (the failover probe's peer)."""
    end = time.monotonic() + _bounded(seconds)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", int(port)))
    tcp = socket.socket()
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("0.0.0.0", int(port)))
    tcp.listen(4)
    sel = selectors.DefaultSelector()
    sel.register(udp, selectors.EVENT_READ, "udp")
    sel.register(tcp, selectors.EVENT_READ, "listen")
    _ready()
    while time.monotonic() < end:
        for key, _ in sel.select(0.1):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if key.data == "udp":
                data, addr = sock.recvfrom(2048)
                sock.sendto(data, addr)
            elif key.data == "listen":
                conn, _ = sock.accept()
                sel.register(conn, selectors.EVENT_READ, "conn")
            else:
                data = sock.recv(65536)
                if data:
                    sock.sendall(data)
                else:
                    sel.unregister(sock)
                    sock.close()
    return {"done": True}


def gap_client(dst: str, port: str, seconds: str, interval_ms: str) -> dict[str, Any]:
    """Every ``interval_ms``: one UDP datagram and one 8-byte TCP message, both echoed.

    Prints ``{"ready": true}`` once connected; sends until SIGUSR1 or ``seconds``. Reports, per UDP sequence number, when
    it was sent and when its echo came back (``time.monotonic()``, which every process
    of the host shares, so the bench can line them up with what it did meanwhile), and
    whether the one TCP connection lived through the run.
    """
    interval = float(interval_ms) / 1000
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setblocking(False)
    tcp = socket.create_connection((dst, int(port)), timeout=5)
    tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tcp.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(udp, selectors.EVENT_READ, "udp")
    sel.register(tcp, selectors.EVENT_READ, "tcp")
    stopped: list[bool] = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: stopped.append(True))
    _ready()
    start = time.monotonic()
    end = start + _bounded(seconds)
    sent: list[float] = []
    received: dict[int, float] = {}
    tcp_times: list[float] = []
    tcp_error: str | None = None
    pending = b""

    def on_tcp(data: bytes) -> None:
        nonlocal pending
        pending += data
        got, pending = len(pending) // 8, pending[len(pending) // 8 * 8 :]
        tcp_times.extend([time.monotonic()] * got)

    def receive(timeout: float) -> None:
        """Take in every echo that arrives within ``timeout``."""
        nonlocal tcp_error
        for key, _ in sel.select(timeout):
            try:
                if key.data == "udp":
                    while True:
                        data = udp.recv(64)
                        received.setdefault(struct.unpack("!Q", data[:8])[0], time.monotonic())
                else:
                    data = tcp.recv(65536)
                    if not data:
                        tcp_error = tcp_error or "connection closed by peer"
                        sel.unregister(tcp)
                    else:
                        on_tcp(data)
            except BlockingIOError:
                pass
            except OSError as exc:
                if key.data == "tcp":
                    tcp_error = tcp_error or str(exc)
                    sel.unregister(tcp)

    while True:
        now = time.monotonic()
        due = start + len(sent) * interval
        if now >= due:
            if due >= end or stopped:
                break
            msg = struct.pack("!Q", len(sent))
            sent.append(now)
            udp.sendto(msg, (dst, int(port)))
            if tcp_error is None:
                try:
                    tcp.send(msg)  # 8 bytes: fits unless the connection is stuck
                except BlockingIOError:
                    pass
                except OSError as exc:
                    tcp_error = str(exc)
            continue
        receive(due - now)
    # The last echoes (and TCP retransmissions) may still be on their way.
    drain_end = time.monotonic() + 3.0
    while time.monotonic() < drain_end and (
        len(received) < len(sent) or (tcp_error is None and len(tcp_times) < len(sent))
    ):
        receive(0.05)
    tcp.close()
    return {
        "interval_ms": float(interval_ms),
        "sent": sent,
        "received": [received.get(i) for i in range(len(sent))],
        "tcp_times": tcp_times,
        "tcp_error": tcp_error,
    }


COMMANDS: dict[str, Callable[..., dict[str, Any]]] = {
    "rr-server": rr_server,
    "rr-client": rr_client,
    "sink": sink,
    "source": source,
    "echo-server": echo_server,
    "gap-client": gap_client,
}


def _realtime() -> bool:
    """SCHED_FIFO priority 1: a light probe (mostly asleep) then answers at once even on
    a host whose cores are busy, so what it measures is the network, not the run queue.
    The kernel's RT throttling (sched_rt_runtime_us) bounds it anyway. Root."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except (OSError, AttributeError):
        return False
    return True


def main(argv: list[str]) -> int:
    if argv[:1] == ["--realtime"]:
        argv = argv[1:]
        _realtime()
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: probe.py {{{','.join(COMMANDS)}}} ARGS...", file=sys.stderr)
        return 2
    print(json.dumps(COMMANDS[argv[0]](*argv[1:])), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
