"""A LlamaIndex node postprocessor that reranks with a crossrank CrossEncoder in process.

    from crossrank.integrations.llama_index import CrossrankRerank
    query_engine = index.as_query_engine(similarity_top_k=20,
                                         node_postprocessors=[CrossrankRerank(top_n=5)])

Nodes come back best first with the relevance as their score.
"""

from __future__ import annotations

from typing import Any, List, Optional

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from .. import CrossEncoder


class CrossrankRerank(BaseNodePostprocessor):
    """Keeps the ``top_n`` nodes most relevant to the query, best first."""

    model_name: Optional[str] = Field(default=None, description="Model directory or hub id")
    top_n: int = Field(default=3, description="Nodes kept")
    batch_size: int = Field(default=32, description="Pairs per engine call")
    _model: Any = PrivateAttr()

    def __init__(self, model: Optional[CrossEncoder] = None, **data: Any):
        super().__init__(**data)
        self._model = model if model is not None else CrossEncoder(self.model_name)

    @classmethod
    def class_name(cls) -> str:
        return "CrossrankRerank"

    def _postprocess_nodes(
        self,
        nodes: List[NodeWithScore],
        query_bundle: Optional[QueryBundle] = None,
    ) -> List[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("CrossrankRerank needs the query (query_bundle)")
        if not nodes:
            return []
        texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
        ranked = self._model.rank(
            query_bundle.query_str, texts, top_k=self.top_n, batch_size=self.batch_size
        )
        return [NodeWithScore(node=nodes[r["corpus_id"]].node, score=float(r["score"])) for r in ranked]
