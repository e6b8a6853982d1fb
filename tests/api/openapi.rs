//! The OpenAPI document and the router cannot drift apart: the same paths with the same
//! methods, checked against `router::ROUTES` and against the live server's 405s. And HEAD,
//! which the document leaves implied, is GET without the body.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use todo_api::router::{OPENAPI_JSON, ROUTES};

use crate::dbtest;
use crate::helpers::*;

const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

/// The document's paths and methods, with HEAD wherever there is GET (OpenAPI leaves it
/// implied; RFC 9110 §9.3.2 has every GET resource answer it).
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
                .collect::<BTreeSet<_>>();
            let head = methods.contains("GET").then(|| "HEAD".to_string());
            (path.clone(), methods.into_iter().chain(head).collect())
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

/// API.md, Routes at a glance: any other method on a known path is 405 with `Allow`. OpenAPI
/// has no place for the methods a path does not list, so every operation declares it.
#[test]
fn every_operation_declares_the_405_of_its_path() {
    let doc: Value = serde_json::from_str(OPENAPI_JSON).unwrap();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().unwrap() {
            if METHODS.contains(&method.to_ascii_uppercase().as_str()) {
                assert_eq!(
                    operation["responses"]["405"]["$ref"],
                    "#/components/responses/MethodNotAllowed",
                    "{method} {path}"
                );
            }
        }
    }
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
            let body = (!["GET", "HEAD", "DELETE"].contains(&method))
                .then_some(&br#"{"title": "probe"}"#[..]);
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
                // Every path answers OPTIONS too (API.md, CORS).
                let expected = methods.iter().cloned().chain(["OPTIONS".into()]).collect();
                assert_eq!(allow, expected, "Allow of {path}");
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

dbtest!(head_is_get_without_the_body, |app| {
    let alice = app.user("alice");
    let id = app.create(&alice, r#"{"title": "seen by HEAD"}"#)["id"].to_string();
    let task = format!("/api/tasks/{id}");
    for (who, client, path, status) in [
        ("nobody", app.anonymous(), "/health", 200),
        ("nobody", app.anonymous(), "/openapi.json", 200),
        ("nobody", app.anonymous(), "/docs", 200),
        ("alice", alice.clone(), "/api/tasks?sort=title", 200),
        ("alice", alice.clone(), task.as_str(), 200),
        ("bob", app.user("bob"), task.as_str(), 404),
        ("nobody", app.anonymous(), "/api/tasks", 401),
        ("alice", alice.clone(), "/api/tasks/abc", 400),
        ("alice", alice.clone(), "/nope", 404),
    ] {
        let get = client.get(path);
        assert_eq!(get.status, status, "GET {path} by {who}");
        // HEAD then GET on one connection: the GET's answer is read right only if the
        // HEAD's had no body, and nothing may follow it.
        let auth = client
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let mut stream = TcpStream::connect(app.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "HEAD {path} HTTP/1.1\r\nHost: t\r\n{auth}\r\n\
             GET {path} HTTP/1.1\r\nHost: t\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(stream);
        let head = read_head_response(&mut reader);
        let again = read_response(&mut reader);
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        let what = format!("HEAD {path} by {who}");
        assert_eq!(head.status, status, "{what}");
        let length = get.body.len().to_string();
        assert_eq!(
            head.header("Content-Length"),
            Some(length.as_str()),
            "{what}"
        );
        for name in ["Content-Type", "WWW-Authenticate", "Allow"] {
            assert_eq!(head.header(name), get.header(name), "{what}: {name}");
        }
        assert!(head.header("X-Request-Id").is_some(), "{what}");
        assert_eq!(
            (again.status, &again.body),
            (get.status, &get.body),
            "{what}"
        );
        assert!(rest.is_empty(), "{what}: {} bytes after", rest.len());
    }
});
