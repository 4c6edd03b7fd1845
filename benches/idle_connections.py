#!/usr/bin/env python3
"""Resident memory of switchyard holding N idle keep-alive client connections.

Starts the binary on 127.0.0.1:18700, opens N connections, sends one request on each (so
they are real keep-alive connections, as an ALB holds them), leaves them idle, and reads
VmRSS of the daemon. Standard library only; loopback only.

    python3 benches/idle_connections.py --switchyard target/release/switchyard --connections 1000 10000
"""
import argparse, os, resource, selectors, signal, socket, subprocess, sys, tempfile, time

PORT = 18700
CONF = """active = "app"
[server]
listen = "127.0.0.1:{port}"
access_log = "off"
max_connections = 100000
[upstreams]
app = "127.0.0.1:9"
"""


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def hold(n):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", PORT))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(s)
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    pending = set(socks)
    deadline = time.time() + 60
    while pending and time.time() < deadline:
        for key, _ in sel.select(timeout=1):
            data = key.fileobj.recv(4096)
            if b"\r\n\r\n" in data or not data:
                pending.discard(key.fileobj)
                sel.unregister(key.fileobj)
    if pending:
        sys.exit(f"{len(pending)} connections got no response")
    return socks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--switchyard", required=True)
    ap.add_argument("--connections", type=int, nargs="+", default=[1000, 10000])
    args = ap.parse_args()
    want = max(args.connections) * 2 + 100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(want, hard)), hard))
    d = tempfile.mkdtemp(prefix="idle-bench-")
    with open(f"{d}/s.toml", "w") as f:
        f.write(CONF.format(port=PORT))
    print("| idle keep-alive connections | switchyard RSS MiB |")
    print("|--:|--:|")
    for n in args.connections:
        p = subprocess.Popen([args.switchyard, "--config", f"{d}/s.toml"], stderr=subprocess.DEVNULL,
                             env={**os.environ, "RUST_LOG": "warn"}, start_new_session=True)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", PORT), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        base = rss_kib(p.pid)
        socks = hold(n)
        time.sleep(1)
        print(f"| {n:,} | {rss_kib(p.pid) / 1024:.1f} (idle baseline {base / 1024:.1f}) |")
        for s in socks:
            s.close()
        os.killpg(p.pid, signal.SIGTERM)
        p.wait()


if __name__ == "__main__":
    main()
