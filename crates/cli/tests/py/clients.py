"""Calls a crossrank server through the official SDKs and prints what each returned.

usage: clients.py BASE_URL MODEL API_KEY REQUEST.json
REQUEST.json: {"query": str, "documents": [str]}
Prints one JSON object: {client: [[index, relevance_score], ...] best first}.
"""
import json
import sys

base, model, key, path = sys.argv[1:5]
req = json.load(open(path))
query, docs = req["query"], req["documents"]
out = {}

import cohere

v1 = cohere.Client(api_key=key, base_url=base, timeout=120)
r = v1.rerank(model=model, query=query, documents=docs, top_n=len(docs))
out["cohere.Client"] = [[x.index, x.relevance_score] for x in r.results]

v2 = cohere.ClientV2(api_key=key, base_url=base, timeout=120)
r = v2.rerank(model=model, query=query, documents=docs, top_n=len(docs))
out["cohere.ClientV2"] = [[x.index, x.relevance_score] for x in r.results]

import voyageai

vo = voyageai.Client(api_key=key, base_url=base + "/v1", max_retries=0)
r = vo.rerank(query=query, documents=docs, model=model, top_k=len(docs))
out["voyageai.Client"] = [[x.index, x.relevance_score] for x in r.results]

from langchain_cohere import CohereRerank

lc = CohereRerank(cohere_api_key=key, model=model, base_url=base, top_n=len(docs))
r = lc.rerank(documents=docs, query=query)
out["langchain_cohere.CohereRerank"] = [[x["index"], x["relevance_score"]] for x in r]

print(json.dumps(out))
