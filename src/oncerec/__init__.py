"""oncerec: content-based recommendation boosted by large language models."""

__version__ = "0.1.0"
