"""Campaigns over GraphQL: queries, mutations and their types."""
