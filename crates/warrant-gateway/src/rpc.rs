//! JSON-RPC 2.0 on the gateway: the error answers (the COAZ-MCP codes) and the framing
//! of an upstream's answer, `application/json` or `text/event-stream`, so that a
//! `tools/list` result can be rewritten in either.

use rmcp::model::{ErrorCode, ErrorData};
use serde::Serialize;
use serde_json::{Map, Value};

/// An authorization denial (COAZ-MCP), also used for a `pending` decision.
pub const DENIED: ErrorCode = ErrorCode(-32001);
/// A mapping error: the request could not be mapped (JSON-RPC "Invalid params").
pub const INVALID_PARAMS: ErrorCode = ErrorCode::INVALID_PARAMS;
/// The PDP or the upstream's catalogue could not be reached (JSON-RPC "Internal error").
pub const INTERNAL: ErrorCode = ErrorCode::INTERNAL_ERROR;
/// The body is not JSON (JSON-RPC "Parse error").
pub const PARSE_ERROR: ErrorCode = ErrorCode::PARSE_ERROR;
/// The body is not one JSON-RPC message (JSON-RPC "Invalid Request").
pub const INVALID_REQUEST: ErrorCode = ErrorCode::INVALID_REQUEST;

/// A JSON-RPC error response. The error object is the MCP SDK's; the envelope is the
/// gateway's own, because an error may answer a request whose `id` could not be read
/// (`null`), which the SDK's response type does not allow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorResponse {
    /// Always `2.0`.
    pub jsonrpc: &'static str,
    /// The request's id, or null.
    pub id: Value,
    /// The error.
    pub error: ErrorData,
}

impl ErrorResponse {
    /// An error answering request `id`.
    pub fn new(id: Value, code: ErrorCode, message: impl Into<String>, data: Option<Value>) -> Self {
        ErrorResponse { jsonrpc: "2.0", id, error: ErrorData::new(code, message.into(), data) }
    }
}

/// One event of a `text/event-stream`: its `data` (lines joined by `\n`) and its other
/// lines (`id:`, `event:`, `retry:`, comments) as they were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The other lines, in order.
    pub fields: Vec<String>,
    /// The data, if any.
    pub data: Option<String>,
}

/// Splits an event stream into events (`\r\n` and `\r` read as `\n`).
pub fn parse_sse(text: &str) -> Vec<SseEvent> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut events = Vec::new();
    for block in text.split("\n\n") {
        if block.trim().is_empty() {
            continue;
        }
        let mut event = SseEvent { fields: Vec::new(), data: None };
        for line in block.lines() {
            match line.strip_prefix("data:") {
                Some(d) => {
                    let d = d.strip_prefix(' ').unwrap_or(d);
                    match &mut event.data {
                        Some(all) => {
                            all.push('\n');
                            all.push_str(d);
                        }
                        None => event.data = Some(d.to_owned()),
                    }
                }
                None => event.fields.push(line.to_owned()),
            }
        }
        events.push(event);
    }
    events
}

/// Writes events back as a stream.
pub fn write_sse(events: &[SseEvent]) -> String {
    let mut out = String::new();
    for event in events {
        for field in &event.fields {
            out.push_str(field);
            out.push('\n');
        }
        if let Some(data) = &event.data {
            for line in data.split('\n') {
                out.push_str("data: ");
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push('\n');
    }
    out
}

/// Whether `message` is the response to request `id`.
pub fn answers(message: &Map<String, Value>, id: &Value) -> bool {
    message.get("id") == Some(id) && (message.contains_key("result") || message.contains_key("error"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_streams_round_trip() {
        let text = "id: 1\r\nevent: message\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n: comment\n\ndata: x\n\n";
        let events = parse_sse(text);
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].fields, ["id: 1", "event: message"]);
        assert_eq!(events[0].data.as_deref(), Some("{\"a\":\n1}"));
        assert_eq!(events[1].data, None);
        assert_eq!(parse_sse(&write_sse(&events)), events);
    }

    #[test]
    fn errors_have_the_json_rpc_shape() {
        let e = ErrorResponse::new(Value::from(7), DENIED, "no", None);
        assert_eq!(
            serde_json::to_value(e).unwrap(),
            serde_json::json!({"jsonrpc": "2.0", "id": 7, "error": {"code": -32001, "message": "no"}})
        );
    }
}
