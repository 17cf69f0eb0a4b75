"""Drafters for speculative decoding: ``lookup`` (prompt n-grams), ``model`` (a smaller sibling), ``head`` (a trained
EAGLE-style head on the target's hidden states). Each module is imported on its own; nothing runs at import."""
