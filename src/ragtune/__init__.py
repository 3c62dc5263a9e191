"""ragtune: private-knowledge RAG and fine-tuning, offline on one CPU. Start with ``ragtune.kb.KnowledgeBase``."""

__version__ = "0.1.0"
