"""Checkers: what must hold after a simulated run, each returning a
`sim.workloads.Check` with a readable explanation when it does not."""
