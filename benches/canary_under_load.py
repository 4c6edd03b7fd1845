#!/usr/bin/env python3
"""Canary releases under load: does switchyard's `[canary]` plan step up, complete and roll
back on its own while wrk drives traffic through it, and does any client request fail
because of it?

Two upstreams run on 127.0.0.1 ephemeral ports, each a small asyncio HTTP/1.1 keep-alive
server in its own process (this script, `--serve`): blue (always 200) and green ("good":
always 200; "bad": every 5th request is a 500, i.e. 20 %). Every answer carries
`x-colour: blue|green`; both answer `/health` with 200. Each upstream counts what it
served itself, per millisecond, with its own clock (the same clock as this script's).

switchyard is started on a generated config in a temp dir: listen and admin_listen on
ephemeral loopback ports, access_log off, health_interval 200ms, `active = "blue"`, and

    [canary]
    upstream = "green"
    steps = [10, 25, 50, 100]
    interval = "3s"            # --interval
    max_error_ratio = 0.01
    affinity = "none"

wrk loads it (`wrk -t1 -c20`) for the whole scenario while this script polls the admin
`/status` every 100 ms and records (time, weight, step, state, since_unix).

Scenarios:
  bad   green answers 500 to every 5th request from the start (--bad-from-step N: from
        the moment /status first shows step N). Measured: time from the first 500 green
        served (green's own timestamp) to the rollback (the daemon's `since_unix` of the
        "rolled back" state, and the first /status poll that showed it), time from the
        canary's start to the rollback, green's requests and 500s until then and after
        it, requests per colour per step. Target: rolled back; failed requests (wrk's
        non-2xx minus green's own 500s, plus socket errors) = 0.
  good  green always 200. Target: the plan completes (state "complete"); failed
        requests 0.
  Both: no request reaches a colour the split no longer has (green at weight 0, blue at
  100) later than 5 ms after the change.

Reported per scenario: a table of the plan's segments (step, weight, state, seconds of
load, blue requests, green requests, green share), the summary lines and the daemon's
canary log lines. Requests are attributed to a segment by the upstream's 1 ms bucket, and
segment boundaries are the daemon's `since_unix`, so a step's share can be off by what one
millisecond of load holds (a request chosen just before a change reaches its upstream just
after it). Exit status 1 when a target is missed.

    python3 benches/canary_under_load.py [--binary target/release/switchyard] \\
        [--interval 3s] [--scenario bad|good|both] [--bad-from-step 1] [--json FILE]

Needs wrk (apt-get install -y wrk). Standard library only; loopback only; every process it
starts is stopped by pid at the end.
"""
import argparse
import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
STEPS = [10, 25, 50, 100]
BUCKET = 1000  # buckets per second (1 ms)
SETTLE = 0.005  # requests chosen before a weight change may reach their upstream this late


# ---------------------------------------------------------------- upstream (--serve) ----

def serve(colour, mode):
    """A raw HTTP/1.1 keep-alive server: prints its port, then serves until killed."""
    state = {"mode": mode, "n": 0, "requests": 0, "errors": 0, "first_error": None}
    buckets = {}  # int(time * BUCKET) -> [requests, errors]

    def answer(status, body, extra=b""):
        reason = b"OK" if status == 200 else b"Internal Server Error"
        return (b"HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\nx-colour: %s\r\n"
                b"content-length: %d\r\n%s\r\n" % (status, reason, colour.encode(), len(body), extra)) + body

    ok = answer(200, colour.encode())
    bad = answer(500, b"bad " + colour.encode())
    health = answer(200, b"ok")

    def handle(path):
        if path == b"/health":
            return health
        if path == b"/__stats":
            doc = dict(state, colour=colour, buckets={str(k): v for k, v in buckets.items()})
            return answer(200, json.dumps(doc).encode(), b"content-type: application/json\r\n")
        if path.startswith(b"/__mode/"):
            state["mode"] = path[8:].decode()
            return answer(200, b"mode " + path[8:])
        now = time.time()
        b = buckets.setdefault(int(now * BUCKET), [0, 0])
        b[0] += 1
        state["requests"] += 1
        state["n"] += 1
        if state["mode"] == "bad" and state["n"] % 5 == 0:
            b[1] += 1
            state["errors"] += 1
            if state["first_error"] is None:
                state["first_error"] = now
            return bad
        return ok

    class Conn(asyncio.Protocol):
        def connection_made(self, transport):
            self.t, self.buf = transport, b""

        def data_received(self, data):
            self.buf += data
            out = []
            close = False
            while True:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = self.buf[:end]
                lines = head.split(b"\r\n")
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value.strip())
                    elif name == b"connection" and b"close" in value.lower():
                        close = True
                if len(self.buf) < end + 4 + length:
                    break
                self.buf = self.buf[end + 4 + length:]
                parts = lines[0].split(b" ")
                if len(parts) < 3:
                    close = True
                    break
                if parts[2] == b"HTTP/1.0":
                    close = True
                out.append(handle(parts[1].split(b"?")[0]))
                if close:
                    break
            if out:
                self.t.write(b"".join(out))
            if close:
                self.t.close()

    async def main():
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(Conn, HOST, 0, backlog=1024, reuse_address=True)
        print(srv.sockets[0].getsockname()[1], flush=True)
        await srv.serve_forever()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    asyncio.run(main())


# --------------------------------------------------------------------------- helpers ----

def parse_duration(s):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", s.strip())
    if not m:
        sys.exit(f"--interval: {s!r} is not a duration like 500ms, 3s, 1m")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection((HOST, port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


def get_json(port, path, timeout=2):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return json.loads(r.read())
    finally:
        c.close()


CONFIG = """active = "blue"

[server]
listen = "{host}:{port}"
admin_listen = "{host}:{admin}"
pid_file = "{dir}/switchyard.pid"
access_log = "off"

[proxy]
health_interval = "200ms"

[upstreams]
blue = {{ url = "http://{host}:{blue}", health = "/health" }}
green = {{ url = "http://{host}:{green}", health = "/health" }}

[canary]
upstream = "green"
steps = {steps}
interval = "{interval}"
max_error_ratio = 0.01
affinity = "none"
"""


class Procs:
    """Every process this script starts, stopped by pid (its own process group)."""

    def __init__(self):
        self.procs = []

    def start(self, argv, **kw):
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def stop_all(self):
        for p in reversed(self.procs):
            self.stop(p)
        self.procs = []


def start_upstream(procs, colour, mode):
    p = procs.start([sys.executable, os.path.abspath(__file__), "--serve", colour, mode],
                    stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.strip().isdigit():
        sys.exit(f"upstream {colour} did not start")
    return p, int(line)


def get_text(port, path, timeout=2):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request("GET", path)
        return c.getresponse().read().decode()
    finally:
        c.close()


class Poller(threading.Thread):
    """GET /status every 100 ms; keeps (time, canary object). With `on_step` = (N, fn),
    calls fn once when the canary is first seen at step N or later."""

    def __init__(self, admin, on_step=None):
        super().__init__(daemon=True)
        self.admin, self.samples, self.stop = admin, [], threading.Event()
        self.on_step = on_step

    def run(self):
        while not self.stop.is_set():
            t = time.time()
            try:
                c = get_json(self.admin, "/status", timeout=1).get("canary")
                self.samples.append((time.time(), c))
                if self.on_step and c and (c.get("step") or 0) >= self.on_step[0]:
                    self.on_step[1]()
                    self.on_step = None
            except (OSError, ValueError) as e:
                self.samples.append((time.time(), {"error": str(e)}))
            self.stop.wait(max(0.0, 0.1 - (time.time() - t)))


def parse_wrk(out):
    total = re.search(r"(\d+) requests in", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return {
        "requests": int(total.group(1)) if total else 0,
        "socket": dict(zip(("connect", "read", "write", "timeout"),
                           (int(x) for x in sock.groups()))) if sock else
        {"connect": 0, "read": 0, "write": 0, "timeout": 0},
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "rps": float(rps.group(1)) if rps else 0.0,
    }


# ---------------------------------------------------------------------- a scenario ----

def segments(samples, load_start, load_end):
    """The plan's segments from the /status polls: [(start, end, step, weight, state)].
    A segment starts at the daemon's since_unix for it (the moment it changed the
    weight), clipped to the load."""
    segs = []
    for t, c in samples:
        if not c or "error" in c:
            continue
        key = (c["step"], c["weight"], c["state"])
        if segs and tuple(segs[-1][2:]) == key:
            continue
        start = c["since_unix"]
        # since_unix of the very first segment is the canary's start (daemon start).
        segs.append([start, None, *key])
    for i, s in enumerate(segs):
        s[1] = segs[i + 1][0] if i + 1 < len(segs) else load_end
    out = []
    for s in segs:
        a, b = max(s[0], load_start), min(s[1], load_end)
        out.append((a, max(a, b), *s[2:]))
    return out


def count(buckets, a, b):
    """Requests and errors in buckets whose middle lies in [a, b)."""
    n = e = 0
    for k, (r, err) in buckets.items():
        mid = (int(k) + 0.5) / BUCKET
        if a <= mid < b:
            n += r
            e += err
    return n, e


def run_scenario(name, args, procs, tmp):
    interval = parse_duration(args.interval)
    bad_now = name == "bad" and args.bad_from_step <= 1
    mode = "bad" if bad_now else "good"
    blue_p, blue = start_upstream(procs, "blue", "good")
    green_p, green = start_upstream(procs, "green", mode)
    port, admin = free_port(), free_port()
    d = os.path.join(tmp, name)
    os.makedirs(d, exist_ok=True)
    cfg = os.path.join(d, "switchyard.toml")
    with open(cfg, "w") as f:
        f.write(CONFIG.format(host=HOST, port=port, admin=admin, dir=d, blue=blue, green=green,
                              steps=json.dumps(STEPS), interval=args.interval))
    log_path = os.path.join(d, "switchyard.log")
    log = open(log_path, "w")
    daemon = procs.start([args.binary, "--config", cfg], stdout=log, stderr=subprocess.STDOUT,
                         env={**os.environ, "RUST_LOG": "info", "NO_COLOR": "1"})
    if not wait_port(port, daemon) or not wait_port(admin, daemon):
        log.close()
        sys.stdout.write(open(log_path).read())
        sys.exit(f"switchyard did not start (see above); config {cfg}")
    on_step = None
    if name == "bad" and not bad_now:
        on_step = (args.bad_from_step, lambda: get_text(green, "/__mode/bad"))
    poller = Poller(admin, on_step)
    poller.start()

    # bad: until the step that goes bad, then one interval (the rollback is due within a
    # tenth of it; without one the plan visibly moves on) and 3 s more at 0 %;
    # good: the whole plan, one interval complete, and one more second.
    if name == "bad":
        duration = args.bad_from_step * interval + 3
    else:
        duration = (len(STEPS) + 1) * interval + 1
    duration = max(2, int(duration + 0.999))
    load_start = time.time()
    wrk = procs.start(["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{duration}s",
                       "--timeout", "5s", f"http://{HOST}:{port}/app"],
                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = wrk.communicate()
    load_end = time.time()
    time.sleep(0.25)
    poller.stop.set()
    poller.join()
    if daemon.poll() is not None:
        log.close()
        sys.stdout.write(open(log_path).read())
        sys.exit(f"switchyard exited during the load (status {daemon.returncode}; log above)")
    status = get_json(admin, "/status")
    stats = {c: get_json(p, "/__stats") for c, p in (("blue", blue), ("green", green))}
    procs.stop(daemon)
    log.close()
    procs.stop(wrk)
    procs.stop(green_p)
    procs.stop(blue_p)

    w = parse_wrk(out)
    segs = segments(poller.samples, load_start, load_end)
    rows = []
    stray = 0  # requests to a colour the split no longer had, later than SETTLE after a change
    for a, b, step, weight, state in segs:
        nb, _ = count(stats["blue"]["buckets"], a, b)
        ng, eg = count(stats["green"]["buckets"], a, b)
        rows.append({"step": step, "weight": weight, "state": state, "seconds": b - a,
                     "blue": nb, "green": ng, "green_500": eg})
        if weight in (0, 100):
            other = "green" if weight == 0 else "blue"
            stray += count(stats[other]["buckets"], a + SETTLE, b)[0]
    canary_log = [line.rstrip() for line in open(log_path) if "canary" in line]
    other_log = [line.rstrip() for line in open(log_path)
                 if ("WARN" in line or "ERROR" in line) and "canary" not in line]

    res = {"name": name, "load_start": load_start, "wrk": w, "wrk_out": out, "rows": rows,
           "duration": duration, "status": status.get("canary"), "log": canary_log, "other_log": other_log,
           "stats": stats, "samples": poller.samples, "interval": interval}
    green_500 = stats["green"]["errors"]
    sock_errors = sum(w["socket"].values())
    res["stray"] = stray
    res["failed"] = max(0, w["non_2xx"] - green_500) + sock_errors
    res["non_2xx_minus_green_500"] = w["non_2xx"] - green_500

    first = next((c for _, c in poller.samples if c and "error" not in c), None)
    res["canary_start"] = first["since_unix"] if first else None
    final = res["status"] or {}
    res["final_state"] = final.get("state")
    rb_poll = next((t for t, c in poller.samples if c and c.get("state") == "rolled back"), None)
    rb_since = final.get("since_unix") if final.get("state") == "rolled back" else None
    res["rollback_daemon"], res["rollback_poll"] = rb_since, rb_poll
    fe = stats["green"]["first_error"]
    res["first_500"] = fe
    if rb_since is not None:
        # green requests served after the daemon set the weight to 0
        res["green_after_rollback"] = count(stats["green"]["buckets"], rb_since, float("inf"))[0]
        last = [int(k) for k, v in stats["green"]["buckets"].items() if v[0]]
        res["green_last"] = (max(last) + 1) / BUCKET if last else None
    # the canary's requests up to the rollback, from green's own counts
    if fe is not None and rb_since is not None:
        res["green_until_rollback"] = count(stats["green"]["buckets"], fe - 1 / BUCKET, rb_since)
    complete = next((c for _, c in poller.samples if c and c.get("state") == "complete"), None)
    res["complete_since"] = complete["since_unix"] if complete else None
    return res


# --------------------------------------------------------------------------- report ----

def report(r):
    name, w = r["name"], r["wrk"]
    ms = lambda s: f"{s * 1000:.0f} ms"
    bad = f"answers 500 to every 5th request from step {ARGS.bad_from_step}"
    print(f"== scenario {name}: green {bad if name == 'bad' else 'always 200'}"
          f", steps {STEPS}, interval {r['interval']:g}s, "
          f"wrk -t{ARGS.threads} -c{ARGS.connections} -d{r['duration']}s ==")
    print()
    print(f"{'step':>4} {'weight':>6}  {'state':<12} {'seconds':>7} {'blue req':>9} {'green req':>9} "
          f"{'green share':>11} {'green 500':>9}")
    for row in r["rows"]:
        tot = row["blue"] + row["green"]
        share = f"{100 * row['green'] / tot:.1f} %" if tot else "-"
        print(f"{row['step']!s:>4} {row['weight']:>5}%  {row['state']:<12} {row['seconds']:>7.2f} "
              f"{row['blue']:>9,} {row['green']:>9,} {share:>11} {row['green_500']:>9,}")
    sb, sg = r["stats"]["blue"]["requests"], r["stats"]["green"]["requests"]
    print(f"{'all':>4} {'':>6}  {'':<12} {r['duration']:>7.2f} {sb:>9,} {sg:>9,} "
          f"{100 * sg / max(1, sb + sg):>9.1f} % {r['stats']['green']['errors']:>9,}")
    print()
    print(f"wrk: {w['requests']:,} requests ({w['rps']:,.0f}/s), non-2xx {w['non_2xx']:,}, "
          f"socket errors {sum(w['socket'].values())} "
          f"(connect {w['socket']['connect']}, read {w['socket']['read']}, "
          f"write {w['socket']['write']}, timeout {w['socket']['timeout']})")
    print(f"upstreams served: blue {sb:,}, green {sg:,} (green 500s: {r['stats']['green']['errors']:,})")
    print(f"failed requests: {r['failed']} (non-2xx minus green's own 500s: {r['non_2xx_minus_green_500']}, "
          f"plus socket errors)  [target 0]")
    print(f"requests to a colour outside the split (weight 0 or 100, later than "
          f"{SETTLE * 1000:.0f} ms after the change): {r['stray']}  [target 0]")
    st = r["status"] or {}
    print(f"final /status canary: state {st.get('state')!r}, weight {st.get('weight')}, "
          f"step {st.get('step')}, "
          f"reason {st.get('reason')!r}")
    if name == "bad":
        if r["rollback_daemon"] is not None:
            cs, fe, rb, rp = r["canary_start"], r["first_500"], r["rollback_daemon"], r["rollback_poll"]
            if fe is not None:
                print(f"first 500 from green -> rolled back (daemon since_unix): {ms(rb - fe)}; "
                      f"-> seen on /status: {ms(rp - fe)}")
            print(f"canary start -> rolled back: {ms(rb - cs)} "
                  f"(load started {ms(r['load_start'] - cs)} after the canary)")
            gu = r.get("green_until_rollback")
            if gu:
                print(f"green from its first 500 to the rollback: {gu[0]:,} requests, {gu[1]:,} of them 500")
            late = r["green_after_rollback"]
            print(f"green requests after the rollback: {late:,}"
                  + (f" (the last within {ms(r['green_last'] - rb)} of it)" if late else ""))
        else:
            print("NOT rolled back")
    else:
        if r["complete_since"] is not None:
            print(f"canary start -> complete: {r['complete_since'] - r['canary_start']:.2f} s "
                  f"(plan: {len(STEPS)} intervals = {len(STEPS) * r['interval']:.2f} s)")
        else:
            print("NOT complete")
    print("daemon log (canary):")
    for line in r["log"]:
        print("  " + line)
    if r["other_log"]:
        print("daemon log (other warnings and errors):")
        for line in r["other_log"][:20]:
            print("  " + line)
    print()


def main():
    global ARGS
    if len(sys.argv) >= 2 and sys.argv[1] == "--serve":
        return serve(sys.argv[2], sys.argv[3])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default="target/release/switchyard")
    ap.add_argument("--interval", default="3s")
    ap.add_argument("--scenario", choices=["bad", "good", "both"], default="both")
    ap.add_argument("--bad-from-step", type=int, default=1, metavar="N",
                    help="bad scenario: green turns bad when the canary reaches step N "
                         "(default 1: from the start)")
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="also write the raw results (polls, buckets) to this file")
    ARGS = args = ap.parse_args()
    args.binary = os.path.abspath(args.binary)
    parse_duration(args.interval)
    if not shutil.which("wrk"):
        sys.exit("wrk not found (apt-get install -y wrk)")
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"{args.binary}: not an executable (cargo build --release)")
    names = ["bad", "good"] if args.scenario == "both" else [args.scenario]
    procs = Procs()
    tmp = tempfile.mkdtemp(prefix="canary-bench-")
    results = []
    old = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        for name in names:
            results.append(run_scenario(name, args, procs, tmp))
    finally:
        procs.stop_all()
        signal.signal(signal.SIGTERM, old)
        shutil.rmtree(tmp, ignore_errors=True)
    for r in results:
        report(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{k: v for k, v in r.items()} for r in results], f)
    missed = []
    for r in results:
        if r["stray"] > 0:
            missed.append(f"{r['name']}: {r['stray']} requests to a colour outside the split")
        if r["failed"] > 0:
            missed.append(f"{r['name']}: {r['failed']} failed requests beyond green's own 500s")
        if r["name"] == "bad" and r["final_state"] != "rolled back":
            missed.append(f"bad: not rolled back (state {r['final_state']!r})")
        if r["name"] == "good" and r["final_state"] != "complete":
            missed.append(f"good: not complete (state {r['final_state']!r})")
    print("RESULT: " + ("all targets met" if not missed else "targets missed: " + "; ".join(missed)))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
