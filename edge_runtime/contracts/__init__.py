"""Device contracts: one definition each, shared by the hub, training and the gateway."""
