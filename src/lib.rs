//! todo-api: the backend of a multi-user Todo app. A tiny_http listener's connection threads
//! handle requests themselves while a request slot is free and otherwise feed a fixed pool of
//! worker threads; each request is routed by hand to a small handler that gets the verified
//! caller and runs parameterised SQL on a pooled connection.

/// Bearer tokens into users.
pub mod auth;
/// Configuration from the environment, validated once.
pub mod config;
/// The storage interface, PostgreSQL and SQLite.
pub mod db;
/// The error type and its mapping to statuses and bodies.
pub mod error;
/// Our request view and reply value.
pub mod http;
/// A task's JSON, written by hand.
pub mod json;
/// Better Auth's JSON Web Key Set, fetched and cached.
pub mod jwks;
/// Log lines: their format, and the thread that writes them.
pub mod logsink;
/// Path and method to handler.
pub mod router;
/// Listener, request slots, workers, CORS, request ids and the access log.
pub mod server;
/// Task handlers and request parsing.
pub mod tasks;
/// Timestamps in the API's one wire format.
pub mod time;

use std::time::Duration;

pub use config::Config;
pub use server::Server;

/// Opens the database, binds the listener and starts the workers.
pub fn start(config: Config) -> Result<Server, String> {
    let store = db::open(&config.database, config.pool_size, config.statement_cache)?;
    let ctx = router::Ctx {
        store,
        auth: auth::Authenticator::new(&config),
        users: router::UserCache::new(),
        health: router::HealthCheck::default(),
        bodies: http::BodyBudget::new(config.body_budget),
    };
    let server = Server::start(
        config.listen,
        config.workers,
        ctx,
        config.cors_origins.clone(),
    )?;
    log::info!(
        "listening on http://{} (database: {}, workers: {}, pool: {}{}, cors: {})",
        server.addr(),
        db::redact(&config.database),
        config.workers,
        config.pool_size,
        // A PostgreSQL setting: said only where it applies.
        if config.statement_cache && matches!(config.database, config::Database::Postgres(_)) {
            ", statement cache"
        } else {
            ""
        },
        config.cors_origins.join(" ")
    );
    if config.secret_is_generated {
        // API.md, Configuration: with no secret the server still works, for one run.
        let token = auth::mint_for(
            &config,
            "demo-user",
            Some("demo@example.com"),
            Some("Demo"),
            Duration::from_secs(3600),
        )
        .expect("an hour is a ttl any token can carry");
        log::warn!(
            "BETTER_AUTH_SECRET is not set: using a random secret for this run only. \
             Try: curl -H 'Authorization: Bearer {token}' http://{}/api/tasks",
            server.addr()
        );
    }
    Ok(server)
}
