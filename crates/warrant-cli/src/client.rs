//! A small HTTP client for the Warrant API, used by the admin and token commands and
//! by the demo.

use serde_json::Value;

/// Why a call to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached.
    #[error("cannot reach the server at {url}: {source}; is `warrant serve` running?")]
    Unreachable {
        /// The URL.
        url: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// The server answered with an error body.
    #[error("{status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// `error` (or OAuth `error`).
        code: String,
        /// `message` (or OAuth `error_description`).
        message: String,
    },
    /// No admin token was given or found; nothing was sent.
    #[error(
        "no admin token found at `{}`; pass `--admin-token TOKEN`, set `WARRANT_ADMIN_TOKEN`, \
         or point `--data` (or `WARRANT_DATA`) at the server's data directory",
        path.display()
    )]
    NoAdminToken {
        /// Where it was looked for.
        path: std::path::PathBuf,
    },
    /// The answer was not JSON.
    #[error("the server's answer is not JSON: {0}")]
    BadAnswer(String),
}

/// `path` with the given query parameters, those that are set, form-encoded.
pub fn with_query(path: &str, params: &[(&str, Option<String>)]) -> String {
    let set: Vec<(&str, &str)> = params.iter().filter_map(|(k, v)| v.as_deref().map(|v| (*k, v))).collect();
    match serde_urlencoded::to_string(&set) {
        Ok(query) if !query.is_empty() => format!("{path}?{query}"),
        _ => path.to_owned(),
    }
}

/// A client bound to one server.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    admin: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`), with the admin token if known.
    pub fn new(base: &str, admin: Option<String>) -> Self {
        Client { base: base.trim_end_matches('/').to_owned(), admin, http: reqwest::Client::new() }
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(&self, req: reqwest::RequestBuilder, url: &str) -> Result<Value, ClientError> {
        let req = match &self.admin {
            Some(token) => req.bearer_auth(token),
            None => req,
        };
        let resp = req.send().await.map_err(|source| ClientError::Unreachable { url: url.to_owned(), source })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|source| ClientError::Unreachable { url: url.to_owned(), source })?;
        let body: Value =
            serde_json::from_str(&text).map_err(|_| ClientError::BadAnswer(text.chars().take(200).collect()))?;
        if status.is_success() {
            return Ok(body);
        }
        let field = |name: &str| body.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
        let message = match field("message") {
            m if m.is_empty() => field("error_description"),
            m => m,
        };
        Err(ClientError::Api { status: status.as_u16(), code: field("error"), message })
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.get(&url), &url).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.post(&url).json(body), &url).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.put(&url).json(body), &url).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.delete(&url), &url).await
    }

    /// `GET path` as a stream (server-sent events): the response, once it is a success.
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.get(&url).header("accept", "text/event-stream");
        if let Some(token) = &self.admin {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|source| ClientError::Unreachable { url: url.clone(), source })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let field = |name: &str| body.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
        Err(ClientError::Api { status, code: field("error"), message: field("message") })
    }

    /// `POST /oauth2/token` with form fields (no admin token is sent).
    pub async fn token(&self, form: &[(&str, &str)]) -> Result<Value, ClientError> {
        let url = format!("{}/oauth2/token", self.base);
        let plain = Client { admin: None, ..self.clone() };
        plain.send(self.http.post(&url).form(form), &url).await
    }
}
