#!/bin/bash
# Regenerate etc/gridcentric-storage/gridcentric-storage.conf.sample.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -m oslo_config.generator --config-file etc/gridcentric-storage/config-generator.conf
