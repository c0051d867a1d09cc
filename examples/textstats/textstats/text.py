"""Text helpers for display: word counts and truncation with an ellipsis."""

ELLIPSIS = "…"


def word_count(text: str) -> int:
    return len(text.split())


def truncate(text: str, limit: int) -> str:
    """At most `limit` characters; an ellipsis replaces the last one when text is cut."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - 1].decode("utf-8", errors="ignore") + ELLIPSIS
