"""How a measurement becomes a verdict: statistics, conditions, findings, sequential looks."""
