"""The in-process adapters with the frameworks' own types: LangChain's BaseDocumentCompressor
and LlamaIndex's BaseNodePostprocessor rank like CrossEncoder.rank."""

import os
from pathlib import Path

from crossrank import CrossEncoder

SHARED = Path(os.environ.get("CROSSRANK_SHARED", Path(__file__).resolve().parents[3] / "shared"))
QUERY = "how do coral reefs form"
DOCS = [
    "Paris is the capital of France.",
    "Coral reefs form when corals grow on hard surfaces in warm, shallow seas.",
    "A reranker reads the query and the passage together.",
    "Reefs are built over thousands of years by colonies of tiny coral polyps.",
]


def model():
    return CrossEncoder(str(SHARED / "models" / "minilm-l6-rerank"), threads=2)


def test_langchain_compressor_keeps_the_best_documents_with_scores():
    from langchain_core.documents import BaseDocumentCompressor, Document

    from crossrank.integrations.langchain import CrossrankRerank

    m = model()
    want = m.rank(QUERY, DOCS, top_k=2)
    compressor = CrossrankRerank(model=m, top_n=2)
    assert isinstance(compressor, BaseDocumentCompressor)
    docs = [Document(page_content=t, metadata={"n": i}) for i, t in enumerate(DOCS)]
    out = compressor.compress_documents(docs, QUERY)
    assert [d.metadata["n"] for d in out] == [w["corpus_id"] for w in want]
    assert [d.metadata["relevance_score"] for d in out] == [float(w["score"]) for w in want]
    assert compressor.compress_documents([], QUERY) == []


def test_llama_index_postprocessor_keeps_the_best_nodes_with_scores():
    from llama_index.core.postprocessor.types import BaseNodePostprocessor
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    from crossrank.integrations.llama_index import CrossrankRerank

    m = model()
    want = m.rank(QUERY, DOCS, top_k=3)
    post = CrossrankRerank(model=m, top_n=3)
    assert isinstance(post, BaseNodePostprocessor)
    nodes = [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=0.0) for i, t in enumerate(DOCS)]
    out = post.postprocess_nodes(nodes, QueryBundle(QUERY))
    assert [n.node.node_id for n in out] == [f"n{w['corpus_id']}" for w in want]
    assert [n.score for n in out] == [float(w["score"]) for w in want]
