#!/usr/bin/env bash
# A container engine with Docker's API for image plug-ins, where a machine has no Docker:
# Debian's podman and runc, podman's API service on a socket in DIR, its configuration and its
# images in DIR too (nothing of this project's written to /etc). The `docker` command talks to
# it with DOCKER_HOST=unix://DIR/podman.sock.
#
#   container-engine.sh install      install podman and runc (root, apt-get), unless there
#   container-engine.sh start DIR    start the API service (no-op if it answers); prints DOCKER_HOST
#   container-engine.sh stop DIR     stop it (its whole process group)
#   container-engine.sh status DIR   exit 0 if it answers
#
# Why these settings: podman's default runtime (crun) fails on these machines' cgroups, and a
# default RLIMIT_NOFILE above the machine's hard limit is refused; runc with cgroupfs and no
# default ulimits run. Root only: rootless podman needs subuid ranges these machines lack.
set -uo pipefail

die() { echo "container-engine: $*" >&2; exit 1; }

install() {
  command -v podman >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 && return 0
  [ "$(id -u)" -eq 0 ] || die "podman is not installed; as root: apt-get install podman runc"
  command -v apt-get >/dev/null 2>&1 || die "podman is not installed and there is no apt-get"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends podman runc >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1
    apt-get install -y -qq --no-install-recommends podman runc >/dev/null \
      || die "could not install podman and runc (apt-get)"
  fi
}

answers() {
  DOCKER_HOST="unix://$1/podman.sock" timeout 20 docker info >/dev/null 2>&1
}

start() {
  local dir="$1"
  [ "$(id -u)" -eq 0 ] || die "the engine is set up for root only (see the top of this file)"
  command -v docker >/dev/null 2>&1 || die "no docker command (Docker's client) on this machine"
  install || exit 1
  mkdir -p "$dir/storage" "$dir/run"
  dir="$(cd "$dir" && pwd)"
  if answers "$dir"; then echo "DOCKER_HOST=unix://$dir/podman.sock"; return 0; fi
  cat >"$dir/containers.conf" <<EOF
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
EOF
  cat >"$dir/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$dir/storage"
runroot = "$dir/run"
EOF
  rm -f "$dir/podman.sock"
  CONTAINERS_CONF="$dir/containers.conf" CONTAINERS_STORAGE_CONF="$dir/storage.conf" \
    setsid podman system service --time=0 "unix://$dir/podman.sock" \
    </dev/null >"$dir/service.log" 2>&1 &
  echo $! >"$dir/service.pid"
  for _ in $(seq 1 60); do
    if answers "$dir"; then echo "DOCKER_HOST=unix://$dir/podman.sock"; return 0; fi
    sleep 0.5
  done
  stop "$dir"
  die "the podman API service did not answer; see $dir/service.log"
}

stop() {
  local pid dir
  [ -d "$1" ] || return 0
  dir="$(cd "$1" && pwd)"
  # only if that process is still the service (a stale file after a reboot names another)
  if pid="$(cat "$dir/service.pid" 2>/dev/null)" \
      && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "podman system service"; then
    kill -TERM -- "-$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null
  fi
  rm -f "$dir/service.pid" "$dir/podman.sock"
  # the storage driver's own mounts outlive the service: undo them (innermost first)
  awk -v d="$dir/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r \
    | while read -r mount; do umount "$mount" 2>/dev/null || umount -l "$mount"; done
}

case "${1:-}" in
  install) install ;;
  start) [ $# -eq 2 ] || die "usage: $0 start DIR"; start "$2" ;;
  stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
  status) [ $# -eq 2 ] || die "usage: $0 status DIR"; answers "$2" ;;
  *) die "usage: $0 install | start DIR | stop DIR | status DIR" ;;
esac
