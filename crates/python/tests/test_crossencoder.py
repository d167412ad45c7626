"""crossrank.CrossEncoder against the reference outputs of sentence-transformers 6.2
(../shared/fixtures, fp32 CPU): predict's logits and default scores, rank's order, errors,
thread safety. Parity is against the fixtures, never against our own output."""

import json
import math
import os
import shutil
import threading
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

import crossrank
from crossrank import CrossEncoder

SHARED = Path(os.environ.get("CROSSRANK_SHARED", Path(__file__).resolve().parents[3] / "shared"))
FIXTURES = SHARED / "fixtures"
TOL = 1e-5


def identity(x):
    return x


def rows(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def by_instruction(rs):
    groups = defaultdict(list)
    for i, r in enumerate(rs):
        groups[r.get("instruction")].append(i)
    return groups.items()


def pairs_of(rs, idx):
    return [(rs[i]["query"], rs[i]["passage"]) for i in idx]


# (fixture folder, reference file) for one-label models: the reference logit is the model's
# single output (yes - no for the LLM rerankers), its score the default predict() output.
ONE_LABEL = [
    ("tiny-bert-1label", "reference.jsonl"),
    ("tiny-xlmr", "reference.jsonl"),
    ("tiny-modernbert-cls", "reference.jsonl"),
    ("tiny-modernbert-mean", "reference.jsonl"),
    ("tiny-qwen3-reranker", "reference.jsonl"),
    ("tiny-qwen3-seqcls", "reference.jsonl"),
    ("tiny-mxbai-v2", "reference.jsonl"),
    ("tiny-ettin", "reference.jsonl"),
]


def worst(a, b):
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


@pytest.mark.parametrize("name,ref", ONE_LABEL)
def test_one_label_logits_and_default_scores_match_sentence_transformers(name, ref):
    model = CrossEncoder(str(FIXTURES / name), threads=2)
    rs = rows(FIXTURES / name / ref)
    assert len(rs) > 0
    for instruction, idx in by_instruction(rs):
        pairs = pairs_of(rs, idx)
        logits = model.predict(pairs, activation_fn=identity, instruction=instruction)
        scores = model.predict(pairs, instruction=instruction)
        assert logits.shape == (len(idx),) and logits.dtype == np.float32
        want_logits = [rs[i]["logit"] for i in idx]
        want_scores = [rs[i]["score"] for i in idx]
        print(f"{name} ({instruction!r}): max |logit diff| {worst(logits, want_logits):.2e}, "
              f"max |score diff| {worst(scores, want_scores):.2e}")
        assert worst(logits, want_logits) <= TOL * max(1.0, max(abs(w) for w in want_logits))
        assert worst(scores, want_scores) <= TOL


def test_two_label_model_returns_logits_by_default_and_softmax_on_request():
    name = "tiny-bert-2label"
    model = CrossEncoder(str(FIXTURES / name))
    rs = rows(FIXTURES / name / "reference.jsonl")
    pairs = pairs_of(rs, range(len(rs)))
    logits = model.predict(pairs)
    assert logits.shape == (len(rs), 2)
    assert worst(logits, [r["logits"] for r in rs]) <= TOL
    probs = model.predict(pairs, apply_softmax=True)
    assert worst(probs[:, 1], [r["score"] for r in rs]) <= TOL
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-6)


def minilm():
    return CrossEncoder(str(SHARED / "models" / "minilm-l6-rerank"), threads=2)


MINILM_ROWS = rows(FIXTURES / "minilm-l6-rerank.pairs.jsonl")


def test_real_model_matches_sentence_transformers_on_87_pairs_with_edge_cases():
    model = minilm()
    pairs = pairs_of(MINILM_ROWS, range(len(MINILM_ROWS)))
    scores = model.predict(pairs, batch_size=16)
    logits = model.predict(pairs, activation_fn=identity)
    d_logit = worst(logits, [r["logit"] for r in MINILM_ROWS])
    d_score = worst(scores, [r["score"] for r in MINILM_ROWS])
    print(f"minilm-l6-rerank: max |logit diff| {d_logit:.2e}, max |score diff| {d_score:.2e}")
    assert d_logit <= TOL and d_score <= TOL
    # One pair gives one score; lists and tensors as sentence-transformers gives them.
    one = model.predict(pairs[0])
    assert isinstance(one, np.float32) and abs(float(one) - MINILM_ROWS[0]["score"]) <= TOL
    as_list = model.predict(pairs[:3], convert_to_numpy=False)
    assert isinstance(as_list, list) and all(isinstance(x, float) for x in as_list)


def test_rank_orders_like_the_reference_scores():
    model = minilm()
    by_query = defaultdict(list)
    for i, r in enumerate(MINILM_ROWS):
        by_query[r["query"]].append(i)
    checked = 0
    for query, idx in by_query.items():
        if len(idx) < 2:
            continue
        docs = [MINILM_ROWS[i]["passage"] for i in idx]
        ref = [MINILM_ROWS[i]["score"] for i in idx]
        # sentence-transformers: sorted(..., key=score, reverse=True), a stable sort.
        want = sorted(range(len(idx)), key=lambda j: ref[j], reverse=True)
        got = model.rank(query, docs, return_documents=True)
        assert [g["corpus_id"] for g in got] == want
        assert all(g["text"] == docs[g["corpus_id"]] for g in got)
        assert all(abs(float(g["score"]) - ref[g["corpus_id"]]) <= TOL for g in got)
        top = model.rank(query, docs, top_k=1)
        assert top == [{"corpus_id": want[0], "score": got[0]["score"]}]
        checked += 1
    assert checked >= 3, "the fixture should hold several queries with several passages"


def test_the_bundled_default_model_loads_without_a_name():
    model = CrossEncoder()
    assert model.num_labels == 1
    s = model.predict([("what is a reranker?", "A reranker reorders retrieved passages.")])
    assert s.shape == (1,) and 0.0 <= float(s[0]) <= 1.0
    assert "minilm-l6-rerank" in repr(model)


def test_errors_are_python_exceptions_with_the_engines_message():
    with pytest.raises(FileNotFoundError, match="no such directory"):
        CrossEncoder("/nonexistent/model")
    with pytest.raises(ValueError, match="quantize"):
        CrossEncoder(str(FIXTURES / "tiny-bert-1label"), quantize="int4")
    with pytest.raises(ValueError, match="cpu, cuda, cuda:N or auto"):
        CrossEncoder(str(FIXTURES / "tiny-bert-1label"), device="tpu")
    with pytest.raises(ValueError, match="runs on a GPU only"):
        CrossEncoder(str(FIXTURES / "tiny-bert-1label"), device="cpu", dtype="bf16")
    if shutil.which("nvidia-smi") is None:  # CI: no GPU, so an explicit cuda is refused
        with pytest.raises(ValueError, match="no CUDA driver"):
            CrossEncoder(str(FIXTURES / "tiny-bert-1label"), device="cuda")
    with pytest.raises(ValueError, match="max_length"):
        CrossEncoder(str(FIXTURES / "tiny-bert-1label"), max_length=0)
    model = CrossEncoder(str(FIXTURES / "tiny-bert-1label"))
    with pytest.raises(ValueError, match=r"sentences\[1\]"):
        model.predict([("q", "d"), ("only one",)])
    with pytest.raises(ValueError, match=r"sentences\[0\]"):
        model.predict([("q", 5)])
    with pytest.raises(ValueError, match="batch_size"):
        model.predict([("q", "d")], batch_size=0)
    with pytest.raises(ValueError, match="top_k"):
        model.rank("q", ["d"], top_k=0)
    with pytest.raises(ValueError, match="list of strings"):
        model.rank("q", "one string")
    assert model.rank("q", []) == []
    assert model.predict([]).shape == (0,)


def test_int8_keeps_the_ranking_close():
    model = CrossEncoder(str(SHARED / "models" / "minilm-l6-rerank"), quantize="int8", threads=2)
    pairs = pairs_of(MINILM_ROWS, range(len(MINILM_ROWS)))
    got = model.predict(pairs)
    ref = np.asarray([r["score"] for r in MINILM_ROWS])
    # Spearman correlation of int8 scores with the fp32 reference.
    rank = lambda v: np.argsort(np.argsort(v))
    rho = np.corrcoef(rank(got), rank(ref))[0, 1]
    print(f"int8 spearman vs reference: {rho:.4f}")
    assert rho > 0.98


def test_four_python_threads_get_the_single_thread_results():
    model = minilm()
    pairs = pairs_of(MINILM_ROWS, range(len(MINILM_ROWS)))
    want = model.predict(pairs)
    results = [None] * 4
    errors = []

    def work(k):
        try:
            for _ in range(3):
                results[k] = model.predict(pairs, batch_size=8 + k)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for r in results:
        assert np.array_equal(r, want)


def test_progress_bar_writes_and_does_not_change_scores(capsys):
    model = CrossEncoder(str(FIXTURES / "tiny-bert-1label"))
    pairs = [("q", f"document {i}") for i in range(10)]
    quiet = model.predict(pairs, batch_size=3)
    shown = model.predict(pairs, batch_size=3, show_progress_bar=True)
    assert np.array_equal(quiet, shown)
    err = capsys.readouterr().err
    assert "4/4" in err or "Batches" in err


def test_version_and_attributes():
    assert crossrank.__version__
    model = CrossEncoder(str(FIXTURES / "tiny-qwen3-reranker"))
    assert model.num_labels == 1
    assert model.max_length > 0
    assert not math.isnan(float(model.predict(("q", "d"))))
