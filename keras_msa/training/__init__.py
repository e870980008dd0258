"""Training helpers shared by recipes: callbacks, loops, distribution."""
