"""vodforge: a self-hostable, event-driven video pipeline with a pinned, fingerprinted FFmpeg."""

from vodforge.errors import (
    ConfigError,
    InputError,
    ToolchainError,
    TransientError,
    VerificationError,
    VodforgeError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "InputError",
    "ToolchainError",
    "TransientError",
    "VerificationError",
    "VodforgeError",
    "__version__",
]
