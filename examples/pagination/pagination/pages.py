"""Pages are numbered from 1, like the page links a user clicks."""

import math


def page_count(total: int, per_page: int) -> int:
    """How many pages `total` items fill, at least one."""
    if per_page <= 0:
        raise ValueError("per_page must be positive")
    return max(1, math.ceil(total / per_page))


def paginate(items: list, page: int, per_page: int = 10) -> list:
    """The items shown on `page` (1-based)."""
    if page < 1 or page > page_count(len(items), per_page):
        raise IndexError(f"page {page} out of range")
    start = page * per_page
    return items[start : start + per_page]
