#!/usr/bin/env bash
# Side-by-side speed comparison with ONNX Runtime (../shared/bench/peers.py) on the W50 workloads,
# 1 and 2 threads, in one run. Prints one JSON line per (engine, workload, threads).
# Setup once: python3 -m venv /tmp/peers && /tmp/peers/bin/pip install onnxruntime onnx tokenizers numpy
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PEERS_PYTHON:-/tmp/peers/bin/python}"
SHARED="${CROSSRANK_SHARED:-../shared}"
REPEAT="${REPEAT:-10}"
cargo build --release -q -p crossrank
BIN=target/release/crossrank
for w in w50-dl20 w50-scifact; do
  for t in 1 2; do
    "$PY" "$SHARED/bench/peers.py" --model "$SHARED/models/minilm-l6-rerank" --workload "$SHARED/bench/$w.jsonl" \
      --engines "${ENGINES:-ort,ort-opt,ort-int8,st}" --threads "$t" --repeat "$REPEAT"
    for q in none int8; do
      "$BIN" bench --model "$SHARED/models/minilm-l6-rerank" --workload "$SHARED/bench/$w.jsonl" --threads "$t" \
        --repeat "$REPEAT" --quantize "$q" --json
    done
  done
done
