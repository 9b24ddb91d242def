//! The OpenAPI 3 description of the API, generated from the handlers'
//! `#[utoipa::path]` and the types of `app::types`; served at
//! `/api/v1/openapi.json`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi};

use crate::app::types::*;

/// The errors any API endpoint may answer, each with `{"error": {"code", "message"}}`.
#[allow(dead_code)] // a description, never built
#[derive(IntoResponses)]
pub enum ApiErrors {
    /// Invalid input: a malformed body or query, a bad name, a rejected change.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No token, or one that is not valid.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The caller may not do this.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// The user, group, share or key does not exist.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The request was not done within 60 s.
    #[response(status = 408)]
    RequestTimeout(ErrorBody),
    /// It exists already, a membership change is refused, or a voter runs an older version.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The body is larger than this caller may send.
    #[response(status = 413)]
    PayloadTooLarge(ErrorBody),
    /// The body is not `application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// The JSON does not have the fields the endpoint takes.
    #[response(status = 422)]
    UnprocessableEntity(ErrorBody),
    /// The cluster cannot commit or confirm a read now (no quorum, no leader).
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

#[derive(OpenApi)]
#[openapi(
    info(title = "hpfriends", description = "The sharing graph of an hpfriends cluster: users, groups, shares and hpfeeds keys. Any node answers; writes go through Raft. Authenticate with `Authorization: Bearer <operator token or USER.SECRET>`."),
    paths(
        super::health::healthz,
        super::health::readyz,
        super::health::metrics_text,
        super::users::list,
        super::users::add,
        super::users::remove,
        super::users::token,
        super::users::invite,
        super::users::disable,
        super::users::enable,
        super::groups::list,
        super::groups::add,
        super::groups::invite,
        super::groups::join,
        super::groups::leave,
        super::groups::remove_member,
        super::groups::add_admin,
        super::shares::list,
        super::shares::add,
        super::shares::accept,
        super::shares::filter,
        super::shares::remove,
        super::keys::list,
        super::keys::add,
        super::keys::change,
        super::keys::remove,
        super::keys::activity,
        super::graph::explain,
        super::graph::apply,
        super::cluster::status,
        super::cluster::leave,
        super::history::list,
        super::history::retention,
        super::history::set_retention,
        super::messages::list,
        super::keeps::list,
        super::keeps::set,
    ),
    components(schemas(ErrorCode, ErrorBody, ErrorDetail)),
    modifiers(&BearerToken, &ConsistentReads),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every `GET /api/…` takes `?consistent=true` (`consistent_reads`, a layer
/// over all of them), so the description says so for each, not only where a
/// query type happens to list it.
struct ConsistentReads;

impl Modify for ConsistentReads {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::Required;
        for (path, item) in api.paths.paths.iter_mut().filter(|(p, _)| p.starts_with("/api/")) {
            let Some(get) = item.get.as_mut() else { continue };
            let parameters = get.parameters.get_or_insert_with(Vec::new);
            if parameters.iter().any(|p| p.name == "consistent") || path == "/api/v1/openapi.json" {
                continue;
            }
            parameters.push(
                ParameterBuilder::new()
                    .name("consistent")
                    .parameter_in(ParameterIn::Query)
                    .required(Required::False)
                    .description(Some("Wait until this node has applied everything committed before the request."))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::Boolean)))
                    .build(),
            );
        }
    }
}

/// `GET /api/v1/openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
