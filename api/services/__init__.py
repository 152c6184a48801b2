"""Business logic behind the routes: search, products, health."""
