#!/usr/bin/env bash
# One-time set-up on a fresh machine: system packages (when root), a virtual
# environment in .venv with torch, NNI 3.0 and this package (editable).
# Safe to rerun: every step is skipped or a no-op when already done.
#
#   bash scripts/setup.sh            # what the main job needs
#   bash scripts/setup.sh --test     # plus test-only tools (pytest, sshd, chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

apt_packages=(dataset-fashion-mnist)
(( want_test )) && apt_packages+=(openssh-server openssh-client chromium)
if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    missing=()
    for package in "${apt_packages[@]}"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    if (( ${#missing[@]} )); then
        echo "[setup] apt-get install ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
else
    echo "[setup] not root: skipping Debian packages (${apt_packages[*]});" \
         "Fashion-MNIST will be downloaded by torchvision instead" >&2
fi

python=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
# setuptools<80 must hold through every install: nnictl imports pkg_resources.
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "setuptools<80" > "$constraints"
extras=""
(( want_test )) && extras="[test]"
if ! .venv/bin/python -c "import torch, nni, nni_lightnas" 2>/dev/null \
   || [[ setup.cfg -nt .venv/.installed$extras ]]; then
    echo "[setup] installing into .venv (torch 2.14.1 from the local wheel copy, NNI 3.0, nni-lightnas$extras)"
    "${pip[@]}" -c "$constraints" "setuptools<80" wheel
    "${pip[@]}" -c "$constraints" torch==2.14.1 torchvision==0.29.1
    "${pip[@]}" -c "$constraints" -e ".$extras"
    touch ".venv/.installed$extras"
fi
echo "[setup] ready: $(.venv/bin/python -c 'import torch, nni; print("torch", torch.__version__, "nni", nni.__version__)' 2>/dev/null)"
