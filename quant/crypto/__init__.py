"""Crypto jobs of the seed backend (issue 23): pure parts — the volatility check."""
