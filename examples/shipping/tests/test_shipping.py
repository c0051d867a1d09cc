import pytest

from shipping.rates import shipping_cost


def test_light_standard():
    assert shipping_cost(2) == 740


def test_light_express():
    assert shipping_cost(2, express=True) == 1480


def test_heavy_standard():
    assert shipping_cost(25) == 500 + 3000 + 1500


def test_heavy_express():
    assert shipping_cost(25, express=True) == (500 + 3000) * 2 + 1500


@pytest.mark.parametrize("weight", [0, -1])
def test_rejects_bad_weight(weight):
    with pytest.raises(ValueError):
        shipping_cost(weight)
