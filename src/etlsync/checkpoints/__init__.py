"""Durable checkpoint stores."""
