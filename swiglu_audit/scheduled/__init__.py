"""Scheduled audits: saved runs, accepted baselines, regression gates and trend tests."""
