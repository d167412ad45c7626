#!/usr/bin/env python3
"""Side-by-side speed of crossrank and sentence-transformers CrossEncoder (torch CPU) on the
2025-2026 reranker architectures, with random weights of the real shapes (no real checkpoints
are reachable here), on the same pairs and threads. Prints one JSON line per (model, engine).

Shapes: gte-reranker-modernbert-base (22 layers, 768 hidden, GLU 1152, 12 heads),
Qwen3-Reranker-0.6B (28 layers, 1024 hidden, 3072 intermediate, 16 / 8 heads, head_dim 128),
mxbai-rerank-base-v2 (Qwen2 0.5B: 24 layers, 896 hidden, 4864 intermediate, 14 / 2 heads).
Tokenizers are the fixtures' (ModernBERT: WordPiece; Qwen: a small byte-level BPE), so token
counts differ from the real models'; both engines read the same ids.

Usage: python3 scripts/bench-rerankers.py [--bin target/release/crossrank] [--pairs 50]
       [--repeat 3] [--models modernbert,qwen3,mxbai] [--quantize none,int8] [--out DIR]
Needs torch, transformers and sentence-transformers in the running Python. Where the crossrank
Python package is installed too (`maturin build --release -m crates/python/Cargo.toml`, then pip
install the wheel), every engine runs in this one process and the rounds are interleaved
(crossrank fp32, crossrank int8, sentence-transformers, again), so that a machine whose speed
drifts moves all three alike; the lines then also carry max |logit difference| of crossrank
fp32 against sentence-transformers on the same pairs and int8's Spearman against fp32.
Without the package, `--bin` runs `crossrank bench` in a subprocess before the reference.
"""
import argparse, json, os, shutil, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--bin", help="crossrank binary, used when the Python package is not installed")
ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "../../shared"))
ap.add_argument("--out", default=os.path.expanduser("~/.cache/crossrank-bench/models"))
ap.add_argument("--pairs", type=int, default=50)
ap.add_argument("--repeat", type=int, default=3)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--models", default="modernbert,qwen3,mxbai")
ap.add_argument("--quantize", default="none,int8", help="crossrank runs: none, int8 or both")
args = ap.parse_args()

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForCausalLM

torch.set_num_threads(args.threads)
torch.manual_seed(0)
fx = os.path.join(args.shared, "fixtures")
rows = [json.loads(l) for l in open(os.path.join(args.shared, "bench/w50-dl20.jsonl"))][: args.pairs]
pairs = [(r["query"], r["passage"]) for r in rows]
workload = os.path.join(args.out, f"w50-dl20-first{len(pairs)}.jsonl")
os.makedirs(args.out, exist_ok=True)
with open(workload, "w") as f:
    for q, p in pairs:
        f.write(json.dumps({"query": q, "passage": p}) + "\n")

SHAPES = {
    "modernbert": ("tiny-modernbert-cls", dict(num_hidden_layers=22, hidden_size=768, intermediate_size=1152,
                   num_attention_heads=12, local_attention=128, global_attn_every_n_layers=3,
                   layer_types=["full_attention" if i % 3 == 0 else "sliding_attention" for i in range(22)],
                   max_position_embeddings=8192, vocab_size=50368, classifier_pooling="mean")),
    "qwen3": ("tiny-qwen3-reranker", dict(num_hidden_layers=28, hidden_size=1024, intermediate_size=3072,
              num_attention_heads=16, num_key_value_heads=8, head_dim=128, vocab_size=151936,
              max_position_embeddings=40960, layer_types=["full_attention"] * 28)),
    "mxbai": ("tiny-mxbai-v2", dict(num_hidden_layers=24, hidden_size=896, intermediate_size=4864,
              num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
              max_position_embeddings=32768, layer_types=["full_attention"] * 24)),
}


def make(name):
    src_name, shape = SHAPES[name]
    src = os.path.join(fx, src_name)
    dst = os.path.join(args.out, name)
    if os.path.exists(os.path.join(dst, "model.safetensors")):
        return dst
    cfg = AutoConfig.from_pretrained(src)
    for k, v in shape.items():
        setattr(cfg, k, v)
    if name == "modernbert":
        model = AutoModelForSequenceClassification.from_config(cfg)
    else:
        model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(dst, safe_serialization=True)
    for f in os.listdir(src):
        if f.startswith("tokenizer") or f in ("special_tokens_map.json", "chat_template.jinja"):
            shutil.copy(os.path.join(src, f), dst)
    return dst


def st_model(name, path):
    from sentence_transformers import CrossEncoder
    if name == "mxbai":
        from sentence_transformers.cross_encoder.modules import LogitScore, Transformer
        return CrossEncoder(modules=[Transformer(path, transformer_task="text-generation", max_seq_length=512),
                                     LogitScore(true_token_id=16, false_token_id=15)])
    return CrossEncoder(path, max_length=512)


def timed(f):
    t = time.perf_counter()
    out = f()
    return (time.perf_counter() - t) * 1e3, out


def median(xs):
    return sorted(xs)[len(xs) // 2]


def spearman(a, b):
    import numpy as np
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def interleaved(name, path, crossrank):
    """Every engine in this process, rounds interleaved; returns one line per engine."""
    import numpy as np
    identity = torch.nn.Identity()
    engines = {}
    for q in args.quantize.split(","):
        m = crossrank.CrossEncoder(path, max_length=512, threads=args.threads,
                                   quantize=None if q == "none" else q)
        engines[f"crossrank/{q}"] = lambda m=m: m.predict(pairs, batch_size=len(pairs), activation_fn=identity)
    ce = st_model(name, path)
    engines["sentence-transformers/none"] = lambda: np.asarray(
        ce.predict(pairs, batch_size=16, activation_fn=identity), dtype=np.float64)
    times = {k: [] for k in engines}
    logits = {k: np.asarray(f(), dtype=np.float64) for k, f in engines.items()}  # warm-up
    for _ in range(args.repeat):
        for k, f in engines.items():
            ms, _ = timed(f)
            times[k].append(ms)
    ref = logits["sentence-transformers/none"]
    st_ms = median(times["sentence-transformers/none"])
    for k in engines:
        engine, q = k.split("/")
        line = {"model": name, "engine": engine, "quantize": q, "pairs": len(pairs),
                "median_ms": round(median(times[k]), 1), "ms": [round(t, 1) for t in times[k]]}
        if engine == "crossrank":
            line["ratio_vs_st"] = round(st_ms / median(times[k]), 2)
            line["max_abs_logit_diff_vs_st"] = float(np.max(np.abs(logits[k] - ref)))
            if q != "none" and "crossrank/none" in logits:
                line["spearman_vs_fp32"] = round(spearman(logits[k], logits["crossrank/none"]), 4)
        else:
            line["torch"] = torch.__version__
        print(json.dumps(line), flush=True)


def subprocess_runs(name, path):
    for q in args.quantize.split(","):
        out = subprocess.run([args.bin, "bench", "--model", path, "--workload", workload, "--threads",
                              str(args.threads), "--repeat", str(args.repeat), "--warmup", "1", "--quantize", q,
                              "--json"], capture_output=True, text=True)
        if out.returncode != 0:
            print(json.dumps({"model": name, "engine": "crossrank", "quantize": q, "error": out.stderr.strip()[-400:]}))
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps({"model": name, "engine": "crossrank", "quantize": q, "pairs": len(pairs),
                          "tokens": r.get("tokens"), "median_ms": r.get("median_ms")}), flush=True)
    ce = st_model(name, path)
    ce.predict(pairs[:2])
    ms = median([timed(lambda: ce.predict(pairs, batch_size=16))[0] for _ in range(args.repeat)])
    print(json.dumps({"model": name, "engine": "sentence-transformers", "quantize": "none", "pairs": len(pairs),
                      "median_ms": ms, "torch": torch.__version__}), flush=True)


try:
    import crossrank
except ImportError:
    crossrank = None
    if not args.bin:
        sys.exit("neither the crossrank Python package nor --bin is available")

for name in args.models.split(","):
    path = make(name)
    try:
        if crossrank is not None:
            interleaved(name, path, crossrank)
        else:
            subprocess_runs(name, path)
    except Exception as e:  # report and go on
        print(json.dumps({"model": name, "error": repr(e)[:400]}), flush=True)
