"""localcloud: Resource Manager (Resource Directory ListAccounts)."""
