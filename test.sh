#!/usr/bin/env bash
# The test command: sets up .venv if needed (see setup.sh), then runs the whole suite
# (pytest.ini: the slowest tests and the time are printed; -m "not slow" gives a quick loop).
# Extra arguments go to pytest (e.g. ./test.sh -k data -x).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bash setup.sh || exit 1
export MPLBACKEND=Agg
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit "$rc"
