#!/usr/bin/env bash
# Edge maps of the 1,797 scikit-learn digits, pooled -- cnncli in shell pipelines.
#
#   examples/pipeline.sh [OUT_DIR]        (default: the current folder)
#
# Set CNNCLI to run another command than `cnncli`, e.g. CNNCLI="python -m cnncli".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-.}
mkdir -p "$out"
# `command`: a CNNCLI of "cnncli" runs the program, not this function again (a recursion bash dies of)
cnncli() { if [ -n "${CNNCLI:-}" ]; then command $CNNCLI "$@"; else command cnncli "$@"; fi; }

# 1. Convolve every digit with four 3x3 edge filters and max-pool 2x2, through a pipe:
#    the first command writes .npy bytes to stdout (its table goes to stderr).
cnncli forward "$here/digits.h5:/images" --weights "$here/edge_filters.npy" --pad same -o - 2>/dev/null \
  | cnncli forward - --layer pool --f 2 --stride 2 -o "$out/pooled_edges.npy" --force

# 2. The same convolution streamed from HDF5 into an HDF5 record (hyperparameters as attributes) ...
cnncli forward "$here/digits.h5:/images" --weights "$here/edge_filters.npy" --pad same \
  -o "$out/edges.h5" --force --json > /dev/null

# 3. ... which is itself an input: average-pool it and keep the JSON summary.
cnncli forward "$out/edges.h5" --f 4 --mode average --json > "$out/summary.json"

# 4. Backward through the pooling of step 1 with an all-ones upstream gradient read from stdin.
python3 -c "import numpy, sys; numpy.save(sys.stdout.buffer, numpy.ones((1797, 4, 4, 4)))" \
  | cnncli backward "$out/edges.h5" --f 2 --grad - -o "$out/pool_grad.npy" --force
