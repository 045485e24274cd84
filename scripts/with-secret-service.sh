#!/usr/bin/env bash
# Runs a command inside a private D-Bus session with a throwaway, unlocked gnome-keyring, so that tests
# talk to a real Secret Service and never to the user's own keyring.
# Usage: dbus-run-session -- scripts/with-secret-service.sh COMMAND...
set -euo pipefail
sandbox=$(mktemp -d)
trap 'rm -rf "$sandbox"' EXIT
export XDG_DATA_HOME="$sandbox/data" XDG_RUNTIME_DIR="$sandbox/run" XDG_CONFIG_HOME="$sandbox/config"
mkdir -p "$XDG_DATA_HOME" "$XDG_CONFIG_HOME" && mkdir -m 700 "$XDG_RUNTIME_DIR"
# gnome-keyring reads the unlock password from stdin; any non-empty throwaway value will do.
eval "$(head -c 18 /dev/urandom | base64 | gnome-keyring-daemon --unlock --components=secrets)"
export GNOME_KEYRING_CONTROL
"$@"
