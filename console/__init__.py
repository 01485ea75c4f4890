"""The operator console at /console: staff accounts, sessions, server-rendered pages."""
