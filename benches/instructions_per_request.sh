#!/usr/bin/env bash
# User-space instructions per request of switchyard, counted by valgrind's callgrind.
#
#   benches/instructions_per_request.sh [path/to/switchyard]
#
# The binary defaults to target/release/switchyard (build it first: cargo build --release).
# Needs valgrind (callgrind), python3 and taskset; uses 127.0.0.1 only, on ephemeral ports.
# Takes about 20 s with the defaults.
#
# Two cases, by default on a single keep-alive connection sending GETs one after the other
# (each as wrk sends it: `GET <path> HTTP/1.1` + `Host`), every response checked (200, its
# exact Content-Length):
#   proxy-small   GET /api/small: no such file, so proxied to the active upstream, a tiny
#                 python server on 127.0.0.1 (not under valgrind) answering a fixed 100-byte
#                 body with keep-alive;
#   static-small  GET /small.bin: a 1 KiB file from the web root.
# The config is compare.py's (../shared/bench): a web root, one upstream, access_log off.
#
# Method: switchyard runs under `valgrind --tool=callgrind` (no cache simulation, collecting
# from the start), pinned to one CPU with taskset so that it starts one worker thread
# (workers = available CPUs; valgrind runs the threads one at a time anyway). The client
# sends N1 requests, closes, switchyard gets SIGTERM and exits cleanly, and callgrind's
# total Ir (instructions executed in user space, all threads, startup and shutdown
# included: the `totals:` line) is read from its output. The same again with N2 = 2 * N1
# requests. Startup, shutdown, the connections and the first request's one-time costs
# (upstream connection, file cache fill) are the same in both runs and cancel:
#   instructions per request = (Ir(N2) - Ir(N1)) / (N2 - N1).
# What does not cancel is work paid per second rather than per request (each worker's
# 100 ms housekeeping tick): the N2 run lasts longer (wall-clock seconds are printed per
# run), but idle switchyard under callgrind runs about 50,000 instructions a second, so
# that is some 20 per request. Kernel work (syscalls) is not counted at all.
#
# One connection means every request pays a whole trip through the event loop (epoll_wait,
# the timer wheel, clock reads, waking the task) on each side it waits on. Under load
# (wrk -c50) one trip serves many ready connections, so CONNS=50 (requests sent on 50
# connections at once, then all answers read) gives lower figures: about 1,500 fewer per
# proxied request and 1,000 fewer per file. Either way runs agree within about 0.5 %;
# compare builds with the same CONNS.
#
# Environment: N1 (default 2000), RUNS per case (default 2), CASES (default
# "proxy-small static-small"), CONNS (default 1; N1 must be a multiple of it), CPUS for
# taskset (default 0), KEEP_TMP=1 keeps the temp dir (configs, callgrind outputs to read
# with callgrind_annotate, switchyard's log).
set -euo pipefail

bin=${1:-$(dirname "$0")/../target/release/switchyard}
n1=${N1:-2000}
n2=$((2 * n1))
runs=${RUNS:-2}
cases=${CASES:-proxy-small static-small}
cpus=${CPUS:-0}
conns=${CONNS:-1}

[ -x "$bin" ] || { echo "error: $bin is not an executable (cargo build --release?)" >&2; exit 1; }
[ $((n1 % conns)) = 0 ] || { echo "error: N1 ($n1) must be a multiple of CONNS ($conns)" >&2; exit 2; }
for c in $cases; do
    case $c in proxy-small | static-small) ;; *) echo "error: unknown case $c (proxy-small, static-small)" >&2; exit 2 ;; esac
done
for tool in valgrind python3 taskset; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found in PATH" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-callgrind.XXXXXX")
upstream_pid=""
switchyard_pid=""
cleanup() {
    # Only what this script started, by pid. A switchyard still running here is from a run
    # that failed or was interrupted: its profile is not wanted.
    [ -z "$switchyard_pid" ] || kill -KILL "$switchyard_pid" 2>/dev/null || true
    [ -z "$upstream_pid" ] || kill "$upstream_pid" 2>/dev/null || true
    for pid in $switchyard_pid $upstream_pid; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "${KEEP_TMP:-0}" = 1 ]; then
        echo "kept $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers (python, standard library only) ---------------------------------------------

# The upstream: answers every request on a connection with the same 100-byte body,
# keep-alive, one write per response. Writes its port to the file given as argument.
cat >"$tmp/upstream.py" <<'EOF'
import os, socket, sys, threading
BODY = ("switchyard-bench-upstream-" + "0123456789" * 8)[:100].encode()
RESP = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
        % len(BODY)) + BODY

def serve(c):
    buf = b""
    with c:
        while True:
            while b"\r\n\r\n" not in buf:
                data = c.recv(65536)
                if not data:
                    return
                buf += data
            head, buf = buf.split(b"\r\n\r\n", 1)  # GETs only: no request body
            c.sendall(RESP)

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(64)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(s.getsockname()[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    c, _ = s.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=serve, args=(c,), daemon=True).start()
EOF

# The client: PORT PATH N EXPECTED_BODY_LENGTH CONNS. Waits (up to 120 s) for the port to
# accept, opens CONNS keep-alive connections, then N / CONNS times: one GET on every
# connection, then every response read and checked. CONNS = 1: strictly one request after
# the other.
cat >"$tmp/client.py" <<'EOF'
import socket, sys, time
port, path, n, want, conns = (int(sys.argv[1]), sys.argv[2], int(sys.argv[3]),
                              int(sys.argv[4]), int(sys.argv[5]))
req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()

def connect():
    deadline = time.monotonic() + 120
    while True:
        try:
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                sys.exit(f"client: nothing accepts on 127.0.0.1:{port}")
            time.sleep(0.1)

def read_response(s, buf, i):
    """Reads response number i from s (buf: bytes already read); returns the bytes after it."""
    while b"\r\n\r\n" not in buf:
        data = s.recv(65536)
        if not data:
            sys.exit(f"client: connection closed before response {i} of {n}")
        buf += data
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 200 "):
        sys.exit(f"client: response {i}: {lines[0]!r}")
    length = [int(l.split(":", 1)[1]) for l in lines[1:] if l.lower().startswith("content-length:")]
    if length != [want]:
        sys.exit(f"client: response {i}: Content-Length {length}, want {want}")
    while len(buf) < want:
        data = s.recv(65536)
        if not data:
            sys.exit(f"client: connection closed inside body {i}")
        buf += data
    return buf[want:]

socks = [connect() for _ in range(conns)]
bufs = [b""] * conns
done = 0
for _ in range(n // conns):
    for s in socks:
        s.sendall(req)
    for k, s in enumerate(socks):
        done += 1
        bufs[k] = read_response(s, bufs[k], done)
for s in socks:
    s.close()
EOF

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- setup ---------------------------------------------------------------------------------

mkdir "$tmp/www"
# 1 KiB of fixed bytes (deterministic, unlike compare.py's random ones).
python3 -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 4)' >"$tmp/www/small.bin"

python3 "$tmp/upstream.py" "$tmp/upstream.port" &
upstream_pid=$!
for _ in $(seq 100); do
    [ -s "$tmp/upstream.port" ] && break
    kill -0 "$upstream_pid" 2>/dev/null || { echo "error: the upstream exited" >&2; exit 1; }
    sleep 0.1
done
[ -s "$tmp/upstream.port" ] || { echo "error: the upstream never opened its port" >&2; exit 1; }
upstream_port=$(cat "$tmp/upstream.port")

port=$(free_port)
cat >"$tmp/switchyard.toml" <<EOF
active = "blue"
[server]
listen = "127.0.0.1:$port"
access_log = "off"
[static]
root = "$tmp/www"
[upstreams]
blue = "127.0.0.1:$upstream_port"
EOF
"$bin" check --config "$tmp/switchyard.toml" >/dev/null

# --- one measurement -------------------------------------------------------------------------

# measure NAME PATH BODY_LENGTH N: runs switchyard under callgrind for N requests; sets IR
# (total instructions) and SECS (wall-clock seconds of the whole run).
measure() {
    local name=$1 path=$2 want=$3 n=$4 out start rc
    out="$tmp/callgrind.$name.$n.$((++runs_done)).out"
    start=$EPOCHREALTIME
    taskset -c "$cpus" valgrind --tool=callgrind --cache-sim=no --collect-atstart=yes \
        --callgrind-out-file="$out" "$bin" --config "$tmp/switchyard.toml" \
        >>"$tmp/switchyard.log" 2>&1 &
    switchyard_pid=$!
    python3 "$tmp/client.py" "$port" "$path" "$n" "$want" "$conns"
    # Let it notice the client's close, then stop it the way systemd does (graceful SIGTERM);
    # callgrind writes its output as the process exits.
    sleep 0.5
    kill -TERM "$switchyard_pid"
    for _ in $(seq 600); do
        kill -0 "$switchyard_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$switchyard_pid" 2>/dev/null &&
        { echo "error: switchyard still running 60 s after SIGTERM (log: $tmp/switchyard.log)" >&2; exit 1; }
    rc=0
    wait "$switchyard_pid" || rc=$?
    switchyard_pid=""
    [ "$rc" = 0 ] || { echo "error: switchyard exited with status $rc (log: $tmp/switchyard.log)" >&2; exit 1; }
    IR=$(awk '/^totals:/ { t = $2 } /^summary:/ { s = $2 } END { print (t != "" ? t : s) }' "$out")
    [ -n "$IR" ] || { echo "error: no total in $out" >&2; exit 1; }
    SECS=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
}
runs_done=0

# Worker threads switchyard will start under this pinning (= CPUs it may run on).
workers=$(taskset -c "$cpus" python3 -c 'import os; print(len(os.sched_getaffinity(0)))')
echo "switchyard: $bin ($(git -C "$(dirname "$bin")" rev-parse --short HEAD 2>/dev/null || echo '?'))," \
    "$workers worker thread(s) (taskset -c $cpus); $(valgrind --version);" \
    "$conns client connection(s); N1=$n1 N2=$n2"
echo

printf '%-13s %3s %6s %6s %14s %14s %10s %9s %9s\n' \
    case run N1 N2 "Ir(N1)" "Ir(N2)" "Ir/req" "s(N1)" "s(N2)"
for c in $cases; do
    case $c in
        proxy-small) path=/api/small want=100 ;;
        static-small) path=/small.bin want=1024 ;;
    esac
    for r in $(seq "$runs"); do
        measure "$c" "$path" "$want" "$n1"
        ir1=$IR s1=$SECS
        measure "$c" "$path" "$want" "$n2"
        ir2=$IR s2=$SECS
        per=$(awk -v a="$ir1" -v b="$ir2" -v n="$((n2 - n1))" 'BEGIN { printf "%.0f", (b - a) / n }')
        printf '%-13s %3d %6d %6d %14d %14d %10d %9s %9s\n' \
            "$c" "$r" "$n1" "$n2" "$ir1" "$ir2" "$per" "$s1" "$s2"
    done
done
