"""Captioning: brain embeddings fed to the Shikra LLM."""
