"""A LangChain document compressor that reranks with a crossrank CrossEncoder in process.

    from crossrank.integrations.langchain import CrossrankRerank
    from langchain.retrievers import ContextualCompressionRetriever
    retriever = ContextualCompressionRetriever(
        base_compressor=CrossrankRerank(top_n=5), base_retriever=vector_store.as_retriever())

Each returned document keeps its metadata plus ``relevance_score``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field

from .. import CrossEncoder


class CrossrankRerank(BaseDocumentCompressor):
    """Keeps the ``top_n`` documents most relevant to the query, best first."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: Any = Field(default=None, description="A crossrank.CrossEncoder (default: the bundled model)")
    model_name: Optional[str] = None
    top_n: int = 3
    batch_size: int = 32

    def __init__(self, **data: Any):
        super().__init__(**data)
        if self.model is None:
            self.model = CrossEncoder(self.model_name)

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Optional[Callbacks] = None,
    ) -> Sequence[Document]:
        if not documents:
            return []
        ranked = self.model.rank(
            query,
            [d.page_content for d in documents],
            top_k=self.top_n,
            batch_size=self.batch_size,
        )
        out = []
        for r in ranked:
            d = documents[r["corpus_id"]]
            out.append(
                Document(
                    page_content=d.page_content,
                    metadata={**d.metadata, "relevance_score": float(r["score"])},
                    id=getattr(d, "id", None),
                )
            )
        return out
