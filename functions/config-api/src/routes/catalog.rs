//! `GET /event-types` and `GET /openapi.json`.

use axum::Json;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use shared::domain::{Entity, EventName};

#[derive(Serialize)]
struct EventType {
    name: EventName,
    entity: Entity,
    entity_label: &'static str,
    label: &'static str,
}

#[derive(Serialize)]
struct EventTypes {
    event_types: Vec<EventType>,
}

pub async fn event_types() -> impl IntoResponse {
    Json(EventTypes {
        event_types: EventName::ALL
            .iter()
            .map(|&name| EventType {
                name,
                entity: name.entity(),
                entity_label: name.entity().label(),
                label: name.label(),
            })
            .collect(),
    })
}

/// The OpenAPI 3.1 description of this API.
pub const OPENAPI: &str = include_str!("../../openapi.json");

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
