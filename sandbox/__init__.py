"""dsagent.sandbox: Docker containers, images and the isolated git workspace."""
