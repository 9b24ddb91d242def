//! `/api/v1/openapi.json`: served, describes every route, and names every
//! error code the API can answer with. schemathesis checks the live API
//! against it (cluster-tests/tests/it/openapi.rs).

use crate::common::start_node;

/// The error codes written in the code: the arms of `GraphError::code` and
/// `AppError::code`, and every literal code an `ApiError` is built with.
fn codes_in_source() -> Vec<String> {
    let arms = |source: &str| -> Vec<String> {
        let code_fn = &source[source.find("pub fn code(").expect("a code()")..];
        let code_fn = &code_fn[..code_fn.find("\n    }\n").expect("end of code()")];
        code_fn.split("=> \"").skip(1).map(|s| s[..s.find('"').unwrap()].to_string()).collect()
    };
    let mut codes = arms(include_str!("../../../graph/src/error.rs"));
    codes.extend(arms(include_str!("../../src/app/error.rs")));
    let http = [
        include_str!("../../src/http/error.rs"),
        include_str!("../../src/http/serve.rs"),
        include_str!("../../src/http/api/graph.rs"),
    ];
    for file in http {
        for call in file.split("ApiError::new(").skip(1) {
            let args = &call[..call.find(')').unwrap_or(call.len())];
            if let Some(start) = args.find('"') {
                let rest = &args[start + 1..];
                codes.push(rest[..rest.find('"').unwrap()].to_string());
            }
        }
        for (helper, code) in [
            ("bad_request(", "bad_request"),
            ("unauthorized(", "unauthorized"),
            ("forbidden(", "forbidden"),
            ("not_found(", "not_found"),
        ] {
            if file.contains(&format!("fn {helper}")) {
                codes.push(code.to_string());
            }
        }
    }
    codes.sort();
    codes.dedup();
    codes
}

#[tokio::test]
async fn given_a_node_then_its_openapi_description_names_every_route_and_every_error_code() {
    let n = start_node(|_| {}).await;
    let doc: serde_json::Value = reqwest::get(format!("http://{}/api/v1/openapi.json", n.running.http_addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    let router = include_str!("../../src/http/api/mod.rs");
    for route in router.split(".route(\"").skip(1).map(|r| &r[..r.find('"').unwrap()]) {
        if route == "/api/v1/openapi.json" {
            continue;
        }
        assert!(paths.contains_key(route), "the description lacks {route}");
        // The consistent-reads layer serves every GET of the API.
        if let Some(get) = paths[route].get("get").filter(|_| route.starts_with("/api/")) {
            let params = get["parameters"].as_array().map(Vec::as_slice).unwrap_or_default();
            assert!(params.iter().any(|p| p["name"] == "consistent"), "GET {route} does not list `consistent`");
        }
    }
    let described: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let codes = codes_in_source();
    assert!(codes.len() >= 25, "found too few codes in the source: {codes:?}");
    for code in &codes {
        assert!(described.contains(&code.as_str()), "error code {code} is not in the description");
    }
}
