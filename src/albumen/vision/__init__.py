"""On-device image understanding: analyzers (tags, embeddings, faces, quality) and Portrait Mode.

Knows about images and models; knows nothing about SQLite (the analyze pipeline hands results to the library store).
"""
