"""Business logic. Functions take a Session and never commit: the caller owns the transaction."""
