"""localcloud: STS (AssumeRole)."""
