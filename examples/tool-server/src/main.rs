//! Serves the example tool server (see `README.md` next to this crate):
//!
//! ```sh
//! WARRANT_PEP_TOKEN=... warrant-example-tool-server --server http://127.0.0.1:8080 --listen 127.0.0.1:9100
//! ```

use std::sync::Arc;

use warrant_gateway::auth::Verifier;
use warrant_gateway::HttpPdp;

/// `--flag value` from the command line, or `default`.
fn flag(args: &[String], name: &str, default: &str) -> String {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let server = flag(&args, "--server", "http://127.0.0.1:8080");
    let listen = flag(&args, "--listen", "127.0.0.1:9100");
    let credential = std::env::var("WARRANT_PEP_TOKEN").map_err(|_| "set WARRANT_PEP_TOKEN to a PEP credential")?;
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(10))
        .build()?;
    let verifier = Verifier::connect(http.clone(), &server).await?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let resource = format!("http://{}", listener.local_addr()?);
    let router =
        warrant_example_tool_server::app(resource.clone(), verifier, Arc::new(HttpPdp::new(http, &server, credential)));
    eprintln!("tool server at {resource}: warrants must be minted with --resource {resource}");
    axum::serve(listener, router).await?;
    Ok(())
}
