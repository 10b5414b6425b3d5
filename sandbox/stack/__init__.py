"""Runtimes that bring the sandbox's components up and down, and the state they leave behind."""
