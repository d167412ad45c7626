#!/usr/bin/env bash
# The CUDA backend's check on a machine with an NVIDIA GPU: parity and speed, one JSON line per
# row on stdout, in under 8 minutes on an H100 / H200.
#
#   scripts/gpu-check.sh [--bin PATH] [--shared DIR] [--repeat N] [--skip-large] [--device cpu]
#
# (`--device cpu` runs the same rows on the CPU in f32 only: a dry run of this script where
# there is no GPU.)
# Needs: the crossrank binary (built elsewhere: `cargo build --release -p crossrank`, then
# `strip`; default dist/crossrank or target/release/crossrank), the bundled model
# (models/minilm-l6-rerank), ../shared (or ./shared) for the fixtures and the W50 workloads,
# Python with torch (CUDA), transformers and sentence-transformers, and the CUDA libraries:
# the driver's libcuda, plus cuBLAS and NVRTC from the pip nvidia-* packages torch brings (found
# here and handed over in CROSSRANK_CUDA_LIBS / LD_LIBRARY_PATH) or a toolkit. No network.
#
# Rows:
#   {"row": "gpu"}                 what `crossrank models --json` found
#   {"row": "parity-fixture"}      --device cuda per dtype against the reference fixtures
#                                  (f32: max |logit diff| <= 1e-3; f16 / bf16: Spearman >= 0.999)
#   {"row": "parity-cpu"}          --device cuda per dtype against --device cpu f32 on W50
#   {"row": "speed"}               median / p95 ms per W50-dl20 request, crossrank and
#                                  sentence-transformers CrossEncoder on the same GPU and weights
#   {"row": "summary"}             the issue's goals, met or not
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=""
SHARED=""
REPEAT=50
SKIP_LARGE=0
DEVICE=cuda
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --shared) SHARED=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --skip-large) SKIP_LARGE=1; shift ;;
    --device) DEVICE=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$BIN" ]; then
  for b in "$ROOT/dist/crossrank" "$ROOT/target/release/crossrank"; do
    if [ -x "$b" ]; then BIN=$b; break; fi
  done
fi
[ -n "$BIN" ] && [ -x "$BIN" ] || { echo "no crossrank binary (--bin PATH)" >&2; exit 2; }
if [ -z "$SHARED" ]; then
  for s in "$ROOT/shared" "$ROOT/../shared"; do
    if [ -d "$s/bench" ]; then SHARED=$s; break; fi
  done
fi
[ -n "$SHARED" ] || { echo "no shared folder with bench/ and fixtures/ (--shared DIR)" >&2; exit 2; }
PY=${PYTHON:-python3}
# CUDA libraries: every lib folder of the pip nvidia-* packages, then a toolkit's.
LIBS=$("$PY" - <<'EOF'
import glob, os
dirs = []
try:
    import nvidia
    for base in list(nvidia.__path__):
        dirs += sorted(glob.glob(os.path.join(base, "*", "lib")))
        dirs += sorted(glob.glob(os.path.join(base, "*", "*", "lib")))
except Exception:
    pass
for d in ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"]:
    if os.path.isdir(d):
        dirs.append(d)
print(":".join(dict.fromkeys(dirs)))
EOF
)
export CROSSRANK_CUDA_LIBS="$LIBS"
export LD_LIBRARY_PATH="$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CROSSRANK_DEFAULT_MODEL="$ROOT/models/minilm-l6-rerank"
exec "$PY" - "$BIN" "$SHARED" "$ROOT" "$REPEAT" "$SKIP_LARGE" "$DEVICE" <<'EOF'
import json, os, shutil, statistics, subprocess, sys, tempfile, time

BIN, SHARED, ROOT, REPEAT, SKIP_LARGE = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
DEVICE = sys.argv[6]
T0 = time.time()
WORK = tempfile.mkdtemp(prefix="crossrank-gpu-check-")
DTYPES = ["f32", "f16", "bf16"] if DEVICE != "cpu" else ["f32"]
summary = {}


def emit(**row):
    row["elapsed_s"] = round(time.time() - T0, 1)
    print(json.dumps(row), flush=True)


def crossrank(args):
    p = subprocess.run([BIN] + args, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"crossrank {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()[-2000:]}")
    return p


def pairs_file(name, rows):
    path = os.path.join(WORK, name + ".jsonl")
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps({"query": r["query"], "passage": r["passage"]}) + "\n")
    return path


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def logits_of(r):
    return r["logits"] if "logits" in r else [r["logit"]]


def score(model, pairs, device, dtype=None):
    args = ["score", "--pairs", pairs, "--model", model, "--device", device]
    if dtype:
        args += ["--dtype", dtype]
    p = crossrank(args)
    return [logits_of(json.loads(l)) for l in p.stdout.splitlines() if l.strip()]


def key(logits):
    return logits[0] if len(logits) == 1 else logits[1] - logits[0]


def ranks(xs):
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2.0
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    num = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    den = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return num / den if den else 1.0


def compare(got, want):
    diff = max(abs(g - w) for gl, wl in zip(got, want) for g, w in zip(gl, wl))
    rho = spearman([key(g) for g in got], [key(w) for w in want])
    return diff, rho


def parity_row(kind, name, dtype, got, want):
    diff, rho = compare(got, want)
    ok = diff <= 1e-3 if dtype == "f32" else rho >= 0.999
    emit(row=kind, model=name, dtype=dtype, pairs=len(got), max_abs_logit_diff=diff, spearman=rho, passed=ok)
    summary.setdefault("parity_failures", 0)
    if not ok:
        summary["parity_failures"] += 1


def attempt(what, fn):
    try:
        return fn()
    except Exception as e:  # one failing row must not hide the others
        emit(row="error", what=what, error=str(e)[-3000:])
        summary.setdefault("errors", []).append(what)
        return None


# 1. The GPU crossrank sees.
def gpu_row():
    p = crossrank(["models", "--json"])
    info = json.loads(p.stdout)
    emit(row="gpu", gpu=info.get("gpu"), binary=BIN, cuda_libs=os.environ.get("CROSSRANK_CUDA_LIBS", ""))
    if DEVICE != "cpu" and not info.get("gpu", {}).get("device"):
        raise RuntimeError("crossrank found no GPU: " + str(info.get("gpu")))


attempt("gpu", gpu_row)

# 2. Parity with the reference fixtures (PyTorch fp32 CPU outputs).
minilm = os.path.join(ROOT, "models/minilm-l6-rerank")
fixtures = [("minilm-l6-rerank", minilm, os.path.join(SHARED, "fixtures/minilm-l6-rerank.pairs.jsonl"))]
for tiny in ["tiny-bert-1label", "tiny-bert-2label", "tiny-xlmr"]:
    d = os.path.join(SHARED, "fixtures", tiny)
    fixtures.append((tiny, d, os.path.join(d, "reference.jsonl")))
for name, model, ref in fixtures:
    if not os.path.exists(ref):
        emit(row="skipped", what=f"parity-fixture {name}", why=f"{ref} not found")
        continue
    rows = read_jsonl(ref)
    want = [logits_of(r) for r in rows]
    pf = pairs_file("fixture-" + name, rows)
    for dt in DTYPES:
        attempt(f"parity-fixture {name} {dt}",
                lambda: parity_row("parity-fixture", name, dt, score(model, pf, DEVICE, dt), want))

# 3. Parity with the CPU engine (fp32) on the W50 workloads.
for wl in ["w50-dl20", "w50-scifact"]:
    path = os.path.join(SHARED, "bench", wl + ".jsonl")
    if not os.path.exists(path):
        emit(row="skipped", what=f"parity-cpu {wl}", why=f"{path} not found")
        continue
    cpu = attempt(f"cpu {wl}", lambda: score(minilm, path, "cpu"))
    if cpu is None:
        continue
    for dt in DTYPES:
        attempt(f"parity-cpu {wl} {dt}",
                lambda: parity_row("parity-cpu", "minilm-l6-rerank/" + wl, dt, score(minilm, path, DEVICE, dt), cpu))

# 4. Speed, side by side with sentence-transformers on the same GPU and weights.
W50 = os.path.join(SHARED, "bench", "w50-dl20.jsonl")
pairs = [(r["query"], r["passage"]) for r in read_jsonl(W50)]


def bench_crossrank(name, model, dt):
    p = crossrank(["bench", "--workload", W50, "--model", model, "--device", DEVICE, "--dtype", dt,
                   "--repeat", str(REPEAT), "--warmup", "5", "--json"])
    r = json.loads(p.stdout.strip().splitlines()[-1])
    emit(row="speed", engine="crossrank", model=name, dtype=dt, median_ms=r["median_ms"], p95_ms=r["p95_ms"],
         pairs=r["pairs"], tokens=r["tokens"], device=r.get("device"), device_memory_bytes=r.get("device_memory_bytes"))
    summary[f"crossrank {name} {dt}"] = r["median_ms"]


def bench_st(name, model, dt):
    import numpy as np
    import torch
    from sentence_transformers import CrossEncoder

    torch_dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[dt]
    ce = CrossEncoder(model, device=DEVICE, model_kwargs={"dtype": torch_dtype})
    sync = torch.cuda.synchronize if DEVICE != "cpu" else (lambda: None)
    for _ in range(5):
        ce.predict(pairs, show_progress_bar=False)
    ms = []
    for _ in range(REPEAT):
        sync()
        t = time.perf_counter()
        ce.predict(pairs, show_progress_bar=False)
        sync()
        ms.append((time.perf_counter() - t) * 1000)
    med, p95 = float(np.percentile(ms, 50)), float(np.percentile(ms, 95))
    emit(row="speed", engine="sentence-transformers", model=name, dtype=dt, median_ms=med, p95_ms=p95,
         pairs=len(pairs), torch=torch.__version__,
         gpu=torch.cuda.get_device_name(0) if DEVICE != "cpu" else None)
    summary[f"st {name} {dt}"] = med
    del ce
    if DEVICE != "cpu":
        torch.cuda.empty_cache()


def side_by_side(name, model):
    for dt in DTYPES:
        attempt(f"speed crossrank {name} {dt}", lambda: bench_crossrank(name, model, dt))
        attempt(f"speed st {name} {dt}", lambda: bench_st(name, model, dt))


side_by_side("minilm-l6-rerank", minilm)


# 5. A bge-reranker-v2-m3-shaped model (XLM-R large, 568M) with random weights, made here.
def make_large():
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    out = os.path.join(WORK, "bge-reranker-v2-m3-shape")
    cfg = XLMRobertaConfig(vocab_size=250002, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                           intermediate_size=4096, max_position_embeddings=8194, type_vocab_size=1, num_labels=1,
                           layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                           architectures=["XLMRobertaForSequenceClassification"])
    torch.manual_seed(0)
    XLMRobertaForSequenceClassification(cfg).save_pretrained(out, safe_serialization=True)
    # The tiny XLM-R fixture's tokenizer (a 3,000-piece unigram): more tokens per pair than the
    # real 250k vocabulary gives, the same ids for both engines.
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(os.path.join(SHARED, "fixtures/tiny-xlmr", f), out)
    emit(row="made", model="bge-reranker-v2-m3-shape", path=out, note="random weights; tokenizer from tiny-xlmr")
    return out


if not SKIP_LARGE:
    large = attempt("make bge-reranker-v2-m3-shape", make_large)
    if large:
        cpu = attempt("cpu bge-reranker-v2-m3-shape", lambda: score(large, W50, "cpu"))
        if cpu is not None:
            for dt in DTYPES:
                attempt(f"parity-cpu bge-shape {dt}",
                        lambda: parity_row("parity-cpu", "bge-reranker-v2-m3-shape/w50-dl20", dt,
                                           score(large, W50, DEVICE, dt), cpu))
        side_by_side("bge-reranker-v2-m3-shape", large)

# 6. The goals: MiniLM-L6 <= 5 ms p50; bge-m3 shape <= 25 ms p50 (both in bf16).
goals = {}
m = summary.get("crossrank minilm-l6-rerank bf16")
if m is not None:
    goals["minilm_bf16_p50_le_5ms"] = m <= 5.0
    if summary.get("st minilm-l6-rerank f16"):
        goals["minilm_speedup_vs_st_f16"] = summary["st minilm-l6-rerank f16"] / m
b = summary.get("crossrank bge-reranker-v2-m3-shape bf16")
if b is not None:
    goals["bge_bf16_p50_le_25ms"] = b <= 25.0
    if summary.get("st bge-reranker-v2-m3-shape f16"):
        goals["bge_speedup_vs_st_f16"] = summary["st bge-reranker-v2-m3-shape f16"] / b
emit(row="summary", goals=goals, timings_ms={k: v for k, v in summary.items() if isinstance(v, float)},
     parity_failures=summary.get("parity_failures", 0), errors=summary.get("errors", []))
shutil.rmtree(WORK, ignore_errors=True)
EOF
