#!/usr/bin/env bash
# Creates .venv and installs requirements.txt into it, once. Sourced by demo.sh and test.sh;
# a second run sees the stamp (a hash of requirements.txt) and installs nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PY --version)"
    $PY -m venv .venv
fi
want=$(sha256sum requirements.txt | cut -d' ' -f1)
have=$(cat .venv/.requirements.sha256 2>/dev/null || true)
if [ "$want" != "$have" ]; then
    echo "setup: installing requirements.txt into .venv (torch is large: a few minutes the first time)"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
    echo "$want" > .venv/.requirements.sha256
fi
