"""Route blueprints."""
