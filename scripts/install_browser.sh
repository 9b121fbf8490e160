#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for the browser tests of the Streamlit app (called by
# `make`). Idempotent: installs only what is missing. Test tools' own browser downloads do
# not work here; the distribution's packages do.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "chromium: already installed ($(chromium --version 2>/dev/null | head -n 1))"
    exit 0
fi
SUDO=""
if [[ "$(id -u)" != "0" ]]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "chromium is missing and this is not root: install the Debian packages chromium and chromium-driver" >&2
        exit 1
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium is missing and apt-get is not available: install chromium and chromedriver" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
echo "chromium: installed ($(chromium --version 2>/dev/null | head -n 1))"
