//! `tether-mock-mcp`: the test MCP server ([`tether_e2e::mcp_server::TestMcp`]) over stdio.

use rmcp::ServiceExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let service = tether_e2e::mcp_server::TestMcp::default()
        .serve(rmcp::transport::stdio())
        .await?;
    service.waiting().await?;
    Ok(())
}
