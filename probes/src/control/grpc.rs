//! One gRPC request over HTTP/2 and what its answer proves.
//!
//! gRPC over HTTP/2 (the "PROTOCOL-HTTP2" document of the gRPC project): a request is a POST
//! to `/{service}/{method}` with `content-type: application/grpc` and `te: trailers`, its body a
//! sequence of length-prefixed messages (1 byte compressed flag, 4 bytes big-endian length,
//! the message). The status comes in the `grpc-status` trailer, or in the headers of a
//! "trailers-only" response. Any status at all — UNIMPLEMENTED for a method the server lacks
//! included — proves that gRPC went end to end.

use serde::Serialize;

/// The method asked: the standard health check. A server without it answers UNIMPLEMENTED,
/// which proves the path just as well.
pub const HEALTH_CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// The request body: one uncompressed, empty `HealthCheckRequest` (all fields default).
pub const EMPTY_MESSAGE: [u8; 5] = [0, 0, 0, 0, 0];

/// Name of a gRPC status code.
pub fn code_name(code: u32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "(unknown code)",
    }
}

/// What the gRPC request showed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "verdict")]
pub enum GrpcVerdict {
    /// A gRPC status came back: gRPC works end to end.
    Status {
        /// The code.
        code: u32,
        /// Its name.
        name: &'static str,
        /// `grpc-message`, if any.
        message: Option<String>,
    },
    /// An HTTP/2 answer without a gRPC status: something else answered (a proxy's error
    /// page, a web server in front that does not route gRPC).
    NotGrpc {
        /// HTTP status.
        http_status: u16,
        /// Its content type.
        content_type: Option<String>,
    },
    /// The HTTP/2 exchange failed (reset stream, GOAWAY, timeout).
    Failed {
        /// What happened.
        detail: String,
    },
}

impl GrpcVerdict {
    /// Whether gRPC is proven to work on this path.
    pub fn proves_grpc(&self) -> bool {
        matches!(self, GrpcVerdict::Status { .. })
    }
}

/// Judge a response from its HTTP status, content type and `grpc-status` (from the headers of a
/// trailers-only response, or from the trailers), and `grpc-message`.
pub fn verdict(
    http_status: u16,
    content_type: Option<&str>,
    grpc_status: Option<&str>,
    grpc_message: Option<&str>,
) -> GrpcVerdict {
    let is_grpc = content_type.is_some_and(|c| c.starts_with("application/grpc"));
    match grpc_status.and_then(|s| s.trim().parse::<u32>().ok()) {
        Some(code) if is_grpc || http_status == 200 => GrpcVerdict::Status {
            code,
            name: code_name(code),
            message: grpc_message.map(str::to_string),
        },
        _ => GrpcVerdict::NotGrpc {
            http_status,
            content_type: content_type.map(str::to_string),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(
            verdict(200, Some("application/grpc"), Some("12"), None),
            GrpcVerdict::Status {
                code: 12,
                name: "UNIMPLEMENTED",
                message: None
            }
        );
        assert!(matches!(
            verdict(403, Some("text/html"), None, None),
            GrpcVerdict::NotGrpc {
                http_status: 403,
                ..
            }
        ));
        assert!(matches!(
            verdict(200, Some("application/grpc"), Some("x"), None),
            GrpcVerdict::NotGrpc { .. }
        ));
    }
}
