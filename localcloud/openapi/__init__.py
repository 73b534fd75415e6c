"""localcloud: openapi."""
