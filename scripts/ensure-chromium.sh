#!/usr/bin/env bash
# Installs Debian's chromium + chromedriver for the browser test when missing.
# Never fails the build: without a browser the browser test skips with a reason.
set -u
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: no apt-get here; the browser test will skip" >&2; exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "ensure-chromium: not root and no passwordless sudo; the browser test will skip" >&2; exit 0
  fi
fi
echo "ensure-chromium: installing chromium and chromium-driver from Debian" >&2
$SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null 2>&1 || true
DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq chromium chromium-driver >/dev/null 2>&1 \
  || echo "ensure-chromium: install failed; the browser test will skip" >&2
exit 0
