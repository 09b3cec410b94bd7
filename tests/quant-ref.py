#!/usr/bin/python3
# quant-ref.py GGUF_PY TYPE IN OUT - dequantise IN (raw blocks of ggml type
# TYPE, e.g. q4_K) with gguf-py's numpy code from the llama.cpp source at
# GGUF_PY, and write the float32s to OUT.  The independent implementation
# tests/test_quant.c holds parm's plain-loop dequantisers against.
import sys

sys.path.insert(0, sys.argv[1])
import numpy as np
from gguf.constants import GGMLQuantizationType
from gguf.quants import dequantize

qtype = GGMLQuantizationType[sys.argv[2].upper()]
blocks = np.fromfile(sys.argv[3], dtype=np.uint8)
dequantize(blocks, qtype).astype(np.float32).tofile(sys.argv[4])
