"""Domain modules: one folder each, registered through ``setup(ctx)``; they never import each other."""
