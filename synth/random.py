"""Random draws shared by the parts of the synthetic generator: an index through a CDF
(one draw at a time, fast) and split log-normal sizes."""
import numpy as np


def lognormal(rng, median, p5, p95):
    """Split log-normal draw with the given median and 5th/95th percentiles."""
    z = rng.standard_normal()
    lo, hi = np.log(median / p5) / 1.645, np.log(p95 / median) / 1.645
    return median * np.exp(z * (hi if z > 0 else lo))


def cdf(p):
    """Cumulative sums of the weights p, normalised: the table that `choice` draws from."""
    p = np.asarray(p, float)
    return np.cumsum(p / p.sum())


def choice(rng, cdf, size=None):
    """Index drawn with the probabilities whose cumulative sums are cdf (rng.choice(p=) is
    ~20x slower for one draw)."""
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)
