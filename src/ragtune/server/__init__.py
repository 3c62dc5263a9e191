"""The ragtune server: OpenAI-compatible RAG API, knowledge-base management, feedback, API keys, web page."""

from ragtune.server.app import create_app, server_db_path

__all__ = ["create_app", "server_db_path"]
