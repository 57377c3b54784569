"""swiglu-audit: a robustness and security audit of SwiGLU networks, as a pytest plugin."""

__version__ = "0.1.0"
