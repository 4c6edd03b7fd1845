#!/usr/bin/env python3
"""Blue/green switching under load: switchyard (edit + SIGHUP) vs nginx (edit + nginx -s reload).

Two upstreams (nginx, `return 200 blue` / `return 200 green`) on 127.0.0.1:18081/18082.
For each candidate on 127.0.0.1:18000: wrk runs N keep-alive connections for D seconds
while this script switches the active upstream S times, evenly spaced. After each switch
it measures how long until a fresh request through the candidate is answered by the new
color. Reported: wrk's requests, socket errors (connect/read/write/timeout) and non-2xx
responses, and the switch latency (median, max).

    python3 benches/switch_under_load.py --switchyard target/release/switchyard

Needs nginx and wrk (apt-get install -y nginx wrk). Standard library only; loopback only.
"""
import argparse, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, threading, time
import http.client

HOST, PORT, BLUE, GREEN = "127.0.0.1", 18000, 18081, 18082

UPSTREAM = """daemon off; worker_processes 1; pid {d}/up-{name}.pid; error_log stderr warn;
events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;
  uwsgi_temp_path {d}/u; scgi_temp_path {d}/s; keepalive_requests 100000000; keepalive_timeout 300s;
  server {{ listen {host}:{port}; location / {{ return 200 "{name}"; }} }} }}
"""
NGINX = """daemon off; worker_processes auto; pid {d}/nginx.pid; error_log stderr warn;
events {{ worker_connections 8192; }}
http {{ access_log off; client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;
  uwsgi_temp_path {d}/u; scgi_temp_path {d}/s; keepalive_requests 100000; keepalive_timeout 65s;
  upstream app {{ server {host}:{up}; keepalive 64; }}
  server {{ listen {host}:{port}; location / {{ proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://app; }} }} }}
"""
SWITCHYARD = """active = "{active}"
[server]
listen = "{host}:{port}"
access_log = "off"
[upstreams]
blue = "{host}:{blue}"
green = "{host}:{green}"
"""


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection((HOST, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listening on {port}")


def color():
    try:
        c = http.client.HTTPConnection(HOST, PORT, timeout=2)
        c.request("GET", "/probe")
        body = c.getresponse().read().decode()
        c.close()
        return body
    except OSError:
        return None


class Nginx:
    name = "nginx"

    def __init__(self, d):
        self.d = d

    def write(self, active):
        up = BLUE if active == "blue" else GREEN
        with open(f"{self.d}/nginx.conf", "w") as f:
            f.write(NGINX.format(d=self.d, host=HOST, port=PORT, up=up))

    def start(self):
        self.write("blue")
        self.p = subprocess.Popen(["nginx", "-c", f"{self.d}/nginx.conf"], start_new_session=True)
        wait_port(PORT)

    def switch(self, active):
        self.write(active)
        subprocess.run(["nginx", "-c", f"{self.d}/nginx.conf", "-s", "reload"], check=True)

    def stop(self):
        os.killpg(self.p.pid, signal.SIGTERM)
        self.p.wait()


class Switchyard:
    name = "switchyard"

    def __init__(self, d, binary):
        self.d, self.binary = d, binary

    def write(self, active):
        with open(f"{self.d}/switchyard.toml", "w") as f:
            f.write(SWITCHYARD.format(active=active, host=HOST, port=PORT, blue=BLUE, green=GREEN))

    def start(self):
        self.write("blue")
        self.p = subprocess.Popen([self.binary, "--config", f"{self.d}/switchyard.toml"],
                                  start_new_session=True, stderr=subprocess.DEVNULL,
                                  env={**os.environ, "RUST_LOG": "warn"})
        wait_port(PORT)

    def switch(self, active):
        self.write(active)
        os.kill(self.p.pid, signal.SIGHUP)

    def stop(self):
        os.killpg(self.p.pid, signal.SIGTERM)
        self.p.wait()


def run(cand, args):
    cand.start()
    try:
        wrk = subprocess.Popen(["wrk", "-t2", f"-c{args.connections}", f"-d{args.duration}s",
                                f"http://{HOST}:{PORT}/api"], stdout=subprocess.PIPE, text=True)
        latencies = []
        gap = args.duration / (args.switches + 1)
        active = "blue"
        for _ in range(args.switches):
            time.sleep(gap)
            active = "green" if active == "blue" else "blue"
            t = time.monotonic()
            cand.switch(active)
            while color() != active:
                if time.monotonic() - t > 10:
                    break
            latencies.append((time.monotonic() - t) * 1000)
        out, _ = wrk.communicate()
    finally:
        cand.stop()
    total = int(re.search(r"(\d+) requests in", out).group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    socket_errors = sum(int(x) for x in sock.groups()) if sock else 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "candidate": cand.name, "requests": total, "socket_errors": socket_errors,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0, "switches": args.switches,
        "switch_ms_median": statistics.median(latencies), "switch_ms_max": max(latencies),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--switchyard", required=True)
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--switches", type=int, default=20)
    ap.add_argument("--connections", type=int, default=50)
    args = ap.parse_args()
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found")
    d = tempfile.mkdtemp(prefix="switch-bench-")
    for sub in "bpfus":
        os.makedirs(f"{d}/{sub}", exist_ok=True)
    ups = []
    for name, port in (("blue", BLUE), ("green", GREEN)):
        with open(f"{d}/up-{name}.conf", "w") as f:
            f.write(UPSTREAM.format(d=d, host=HOST, port=port, name=name))
        ups.append(subprocess.Popen(["nginx", "-c", f"{d}/up-{name}.conf"], start_new_session=True))
        wait_port(port)
    try:
        rows = [run(Switchyard(d, os.path.abspath(args.switchyard)), args), run(Nginx(d), args)]
    finally:
        for u in ups:
            os.killpg(u.pid, signal.SIGTERM)
            u.wait()
        shutil.rmtree(d, ignore_errors=True)
    print(f"wrk -t2 -c{args.connections} -d{args.duration}s, {args.switches} switches evenly spaced\n")
    print("| candidate | requests | socket errors | non-2xx | switches | switch -> new color, median ms | max ms |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        print(f"| {r['candidate']} | {r['requests']:,} | {r['socket_errors']} | {r['non_2xx']} | {r['switches']} "
              f"| {r['switch_ms_median']:.1f} | {r['switch_ms_max']:.1f} |")


if __name__ == "__main__":
    main()
