#!/usr/bin/env bash
# Headless Chromium and its WebDriver for the web demo's browser test (Debian packages
# chromium and chromium-driver). Only needed to run tests/test_tools/test_web_demo_browser.py;
# tools/run_tests.sh calls this when chromium is missing. Needs root (CI runs as root).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install_chromium: chromium is missing and this is not root on a Debian system; install it with" >&2
  echo "  sudo apt-get install chromium chromium-driver   (the browser test is skipped meanwhile)" >&2
  exit 1
fi
echo "[install_chromium] apt-get install chromium chromium-driver" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium chromium-driver
