"""A tiny calculator with two planted bugs (tether's stand-in for the cookbook's fixture)."""


def add(a, b):
    return a - b


def divide(a, b):
    return a // b


def mean(xs):
    total = 0
    for x in xs:
        total = add(total, x)
    return divide(total, len(xs))
