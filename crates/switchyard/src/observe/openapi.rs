//! `GET /api/v1/openapi.json`: the admin API's OpenAPI 3.1 document, generated (utoipa) from
//! the handlers' annotations and the response types in [`super::views`].

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchyard admin API",
        description = "Events, every route's decision and the runs they started; dead letters; routes and their open trigger state; the live tap; reloading the config. With `admin.token` set, every call needs `Authorization: Bearer <token>`."
    ),
    paths(
        super::api::overview,
        super::api::list_events,
        super::api::event,
        super::api::dead_letters,
        super::api::replay,
        super::api::purge,
        super::api::routes,
        super::api::instances,
        super::api::tap,
        super::api::reload,
        super::api::readyz,
        super::api::metrics_text,
    ),
    modifiers(&Token),
    security(("token" = [])),
    tags((name = "api", description = "The JSON API"), (name = "health", description = "Probes and metrics"))
)]
struct Document;

/// The bearer token scheme.
struct Token;

impl utoipa::Modify for Token {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document, with this build's version.
pub fn document_value() -> utoipa::openapi::OpenApi {
    let mut doc = Document::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

pub(super) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(document_value())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` in the document names a schema it defines, and every API path is there.
    #[test]
    fn the_document_is_whole() {
        let doc = serde_json::to_value(document_value()).unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut stack = vec![&doc];
        let mut refs = 0;
        while let Some(v) = stack.pop() {
            match v {
                serde_json::Value::Object(m) => {
                    if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                        let name = r.strip_prefix("#/components/schemas/").unwrap();
                        assert!(schemas.contains_key(name), "{r} is not defined");
                        refs += 1;
                    }
                    stack.extend(m.values());
                }
                serde_json::Value::Array(a) => stack.extend(a),
                _ => {}
            }
        }
        assert!(refs > 10, "{refs}");
        for path in [
            "/api/v1/overview",
            "/api/v1/events",
            "/api/v1/events/{id}",
            "/api/v1/dead-letters",
            "/api/v1/dead-letters/{id}/replay",
            "/api/v1/dead-letters/{id}",
            "/api/v1/routes",
            "/api/v1/tap",
            "/readyz",
            "/metrics",
        ] {
            assert!(doc["paths"][path].is_object(), "{path}");
        }
        for s in [
            "EventView",
            "Overview",
            "DeadLetter",
            "Event",
            "Tapped",
            "RunView",
        ] {
            assert!(schemas.contains_key(s), "{s}");
        }
    }
}
