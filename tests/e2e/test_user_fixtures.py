"""The plugin's fixtures as a user's own suite uses them: the README's example, verbatim."""


# --- README example starts
async def test_a_reader_sees_and_calls_only_its_tool(sandbox_agent, sandbox_mcp_client):
    agent = sandbox_agent(role="read-only-analytics")
    async with sandbox_mcp_client(agent) as mcp:
        tools = [tool.name for tool in (await mcp.list_tools()).tools]
        assert tools == ["analytics.query"]
        result = await mcp.call_tool("analytics.query", {"query": "daily_active_users", "days": 3})
        assert not result.is_error
        assert result.structured_content["tenant"] == agent.tenant.name


# --- README example ends
