"""Command-line interface. Thin: parse flags, call the library, print (rich, or JSON with ``--json``)."""
