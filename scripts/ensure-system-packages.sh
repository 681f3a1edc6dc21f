#!/usr/bin/env bash
# Installs the Debian packages the test suite drives as real servers, when missing:
#   chromium + chromium-driver (browser tests), orthanc + orthanc-dicomweb (PACS tests),
#   postgresql (team-mode tests). Never fails the build: a test whose server is
#   absent skips with its reason.
set -u
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ] || need+=(orthanc)
dpkg -s orthanc-dicomweb >/dev/null 2>&1 || need+=(orthanc-dicomweb)
command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir 2>/dev/null)/initdb" ] || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-system-packages: no apt-get here; tests needing ${need[*]} will skip" >&2; exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "ensure-system-packages: not root and no passwordless sudo; tests needing ${need[*]} will skip" >&2; exit 0
  fi
fi
echo "ensure-system-packages: installing ${need[*]} from Debian" >&2
$SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null 2>&1 || true
# policy-rc.d stops the packages' own services from starting on install (tests start their own).
DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${need[@]}" >/dev/null 2>&1 \
  || echo "ensure-system-packages: install of ${need[*]} failed; tests needing them will skip" >&2
exit 0
