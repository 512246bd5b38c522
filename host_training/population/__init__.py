"""Seeded populations of adult anthropometrics (ANSUR II statistics, Gaussian copula)."""
