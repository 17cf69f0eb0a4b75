"""Natural-language photo search: query parsing, vector index, ranking. Built on analyzer outputs."""
