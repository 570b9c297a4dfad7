"""Example Python-function servable: summary statistics of a measured spectrum.

DLHub calls summarize(values) once per input; the function needs only the standard library.
"""
import math


def summarize(values, scale=1.0):
    if not values:
        raise ValueError("the spectrum is empty")
    n = len(values)
    scaled = [v * scale for v in values]
    mean = sum(scaled) / n
    variance = sum((v - mean) ** 2 for v in scaled) / n
    peak = max(range(n), key=lambda i: scaled[i])
    return {"n": n, "mean": mean, "std": math.sqrt(variance), "peak_index": peak, "peak": scaled[peak]}
