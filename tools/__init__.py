"""dsagent.tools: the tools the model calls."""
