"""Training: LLM fine-tuning (SFT, preference), rerankers and embedders."""
