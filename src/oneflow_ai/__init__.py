"""OneFlow AI: an AI model gateway."""

__version__ = "2.0.0"
__all__ = ["__version__"]
