#!/usr/bin/env bash
# Start a local S3 server (moto) on 127.0.0.1 for the tests, with one lock around every request
# so that conditional PUTs (If-Match / If-None-Match) are atomic, and create the test bucket.
#
#   scripts/s3-server.sh start   -> prints the env exports the tests need
#   scripts/s3-server.sh stop
#
# State: .s3/ (venv, pid file, log). Port: $ZF_S3_PORT (default 9123). Bucket: $ZF_TEST_S3_BUCKET.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
state="$here/.s3"
port="${ZF_S3_PORT:-9123}"
bucket="${ZF_TEST_S3_BUCKET:-zf-test}"
venv="$state/venv"

start() {
  mkdir -p "$state"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'moto[s3]==5.2.5' flask flask-cors >&2
  fi
  cat > "$state/serve.py" <<'PY'
"""moto's S3 app served one request at a time (atomic check-and-write for conditional PUTs)."""
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.moto_server.werkzeug_app import MotoRequestHandler
from werkzeug.serving import run_simple

inner = DomainDispatcherApplication(create_backend_app)
gate = threading.Lock()


def app(environ, start_response):
    with gate:
        chunks = inner(environ, start_response)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
    return [body]


run_simple("127.0.0.1", int(sys.argv[1]), app, threaded=True, request_handler=MotoRequestHandler)
PY
  if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
    echo "S3 server already running (pid $(cat "$state/pid"))" >&2
  else
    "$venv/bin/python" "$state/serve.py" "$port" > "$state/log" 2>&1 &
    echo $! > "$state/pid"
    for _ in $(seq 1 100); do
      curl -s -o /dev/null "http://127.0.0.1:$port/" && break
      sleep 0.1
    done
  fi
  curl -sf -o /dev/null -X PUT "http://127.0.0.1:$port/$bucket" || true
  curl -sf -o /dev/null "http://127.0.0.1:$port/$bucket" || { echo "S3 server did not come up; see $state/log" >&2; exit 1; }
  echo "export ZF_S3_ENDPOINT_URL=http://127.0.0.1:$port ZF_S3_ACCESS_KEY=test ZF_S3_SECRET_KEY=test ZF_S3_REGION=us-east-1 ZF_TEST_S3_BUCKET=$bucket"
}

stop() {
  if [ -f "$state/pid" ]; then
    kill "$(cat "$state/pid")" 2>/dev/null || true
    rm -f "$state/pid"
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
