"""The plan before any training: what the audit will train and measure, and its cost."""
