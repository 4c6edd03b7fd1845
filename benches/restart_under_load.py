#!/usr/bin/env python3
"""Restarts under load with the listening socket held, as systemd's switchyard.socket holds
it: switchyard (SIGTERM, then a new process on the same passed socket: a binary upgrade)
vs nginx (`nginx -s quit`, then a new nginx: what `systemctl restart nginx` does).

One upstream (nginx, `return 200 ok`) on 127.0.0.1:18081. For each candidate on
127.0.0.1:18000: wrk runs N keep-alive connections for D seconds while this script
restarts the candidate R times, evenly spaced. For switchyard this script is the
supervisor: it binds the socket once and passes it to every process it starts as fd 3 with
LISTEN_FDS=1 and LISTEN_PID (sd_listen_fds(3)), so connections that arrive between two
processes wait in the socket's queue. nginx binds its own socket, so between its exit and
the next start connections are refused. Reported: wrk's requests, socket errors
(connect/read/write/timeout) and non-2xx responses.

    python3 benches/restart_under_load.py --switchyard target/release/switchyard

Needs nginx and wrk (apt-get install -y nginx wrk). Standard library only; loopback only.
"""
import argparse, os, re, shutil, signal, socket, subprocess, sys, tempfile, time

HOST, PORT, UP = "127.0.0.1", 18000, 18081

UPSTREAM = """daemon off; worker_processes 1; pid {d}/up.pid; error_log stderr warn;
events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;
  uwsgi_temp_path {d}/u; scgi_temp_path {d}/s; keepalive_requests 100000000; keepalive_timeout 300s;
  server {{ listen {host}:{up}; location / {{ return 200 "ok"; }} }} }}
"""
NGINX = """daemon off; worker_processes auto; pid {d}/nginx.pid; error_log stderr crit;
events {{ worker_connections 8192; }}
http {{ access_log off; client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;
  uwsgi_temp_path {d}/u; scgi_temp_path {d}/s; keepalive_requests 100000; keepalive_timeout 65s;
  upstream app {{ server {host}:{up}; keepalive 64; }}
  server {{ listen {host}:{port}; location / {{ proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://app; }} }} }}
"""
SWITCHYARD = """active = "app"
[server]
listen = "{host}:{port}"
access_log = "off"
[upstreams]
app = "{host}:{up}"
"""


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection((HOST, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    sys.exit(f"nothing listening on {port}")


class Switchyard:
    name = "switchyard (socket held)"

    def __init__(self, d, binary):
        self.d, self.binary = d, binary
        with open(f"{d}/switchyard.toml", "w") as f:
            f.write(SWITCHYARD.format(host=HOST, port=PORT, up=UP))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, PORT))
        self.sock.listen(4096)

    def start(self):
        fd = self.sock.fileno()
        # LISTEN_PID must be the daemon's own pid: sh sets it to $$ and execs the daemon,
        # which keeps the pid (as systemd-socket-activate does it).
        cmd = ["sh", "-c", 'LISTEN_PID=$$ exec "$0" --config "$1"', self.binary,
               f"{self.d}/switchyard.toml"]
        self.p = subprocess.Popen(cmd, preexec_fn=lambda: os.dup2(fd, 3), pass_fds=(fd,),
                                  start_new_session=True, stderr=subprocess.DEVNULL,
                                  env={**os.environ, "RUST_LOG": "warn", "LISTEN_FDS": "1"})
        # The held socket accepts even between processes: wait for an answer instead.
        end = time.time() + 10
        while time.time() < end:
            if self.p.poll() is not None:
                sys.exit("switchyard exited at startup")
            try:
                c = socket.create_connection((HOST, PORT), 1)
                c.sendall(b"GET /probe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if c.recv(12).startswith(b"HTTP/1.1 200"):
                    c.close()
                    return
                c.close()
            except OSError:
                pass
            time.sleep(0.02)
        sys.exit("switchyard did not answer")

    def restart(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait()
        self.start()

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait()
        self.sock.close()


class Nginx:
    name = "nginx (restart)"

    def __init__(self, d):
        self.d = d
        with open(f"{d}/nginx.conf", "w") as f:
            f.write(NGINX.format(d=d, host=HOST, port=PORT, up=UP))

    def start(self):
        self.p = subprocess.Popen(["nginx", "-c", f"{self.d}/nginx.conf"], start_new_session=True)
        wait_port(PORT)

    def restart(self):
        os.killpg(self.p.pid, signal.SIGQUIT)  # graceful stop, as systemctl restart
        self.p.wait()
        self.start()

    def stop(self):
        os.killpg(self.p.pid, signal.SIGTERM)
        self.p.wait()


def run(cand, args):
    cand.start()
    try:
        wrk = subprocess.Popen(["wrk", "-t2", f"-c{args.connections}", f"-d{args.duration}s",
                                f"http://{HOST}:{PORT}/api"], stdout=subprocess.PIPE, text=True)
        gap = args.duration / (args.restarts + 1)
        for _ in range(args.restarts):
            time.sleep(gap)
            cand.restart()
        out, _ = wrk.communicate()
    finally:
        cand.stop()
    total = int(re.search(r"(\d+) requests in", out).group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = [int(x) for x in sock.groups()] if sock else [0, 0, 0, 0]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"candidate": cand.name, "requests": total, "errors": errors,
            "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--switchyard", required=True)
    ap.add_argument("--duration", type=int, default=12)
    ap.add_argument("--restarts", type=int, default=5)
    ap.add_argument("--connections", type=int, default=50)
    args = ap.parse_args()
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found")
    d = tempfile.mkdtemp(prefix="restart-bench-")
    for sub in "bpfus":
        os.makedirs(f"{d}/{sub}", exist_ok=True)
    with open(f"{d}/up.conf", "w") as f:
        f.write(UPSTREAM.format(d=d, host=HOST, up=UP))
    up = subprocess.Popen(["nginx", "-c", f"{d}/up.conf"], start_new_session=True)
    wait_port(UP)
    try:
        rows = [run(Switchyard(d, os.path.abspath(args.switchyard)), args), run(Nginx(d), args)]
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        up.wait()
        shutil.rmtree(d, ignore_errors=True)
    print(f"wrk -t2 -c{args.connections} -d{args.duration}s, {args.restarts} restarts evenly spaced\n")
    print("| candidate | requests | connect errors | read errors | write errors | timeouts | non-2xx |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        c, rd, w, t = r["errors"]
        print(f"| {r['candidate']} | {r['requests']:,} | {c} | {rd} | {w} | {t} | {r['non_2xx']} |")


if __name__ == "__main__":
    main()
