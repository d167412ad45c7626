"""Reference metrics with pytrec_eval (trec_eval) for crossrank's parity test.

usage: trec_parity.py QRELS LEVEL K1,K2,... RUN [RUN ...]
Prints {run_name: {"mean": {metric: value}, "per_query": {qid: {metric: value}}}} with
crossrank's metric names (ndcg@k, p@k, recall@k, mrr@k, map).
"""
import json
import os
import sys

import pytrec_eval

qrels_path, level, ks, runs = sys.argv[1], int(sys.argv[2]), [int(k) for k in sys.argv[3].split(",")], sys.argv[4:]
qrels = {}
for line in open(qrels_path):
    f = line.split()
    if f:
        qrels.setdefault(f[0], {})[f[2]] = int(f[3])


def load(path):
    run = {}
    for line in open(path):
        f = line.split()
        if f:
            run.setdefault(f[0], {})[f[2]] = float(f[4])
    return run


def top(docs, k):
    # trec_eval's order: score descending, ties by docid descending.
    ranked = sorted(docs.items(), key=lambda x: x[0], reverse=True)
    ranked.sort(key=lambda x: -x[1])
    return dict(ranked[:k])


cuts = ",".join(map(str, ks))
measures = {f"ndcg_cut.{cuts}", f"P.{cuts}", f"recall.{cuts}", "map"}
out = {}
for path in runs:
    run = load(path)
    ev = pytrec_eval.RelevanceEvaluator(qrels, measures, relevance_level=level).evaluate(run)
    per_query = {}
    for qid, m in ev.items():
        row = {"map": m["map"]}
        for k in ks:
            row[f"ndcg@{k}"] = m[f"ndcg_cut_{k}"]
            row[f"p@{k}"] = m[f"P_{k}"]
            row[f"recall@{k}"] = m[f"recall_{k}"]
        per_query[qid] = row
    for k in ks:
        truncated = {q: top(d, k) for q, d in run.items()}
        rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}, relevance_level=level).evaluate(truncated)
        for qid, m in rr.items():
            per_query[qid][f"mrr@{k}"] = m["recip_rank"]
    names = per_query[next(iter(per_query))].keys()
    mean = {n: sum(r[n] for r in per_query.values()) / len(per_query) for n in names}
    out[os.path.basename(path).split(".")[0]] = {"mean": mean, "per_query": per_query}
print(json.dumps(out))
