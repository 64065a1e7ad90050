"""The intake endpoint (HTTP on loopback, HMAC-signed) and the CLI's client for it."""
