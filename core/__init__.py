"""Shared concepts every domain uses: error codes, the caller and its scopes, the audit log."""
