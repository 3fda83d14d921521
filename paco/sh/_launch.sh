#!/bin/bash
# The single-node launch every §c script shares (not run by hand): a random port, as in the originals, then
#   python <paco>/ENTRY --dist-url tcp://localhost:PORT --multiprocessing-distributed --world-size 1 --rank 0 FLAGS...
# Usage: _launch.sh ENTRY FLAGS...   (ENTRY relative to paco/, e.g. LT/paco_lt.py; FLAGS end with the user's "$@")
set -e
PACO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
entry=$1
shift
PORT=$((10000 + RANDOM))
exec python "$PACO/$entry" \
  --dist-url tcp://localhost:$PORT --multiprocessing-distributed --world-size 1 --rank 0 \
  "$@"
