//! `tether-mock-mcp`: the test MCP server ([`tether_e2e::mcp_server::TestMcp`]) over stdio.

use rmcp::ServiceExt;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let server = tether_e2e::mcp_server::TestMcp {
        can_exit: true,
        ..Default::default()
    };
    let service = server.serve(rmcp::transport::stdio()).await?;
    service.waiting().await?;
    Ok(())
}
