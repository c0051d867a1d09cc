"""dsagent.tui: the Textual pairing UI."""
