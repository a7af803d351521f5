#!/usr/bin/env bash
# Headless Chromium for the report test: prints the path of a `chromium` binary, installing Debian's package first
# when it is missing (debian-package.sh).
exec bash "$(dirname "$0")/debian-package.sh" chromium chromium
