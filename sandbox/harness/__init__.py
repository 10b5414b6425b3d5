"""Drives the sandbox from the outside, as a user would: human logins, scenarios, checks."""
