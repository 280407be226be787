//! What the gateway scenario measures against: a minimal MCP upstream (Streamable HTTP,
//! JSON answers, stateless) that the client calls directly, through nginx as a plain
//! reverse proxy, and through `warrant gateway`, all in the same run.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use super::target::{Started, PROTOCOL_VERSION};
use super::BenchError;

/// The tool the scenario calls.
pub const TOOL: &str = "lookup";
/// The upstream's name at the gateway.
pub const UPSTREAM: &str = "bench";

#[derive(Debug, Deserialize)]
struct Rpc {
    #[serde(default)]
    id: Option<Value>,
    method: String,
    #[serde(default)]
    params: Option<Value>,
}

/// Answers one JSON-RPC message the way a small stateless tool server would.
async fn mcp(axum::Json(rpc): axum::Json<Rpc>) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let Some(id) = rpc.id else {
        // A notification: accepted, no body.
        return axum::http::StatusCode::ACCEPTED.into_response();
    };
    let result = match rpc.method.as_str() {
        "initialize" => json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "bench-upstream", "version": "1"},
        }),
        "tools/list" => json!({"tools": [{
            "name": TOOL,
            "description": "Looks a customer up.",
            "inputSchema": {"type": "object", "properties": {"customer": {"type": "string"}}},
        }]}),
        "tools/call" => {
            let customer = rpc
                .params
                .as_ref()
                .and_then(|p| p.pointer("/arguments/customer"))
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned();
            json!({"content": [{"type": "text", "text": format!("customer {customer}: 3 open tickets")}], "isError": false})
        }
        "ping" => json!({}),
        _ => {
            return axum::Json(
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "method not found"}}),
            )
            .into_response()
        }
    };
    axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

/// Starts the upstream on 127.0.0.1:0; its MCP endpoint is `<url>/mcp`.
pub async fn start_upstream() -> Result<Started, BenchError> {
    let router = axum::Router::new().route("/mcp", axum::routing::post(mcp));
    Started::serve(router).await
}

/// nginx running as a plain reverse proxy in front of the upstream, stopped on drop.
pub struct Nginx {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound then released: nginx binds it right after).
fn free_port() -> Result<u16, BenchError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| BenchError::Server(e.to_string()))?;
    Ok(listener.local_addr().map_err(|e| BenchError::Server(e.to_string()))?.port())
}

/// The nginx configuration: one worker (the machine's cores are shared with everything
/// else measured), keep-alive to the upstream, no buffering, no access log.
fn nginx_conf(dir: &Path, port: u16, upstream: &str) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           upstream mcp {{ server {upstream}; keepalive 64; }}\n\
           server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://mcp;\n\
               proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_buffering off;\n    }}\n  }}\n}}\n"
    )
}

/// Starts `nginx` (the binary at `program`, or found on `PATH`) in front of `upstream`
/// (`127.0.0.1:PORT`); `Ok(None)` when there is no nginx to run.
pub async fn start_nginx(program: &Path, upstream: &str) -> Result<Option<Nginx>, BenchError> {
    let found = if program.components().count() > 1 { Some(program.to_owned()) } else { on_path(program) };
    let Some(program) = found else { return Ok(None) };
    let dir = tempfile::tempdir().map_err(|source| BenchError::Io { path: "temporary directory".into(), source })?;
    let port = free_port()?;
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, nginx_conf(dir.path(), port, upstream))
        .map_err(|source| BenchError::Io { path: conf.display().to_string(), source })?;
    let child = std::process::Command::new(&program)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| BenchError::Server(format!("{}: {e}", program.display())))?;
    let nginx = Nginx { url: format!("http://127.0.0.1:{port}"), child, _dir: dir };
    // Ready once it accepts connections (bounded: a broken nginx fails the run).
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(Some(nginx));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(BenchError::Server(format!("nginx did not listen on 127.0.0.1:{port} within 5 s")))
}

fn on_path(program: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let extra = [PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")];
    std::env::split_paths(&path).chain(extra).map(|dir| dir.join(program)).find(|p| p.is_file())
}

/// `tools/call` request bodies, one per customer, numbered ids.
pub fn call_bodies(count: usize) -> Vec<String> {
    (0..count)
        .map(|n| {
            json!({
                "jsonrpc": "2.0", "id": n + 1, "method": "tools/call",
                "params": {"name": TOOL, "arguments": {"customer": format!("{}", 1000 + n)}},
            })
            .to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nginx_configuration_proxies_to_the_upstream_with_keepalive() {
        let conf = nginx_conf(Path::new("/tmp/x"), 8081, "127.0.0.1:9000");
        assert!(conf.contains("server 127.0.0.1:9000; keepalive 64;"), "{conf}");
        assert!(conf.contains("listen 127.0.0.1:8081;"), "{conf}");
        assert!(conf.contains("proxy_set_header Connection \"\";"), "{conf}");
    }

    #[tokio::test]
    async fn the_upstream_answers_a_tool_call() {
        let up = start_upstream().await.unwrap();
        let body = call_bodies(1).remove(0);
        let answer: Value = reqwest::Client::new()
            .post(format!("{}/mcp", up.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["id"], 1);
        assert_eq!(answer["result"]["content"][0]["text"], "customer 1000: 3 open tickets");
        up.stop().await.unwrap();
    }
}
