#!/usr/bin/env bash
# The pair-score cache on repeated RAG traffic: TREC DL 2020's 54 queries, each a request of its
# BM25 top 50 passages (W50), sent one at a time; each request repeats an earlier one (same query,
# same chunks) with probability REPEAT_SHARE (default 0.5). The same sequence against a server
# with the cache (default 64 MiB) and one without (--cache-mb 0). One JSON line per server.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED="${CROSSRANK_SHARED:-../shared}"
SHARE="${REPEAT_SHARE:-0.5}"
REQUESTS="${REQUESTS:-108}"
BIN="${CROSSRANK_BIN:-}"
if [ -z "$BIN" ]; then
  cargo build --release -q -p crossrank
  BIN="${CARGO_TARGET_DIR:-target}/release/crossrank"
fi
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT
python3 - "$SHARED/data/trec-dl20/bm25_top100_dl20.json" > "$WORK/w50-dl20-all.jsonl" <<'PY'
import json, sys
for q in json.load(open(sys.argv[1])):
    for h in q["hits"][:50]:
        print(json.dumps({"query": q["query"], "passage": h["content"]}))
PY
for cache in 64 0; do
  port=$((18000 + RANDOM % 1000))
  "$BIN" serve --port "$port" --cache-mb "$cache" > "$WORK/serve-$cache.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q listening "$WORK/serve-$cache.log" && break; sleep 0.2; done
  "$BIN" loadtest --url "http://127.0.0.1:$port" --workload "$WORK/w50-dl20-all.jsonl" \
    --concurrency 1 --requests "$REQUESTS" --repeat-share "$SHARE" --json |
    python3 -c "import json,sys; r=json.loads(sys.stdin.read()); r['cache_mb']=$cache; print(json.dumps(r))"
  curl -s "http://127.0.0.1:$port/metrics" | grep -E '^crossrank_cache_(hits|misses)_total' || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
