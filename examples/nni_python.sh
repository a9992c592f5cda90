#!/bin/sh
# The Python interpreter that has nni-lightnas, for the trialCommand of the shipped nnictl configs:
#
#   trialCommand: sh ../nni_python.sh -m nni_lightnas.trials.bte ...
#
# nnictl runs a trial with the PATH of the shell that started it, where `python3` may be another
# interpreter (then the trial fails with "No module named 'nni_lightnas'"). This script runs the
# first of these that can import nni_lightnas:
#   1. $NNI_LIGHTNAS_PYTHON (set it before `nnictl create` to choose the interpreter yourself);
#   2. this checkout's virtual environment, ../.venv/bin/python from this folder (scripts/setup.sh);
#   3. python3 on PATH.
# None can: exit status 127 and a message naming what to set. `nni-lightnas evolve` writes
# configs with its own interpreter's absolute path instead.
here=$(cd "$(dirname "$0")" && pwd)
check='import importlib.util, sys; sys.exit(importlib.util.find_spec("nni_lightnas") is None)'
for candidate in "${NNI_LIGHTNAS_PYTHON:-}" "$here/../.venv/bin/python" "$(command -v python3 || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c "$check" 2>/dev/null; then
        exec "$candidate" "$@"
    fi
done
echo "nni_python.sh: no interpreter with nni-lightnas (tried NNI_LIGHTNAS_PYTHON='${NNI_LIGHTNAS_PYTHON:-}'," \
     "$here/../.venv/bin/python and python3 on PATH); set NNI_LIGHTNAS_PYTHON=/path/to/venv/bin/python" \
     "before nnictl create" >&2
exit 127
