"""dsagent.agent: the loop, events, sessions, backends."""
