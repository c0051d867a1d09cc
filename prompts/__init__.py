"""dsagent.prompts: system prompts and templates."""
