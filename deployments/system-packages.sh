#!/usr/bin/env bash
# Debian packages the project needs beyond Python's: bubblewrap (the plug-in sandbox), podman
# and runc (a container engine with Docker's API for image plug-ins: container-engine.sh).
# Installs them where this runs as root with apt-get; elsewhere says what to install.
set -uo pipefail
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || {
      echo "could not install ${missing[*]}: plug-ins may have no sandbox and image plug-ins" \
           "no engine here" >&2; exit 0; }
  fi
else
  echo "note: install ${missing[*]} (as root: apt-get install ${missing[*]}); without" \
       "bubblewrap command and Python plug-ins are not run unless CIRCUS_ALLOW_UNISOLATED=1," \
       "without podman image plug-ins need a Docker engine" >&2
fi
