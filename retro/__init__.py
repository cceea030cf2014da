"""retro: the RETRO model (chunked cross-attention in Flax NNX) and the project's shared helpers.

Importing this package is cheap: jax and flax load only when a model module is imported.
"""

__version__ = "0.1.0"
