#!/usr/bin/env bash
# Wrapper for compare.py's --switchyard: runs the real binary with the access log turned on
# (written to a file, combined format), to measure the access log's overhead:
#   python3 ../shared/bench/compare.py --switchyard benches/with_access_log.sh --scenario proxy-small
# SWITCHYARD_BIN (default target/release/switchyard) and ACCESS_LOG (default a temp file).
set -euo pipefail
bin=${SWITCHYARD_BIN:-$(dirname "$0")/../target/release/switchyard}
log=${ACCESS_LOG:-/tmp/switchyard-bench-access.log}
[ "$1" = "--config" ] || { echo "usage: $0 --config FILE" >&2; exit 2; }
sed -i "s|^access_log = \"off\"|access_log = \"$log\"|" "$2"
exec "$bin" --config "$2"
