"""dsagent.model: the DeepSeek-V3.2 engine, tokenizer and DSML chat format."""
