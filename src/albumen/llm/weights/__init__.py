"""Model weight files: GGUF (read and dequantized with the ``gguf`` package), HF safetensors folders, and the
memory-mapped cache that makes the second load fast. Knows nothing about generation."""

from albumen.llm.weights.cache import cached_folder_for_gguf
from albumen.llm.weights.gguf import GGUFContents, read_gguf
from albumen.llm.weights.safetensors_io import load_folder, save_folder

__all__ = ["GGUFContents", "cached_folder_for_gguf", "load_folder", "read_gguf", "save_folder"]
