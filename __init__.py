"""dsagent: an autonomous coding agent for the terminal, driven by a local DeepSeek-V3.2 model."""

__version__ = "0.1.0"
