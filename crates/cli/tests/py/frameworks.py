"""Calls a crossrank server through the RAG frameworks' own rerankers and prints what each
returned.

usage: frameworks.py BASE_URL MODEL API_KEY REQUEST.json
REQUEST.json: {"query": str, "documents": [str]}
Prints one JSON object: {framework: [[index, score], ...] best first}. Documents carry their
index so that each framework's output can be mapped back to the input.
"""
import json
import sys

base, model, key, path = sys.argv[1:5]
req = json.load(open(path))
query, docs = req["query"], req["documents"]
n = len(docs)
out = {}

# LlamaIndex: the TEI postprocessor and the Cohere postprocessor.
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.postprocessor.cohere_rerank import CohereRerank as LlamaCohere
from llama_index.postprocessor.tei_rerank import TextEmbeddingInference


def nodes():
    return [NodeWithScore(node=TextNode(text=t, id_=str(i)), score=0.0) for i, t in enumerate(docs)]


# auth_token is sent as the whole Authorization header.
tei = TextEmbeddingInference(base_url=base, top_n=n, auth_token=f"Bearer {key}", model_name=model)
r = tei.postprocess_nodes(nodes(), QueryBundle(query))
out["llama_index.TextEmbeddingInference"] = [[int(x.node.node_id), x.score] for x in r]

co = LlamaCohere(top_n=n, model=model, api_key=key, base_url=base)
r = co.postprocess_nodes(nodes(), QueryBundle(query))
out["llama_index.CohereRerank"] = [[int(x.node.node_id), x.score] for x in r]

# Haystack: CohereRanker (cohere-haystack) and HuggingFaceTEIRanker (huggingface-api-haystack).
from haystack import Document
from haystack.utils import Secret
from haystack_integrations.components.rankers.cohere import CohereRanker
from haystack_integrations.components.rankers.huggingface_api import HuggingFaceTEIRanker


def hs_docs():
    return [Document(content=t, id=str(i)) for i, t in enumerate(docs)]


hc = CohereRanker(model=model, top_k=n, api_key=Secret.from_token(key), api_base_url=base)
r = hc.run(query=query, documents=hs_docs())["documents"]
out["haystack.CohereRanker"] = [[int(d.id), d.score] for d in r]

ht = HuggingFaceTEIRanker(url=base, top_k=n, token=Secret.from_token(key), max_retries=0)
r = ht.run(query=query, documents=hs_docs())["documents"]
out["haystack.HuggingFaceTEIRanker"] = [[int(d.id), d.score] for d in r]

# AnswerDotAI rerankers: APIRanker with the TEI and the Cohere providers.
from rerankers.models.api_rankers import APIRanker

for provider, url in [("text-embeddings-inference", base + "/rerank"), ("cohere", base + "/v1/rerank")]:
    ranker = APIRanker(model=model, api_key=key, api_provider=provider, url=url, verbose=0)
    r = ranker.rank(query, docs, doc_ids=list(range(n)))
    out[f"rerankers.APIRanker({provider})"] = [[int(x.document.doc_id), x.score] for x in r.results]

print(json.dumps(out))
