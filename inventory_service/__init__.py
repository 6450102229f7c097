"""Inventory service: stock and prices in MongoDB, reservations per order, a Redis stock cache."""
