"""The admin client side: the broker's HTTP client, ``apply`` of an agents file, and a tenant admin's login.

The product CLI (``mcp-sandbox broker``/``admin``/``tenants``/``agents``) and the test harness both drive the
broker through it; it imports nothing of the broker's server side.
"""
