#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages the test suite drives for real: a Secret Service (gnome-keyring in a
# private D-Bus session), oathtool as an independent TOTP verifier, Chromium for the browser test, curl
# to reuse the cookie jars keyctl login writes, Node and the webauthn Ruby gem for the interop relying
# parties (tests/interop; @simplewebauthn/server itself comes from npm, `npm ci` in the tests), PostgreSQL
# for the server's storage tests (tests/postgres.py starts a throwaway cluster of its own and never touches
# one the package may have started); for `keyctl virtual attach` (tests/vm): QEMU, a Debian kernel with the
# uhid module and busybox to boot a throwaway guest, and libfido2's tools as a foreign client; man-db and
# groff to render the man pages, bash-completion, zsh and fish to test shell completion for real (tests/cli).
set -euo pipefail
# The guest's kernel: Debian's and Ubuntu's generic kernel packages have different names.
kernel=linux-image-amd64
grep -qsx 'ID=ubuntu' /etc/os-release && kernel=linux-image-generic
packages=(gnome-keyring dbus-daemon dbus-x11 oathtool chromium curl ruby-webauthn ruby-webrick postgresql
  qemu-system-x86 "$kernel" busybox-static fido2-tools man-db groff-base bash-completion zsh fish)
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
