"""Reference semantics every target shares: seeded draws, the dropout hash, initial weights, metric
statistics, TF padding and the training callbacks. numpy only: no framework, no runtime."""
