#!/usr/bin/env bash
# Makes sure a headless Chromium is installed for the console's browser
# tests: installs Debian's chromium package when the machine has none.
set -euo pipefail

for b in chromium chromium-browser google-chrome; do
	command -v "$b" >/dev/null && exit 0
done
echo "ensure-chromium: installing chromium"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null || { echo "ensure-chromium: chromium is not installed" >&2; exit 1; }
