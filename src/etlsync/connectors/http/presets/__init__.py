"""Presets of the HTTP family: Stripe, Shopify, HubSpot and Google Sheets, each a configured
REST or GraphQL source (or custom reader on the shared client) with its streams' schemas."""
