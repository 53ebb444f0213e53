#!/usr/bin/env bash
# One-line GPU kernel check + benchmark; needs torch, triton, and erasus' compiled _core next to the sources
# (carry python/erasus/_core.abi3.so, or pip install the abi3 wheel). Extra args go to kernels.py.
cd "$(dirname "$0")/../.." && PYTHONPATH="python${PYTHONPATH:+:$PYTHONPATH}" exec python benches/gpu/kernels.py --out "${OUT:-.}/gpu_kernels_table.md" "$@"
