"""Shared helpers every layer may import: typed configs (defaults -> YAML -> key=value), run info
(git hash, versions) and atomic writes. Imports nothing else from this project."""
