"""Small helpers without a domain: atomic file writes, importing a user's object by its path."""
