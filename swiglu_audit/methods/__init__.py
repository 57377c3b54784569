"""The audit's methods: attacks, detectors, corruptions, metrics and scans (computation only; checks/ judges)."""
