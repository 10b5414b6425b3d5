"""Identity-provider adapters: the only code that speaks an IdP's admin API."""
