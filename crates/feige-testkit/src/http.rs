//! A JSON client for end-to-end tests that drive a running Feige over HTTP (local-runtime,
//! the API of a push-tier cluster, or function binaries behind the Lambda emulator).

use serde_json::Value;

/// One server's base URL (`http://host:port`) and a pooled client.
pub struct Api {
    pub base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: impl Into<String>) -> Api {
        Api { base: base.into(), http: reqwest::Client::new() }
    }

    /// `method path` with an optional bearer token and JSON body; returns the status and the
    /// JSON body (`Null` when the body is not JSON). Panics when the server cannot be reached.
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let method = method.parse().unwrap_or_else(|_| panic!("bad method {method}"));
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}
