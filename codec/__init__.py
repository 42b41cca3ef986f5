"""bitmatch codec: a hyperprior image codec whose entropy path is exact by construction."""
