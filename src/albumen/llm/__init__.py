"""The on-device LLM engine. Knows nothing about photos."""
