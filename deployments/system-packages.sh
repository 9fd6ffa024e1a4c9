#!/usr/bin/env bash
# Debian packages the project needs beyond Python's: bubblewrap (the plug-in sandbox).
# Installs them where this runs as root with apt-get; elsewhere says what to install.
set -uo pipefail
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1
    apt-get install -y -qq "${missing[@]}" >/dev/null || {
      echo "could not install ${missing[*]}: plug-ins will have no sandbox here" >&2; exit 0; }
  fi
else
  echo "note: install ${missing[*]} (as root: apt-get install ${missing[*]}); without it" \
       "command and Python plug-ins are not run unless CIRCUS_ALLOW_UNISOLATED=1" >&2
fi
