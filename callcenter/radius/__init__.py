"""RADIUS for investors' free internet access: who may connect, and what they used."""
