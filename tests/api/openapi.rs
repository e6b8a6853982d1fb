//! The OpenAPI document and the router cannot drift apart: the same paths with the same
//! methods, checked against `router::ROUTES` and against the live server's 405s.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use todo_api::router::{OPENAPI_JSON, ROUTES};

use crate::helpers::*;

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let doc: Value = serde_json::from_str(OPENAPI_JSON).unwrap();
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .map(|m| m.to_ascii_uppercase())
                .filter(|m| METHODS.contains(&m.as_str()))
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

fn routed() -> BTreeMap<String, BTreeSet<String>> {
    ROUTES
        .iter()
        .map(|(path, allow)| {
            (
                path.to_string(),
                allow.split(", ").map(String::from).collect(),
            )
        })
        .collect()
}

#[test]
fn the_document_and_the_router_list_the_same_routes_and_methods() {
    assert_eq!(documented(), routed());
}

#[test]
fn the_live_server_serves_exactly_the_routed_methods() {
    let app = TestApp::spawn(Engine::Sqlite);
    let alice = app.user("alice");
    for (pattern, methods) in routed() {
        for method in METHODS {
            // A fresh task per probe, since a probe may delete it.
            let task = app.create(&alice, r#"{"title": "probe"}"#);
            let path = pattern.replace("{task_id}", &task["id"].to_string());
            let body =
                (method != "GET" && method != "DELETE").then_some(&br#"{"title": "probe"}"#[..]);
            let r = alice.send(method, &path, body, &[]);
            if methods.contains(method) {
                assert!(
                    ![404, 405].contains(&r.status),
                    "{method} {path}: {} {}",
                    r.status,
                    r.text()
                );
            } else {
                assert_eq!(r.status, 405, "{method} {path} is not routed");
                let allow: BTreeSet<String> = r
                    .header("Allow")
                    .unwrap()
                    .split(", ")
                    .map(String::from)
                    .collect();
                assert_eq!(allow, methods, "Allow of {path}");
            }
        }
    }
}

#[test]
fn openapi_json_and_docs_are_served_without_a_token() {
    let app = TestApp::spawn(Engine::Sqlite);
    let r = app.anonymous().get("/openapi.json");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(
        r.json(),
        serde_json::from_str::<Value>(OPENAPI_JSON).unwrap()
    );
    assert!(r.json()["openapi"].as_str().unwrap().starts_with("3.1"));

    let r = app.anonymous().get("/docs");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    let html = r.text();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("swagger-ui-bundle.js") && html.contains(r#"url: "/openapi.json""#));
    assert!(html.trim_end().ends_with("</html>"));
}
