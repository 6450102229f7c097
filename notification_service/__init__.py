"""Notification service: tells customers how their order ended."""
