#!/usr/bin/env bash
# A Docker engine for the deployment test.
#   deploy/engine.sh start   use the running engine, or start dockerd (as root) and record its pid
#   deploy/engine.sh stop    stop dockerd if `start` started it
# Exit 3 when no engine can be had (with the reason on stderr).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE="$ROOT/.deploy-cache"
PIDFILE="$CACHE/dockerd.pid"

case "${1:-}" in
  start)
    command -v docker >/dev/null || { echo "no docker client (apt-get install docker.io)" >&2; exit 3; }
    if docker info >/dev/null 2>&1; then echo "docker engine: already running"; exit 0; fi
    command -v dockerd >/dev/null || { echo "no docker engine and no dockerd to start (apt-get install docker.io)" >&2; exit 3; }
    [ "$(id -u)" = 0 ] || { echo "no docker engine running, and starting dockerd needs root" >&2; exit 3; }
    mkdir -p "$CACHE"
    dockerd >"$CACHE/dockerd.log" 2>&1 &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 60); do
      docker info >/dev/null 2>&1 && { echo "docker engine: started dockerd (pid $(cat "$PIDFILE"))"; exit 0; }
      kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break
      sleep 1
    done
    echo "dockerd did not become ready; its log:" >&2; tail -20 "$CACHE/dockerd.log" >&2
    kill "$(cat "$PIDFILE")" 2>/dev/null || true; rm -f "$PIDFILE"
    exit 3
    ;;
  stop)
    [ -f "$PIDFILE" ] || exit 0
    pid=$(cat "$PIDFILE")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    rm -f "$PIDFILE"
    echo "docker engine: stopped dockerd (pid $pid)"
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
