//! The seed's `/api/health`, served with axum from `client.health()`.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p resilis --example health_server
//! curl -s localhost:3000/api/health
//! ```
//!
//! Answers 200 with the report while Redis is ready, 503 with the same
//! report (state, last error and its fix, fallback, counters) while it is
//! not. `HEALTH_ADDR` changes the listening address (default 127.0.0.1:3000).
//! `GET /api/cache/{key}` reads through the client, showing whether Redis or
//! the fallback cache answered.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use resilis::{Client, Source};

async fn health(State(client): State<Client>) -> (StatusCode, Json<resilis::Health>) {
    let report = client.health();
    let status = if report.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report))
}

async fn read(
    State(client): State<Client>,
    Path(key): Path<String>,
) -> (StatusCode, Json<serde_json::Value>) {
    match client.get_with_source::<String>(&key).await {
        Ok(answer) => (
            StatusCode::OK,
            Json(serde_json::json!({
                "key": key,
                "value": answer.value,
                "source": match answer.source { Source::Redis => "redis", Source::Fallback => "fallback" },
            })),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": e.to_string(), "fix": e.fix() })),
        ),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "resilis=info".into()),
        )
        .init();
    let client = Client::from_env()?;
    let app = Router::new()
        .route("/api/health", get(health))
        .route("/api/cache/{key}", get(read))
        .with_state(client);
    let addr = std::env::var("HEALTH_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!("health endpoint on http://{addr}/api/health");
    axum::serve(listener, app).await?;
    Ok(())
}
