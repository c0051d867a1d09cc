import pytest

from pagination import page_count, paginate


def test_first_page():
    assert paginate(list(range(25)), 1, per_page=10) == list(range(10))


def test_page_count():
    assert page_count(25, 10) == 3
    assert page_count(0, 10) == 1


def test_out_of_range():
    with pytest.raises(IndexError):
        paginate(list(range(5)), 2, per_page=10)


def test_bad_per_page():
    with pytest.raises(ValueError):
        page_count(10, 0)
