"""Adapters for RAG frameworks, each importing its framework only when imported itself:
``crossrank.integrations.langchain`` and ``crossrank.integrations.llama_index``."""
