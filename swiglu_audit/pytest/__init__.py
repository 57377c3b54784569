"""Pytest glue: the plugin's hooks, the suites' fixtures, the relay of findings from xdist workers to
the controller, sharding, and the setup check before any training. Only wiring lives here; the
logic is in plain modules a notebook can call (`swiglu_audit.session`, `measure`, `verdicts`)."""
