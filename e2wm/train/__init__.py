"""Training-side utilities: tiny models, corpora and the empirical Fisher."""
