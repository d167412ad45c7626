"""Benchmark (not a test): crossrank.CrossEncoder.predict against sentence-transformers'
CrossEncoder.predict on the same W50 pairs, same model, same threads, in one process, and the
import time of the wheel.

    python crates/python/bench/predict.py ../shared/bench/w50-dl20.jsonl \
        --model ../shared/models/minilm-l6-rerank --threads 2 --runs 5

Needs the crossrank wheel, and sentence-transformers + torch for the peer (skipped, and said
so, without them). Prints one JSON line per engine and the ratio.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time


def load(path):
    with open(path, encoding="utf-8") as f:
        return [(r["query"], r["passage"]) for r in map(json.loads, f) if r]


def timed(fn, runs):
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workload")
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()
    pairs = load(args.workload)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import crossrank"], check=True)
    import_ms = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    import_ms -= (time.perf_counter() - t) * 1e3

    from crossrank import CrossEncoder as Ours

    ours = Ours(args.model, threads=args.threads, max_length=512)
    ms, best = timed(lambda: ours.predict(pairs, batch_size=args.batch_size), args.runs)
    mine = ours.predict(pairs, batch_size=args.batch_size)
    print(json.dumps({"engine": "crossrank", "pairs": len(pairs), "threads": args.threads,
                      "median_ms": round(ms, 1), "min_ms": round(best, 1),
                      "import_ms": round(import_ms, 1)}))
    try:
        import torch
        from sentence_transformers import CrossEncoder as Theirs
    except ImportError as e:
        print(json.dumps({"engine": "sentence-transformers", "skipped": str(e)}))
        return
    torch.set_num_threads(args.threads)
    # fp32 as the engine computes (a fp16 checkpoint would otherwise load in fp16 on the CPU).
    theirs = Theirs(args.model, device="cpu", max_length=512, model_kwargs={"dtype": torch.float32})
    st_ms, st_best = timed(lambda: theirs.predict(pairs, batch_size=args.batch_size), args.runs)
    ref = theirs.predict(pairs, batch_size=args.batch_size)
    diff = float(max(abs(float(a) - float(b)) for a, b in zip(mine, ref)))
    import sentence_transformers

    print(json.dumps({"engine": "sentence-transformers " + sentence_transformers.__version__,
                      "torch": torch.__version__, "threads": args.threads,
                      "median_ms": round(st_ms, 1), "min_ms": round(st_best, 1),
                      "max_abs_score_diff": diff}))
    print(json.dumps({"speedup_median": round(st_ms / ms, 2)}))


if __name__ == "__main__":
    main()
