"""Shipping prices in cents."""

BASE = 500
PER_KG = 120
EXPRESS_FACTOR = 2
HEAVY_KG = 20
HEAVY_SURCHARGE = 1500


def shipping_cost(weight_kg: float, express: bool = False) -> int:
    """Price of one parcel: base + weight, doubled for express, plus a surcharge for heavy parcels."""
    if weight_kg <= 0:
        raise ValueError("weight must be positive")
    cost = BASE + round(PER_KG * weight_kg)
    if express:
        return cost * EXPRESS_FACTOR
    elif weight_kg > HEAVY_KG:
        cost += HEAVY_SURCHARGE
    return cost
