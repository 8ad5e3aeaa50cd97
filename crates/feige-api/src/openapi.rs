//! The OpenAPI 3 description of the HTTP API, served at `/openapi.json`.

use serde_json::{Value, json};

fn op(summary: &str, auth: bool, body: Option<Value>, ok: (&str, &str), params: Value) -> Value {
    let mut o = json!({
        "summary": summary,
        "parameters": params,
        "responses": {
            ok.0: {"description": ok.1},
            "400": {"$ref": "#/components/responses/Error"},
            "401": {"$ref": "#/components/responses/Error"},
            "403": {"$ref": "#/components/responses/Error"},
            "404": {"$ref": "#/components/responses/Error"},
            "413": {"$ref": "#/components/responses/Error"},
            "429": {"$ref": "#/components/responses/Error"},
            "503": {"$ref": "#/components/responses/Error"}
        }
    });
    if !auth {
        o["security"] = json!([]);
    }
    if let Some(schema) = body {
        o["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": schema}}});
    }
    o
}

fn q(name: &str, desc: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": desc, "schema": {"type": "integer", "minimum": 0}})
}

fn p(name: &str, kind: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": kind}})
}

fn obj(required: &[&str], props: Value) -> Value {
    json!({"type": "object", "required": required, "properties": props})
}

/// The spec document.
pub fn spec() -> Value {
    let s = json!({"type": "string"});
    let i = json!({"type": "integer"});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Feige IM API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "HTTP+JSON actions of Feige. Push is a WebSocket at /v1/ws carrying protobuf ServerFrame messages (proto/feige/v1)."},
        "security": [{"bearer": []}],
        "paths": {
            "/v1/auth/register": {"post": op("Create an account", false,
                Some(obj(&["username", "password"], json!({"username": s, "password": s, "nickname": s}))), ("201", "the user"), json!([]))},
            "/v1/auth/login": {"post": op("Log in a device", false,
                Some(obj(&["username", "password"], json!({"username": s, "password": s, "device_id": s, "platform": s}))),
                ("200", "user_id, device_id, access_token, refresh_token, expires_in"), json!([]))},
            "/v1/auth/refresh": {"post": op("Rotate tokens", false,
                Some(obj(&["refresh_token"], json!({"refresh_token": s}))), ("200", "new tokens; the old refresh token dies"), json!([]))},
            "/v1/auth/logout": {"post": op("Log this device out", true, None, ("204", "tokens revoked, sockets closed"), json!([]))},
            "/v1/users/me": {"get": op("The caller", true, None, ("200", "user"), json!([]))},
            "/v1/users/{user_id}": {"get": op("A user", true, None, ("200", "user"), json!([p("user_id", "integer")]))},
            "/v1/messages": {"post": op("Send a message", true,
                Some(obj(&["client_msg_id", "to", "type", "body"], json!({
                    "client_msg_id": s,
                    "to": obj(&["kind", "id"], json!({"kind": {"type": "string", "enum": ["user", "group"]}, "id": i})),
                    "type": s, "body": {}}))),
                ("201", "msg_id, conversation_id, conv_seq, seq, created_at (200 on an idempotent retry)"), json!([]))},
            "/v1/sync": {"get": op("Timeline events after a cursor", true, None, ("200", "events, next, has_more"),
                json!([q("since", "cursor (seq)"), q("limit", "at most 500"), q("wait", "long-poll seconds, at most 30")]))},
            "/v1/conversations": {"get": op("The caller's conversations with unread counts", true, None, ("200", "conversations"), json!([]))},
            "/v1/conversations/{id}/messages": {"get": op("History, newest first", true, None, ("200", "messages, has_more"),
                json!([p("id", "string"), q("before", "conv_seq, exclusive"), q("limit", "at most 100")]))},
            "/v1/conversations/{id}/read": {"post": op("Mark read up to a conv_seq", true,
                Some(obj(&["seq"], json!({"seq": i}))), ("200", "unread"), json!([p("id", "string")]))},
            "/v1/ws": {"get": op("WebSocket upgrade for push (protobuf frames)", true, None, ("101", "switching protocols"),
                json!([q("since", "replay events after this seq first"),
                       {"name": "access_token", "in": "query", "required": false, "schema": s}]))},
            "/v1/messages/{msg_id}/recall": {"post": op("Recall a message (sender, or group owner/admin, within the window)", true, None,
                ("200", "msg_id, conversation_id, conv_seq, recalled"), json!([p("msg_id", "string")]))},
            "/v1/conversations/{id}/read-positions": {"get": op("Every member's read position", true, None,
                ("200", "positions: [{user_id, read_seq}]"), json!([p("id", "string")]))},
            "/v1/groups": {
                "post": op("Create a group (owner plus members, at most 500)", true,
                    Some(obj(&["name"], json!({"name": s, "members": {"type": "array", "items": i}}))),
                    ("201", "group_id, name, owner_id, members, conversation_id"), json!([])),
                "get": op("The caller's groups", true, None, ("200", "groups"), json!([]))},
            "/v1/groups/{id}": {
                "get": op("Group info and the caller's role", true, None, ("200", "group"), json!([p("id", "integer")])),
                "patch": op("Rename / announce (owner, admin)", true,
                    Some(json!({"type": "object", "properties": {"name": s, "announcement": s}})), ("200", "group"), json!([p("id", "integer")])),
                "delete": op("Disband (owner)", true, None, ("204", "disbanded"), json!([p("id", "integer")]))},
            "/v1/groups/{id}/members": {
                "get": op("Members with roles", true, None, ("200", "members"), json!([p("id", "integer")])),
                "post": op("Invite (owner, admin); 409 group_full past 500", true,
                    Some(obj(&["user_ids"], json!({"user_ids": {"type": "array", "items": i}}))), ("200", "added"), json!([p("id", "integer")]))},
            "/v1/groups/{id}/members/{user_id}": {"delete": op("Leave (yourself) or kick (owner, admin)", true, None, ("204", "removed"),
                json!([p("id", "integer"), p("user_id", "integer")]))},
            "/v1/groups/{id}/admins": {"post": op("Grant admin (owner)", true, Some(obj(&["user_id"], json!({"user_id": i}))),
                ("204", "granted"), json!([p("id", "integer")]))},
            "/v1/groups/{id}/admins/{user_id}": {"delete": op("Revoke admin (owner)", true, None, ("204", "revoked"),
                json!([p("id", "integer"), p("user_id", "integer")]))},
            "/v1/groups/{id}/owner": {"post": op("Transfer ownership (owner)", true, Some(obj(&["user_id"], json!({"user_id": i}))),
                ("204", "transferred"), json!([p("id", "integer")]))},
            "/healthz": {"get": op("Liveness", false, None, ("200", "ok"), json!([]))},
            "/readyz": {"get": op("Readiness of every backend", false, None, ("200", "ready"), json!([]))},
            "/metrics": {"get": op("Prometheus metrics", false, None, ("200", "text"), json!([]))}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "error", "content": {"application/json": {"schema":
                obj(&["error"], json!({"error": obj(&["code", "message"], json!({"code": s, "message": s}))}))}}}}
        }
    })
}
