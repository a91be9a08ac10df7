//! API errors in the shape the real API server returns them: a `v1` `Status` object with the HTTP
//! code, a reason, a message worded as apiserver words it, and details naming the object.

use serde_json::{Value, json};

use crate::resources::ResourceType;

/// An error response.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// The `Status` body.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }

    fn object_details(resource: &ResourceType, name: &str) -> Value {
        let mut details = json!({ "name": name, "kind": resource.plural });
        if !resource.group.is_empty() {
            details["group"] = json!(resource.group);
        }
        details
    }

    pub fn not_found(resource: &ResourceType, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", resource.group_resource()),
        )
        .with_details(Self::object_details(resource, name))
    }

    pub fn already_exists(resource: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", resource.group_resource()),
        )
        .with_details(Self::object_details(resource, name))
    }

    pub fn conflict(resource: &ResourceType, name: &str, cause: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: {cause}",
                resource.group_resource()
            ),
        )
        .with_details(Self::object_details(resource, name))
    }

    pub fn stale(resource: &ResourceType, name: &str) -> Self {
        Self::conflict(
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn forbidden(
        resource: &ResourceType,
        subresource: Option<&str>,
        name: &str,
        verb: &str,
        user: &str,
        namespace: Option<&str>,
    ) -> Self {
        let object = if name.is_empty() {
            resource.group_resource()
        } else {
            format!("{} {name:?}", resource.group_resource())
        };
        let plural = match subresource {
            Some(sub) => format!("{}/{sub}", resource.plural),
            None => resource.plural.clone(),
        };
        let scope = match namespace {
            Some(ns) => format!("in the namespace {ns:?}"),
            None => "at the cluster scope".to_string(),
        };
        Self::new(
            403,
            "Forbidden",
            format!(
                "{object} is forbidden: User {user:?} cannot {verb} resource {plural:?} in API group {:?} {scope}",
                resource.group
            ),
        )
        .with_details(Self::object_details(resource, name))
    }

    /// 422 for an invalid field, worded as apiserver field validation is.
    pub fn invalid(
        resource: &ResourceType,
        name: &str,
        field: &str,
        value: &str,
        detail: &str,
    ) -> Self {
        let cause = format!("Invalid value: {value:?}: {detail}");
        let mut details = json!({
            "name": name,
            "kind": resource.kind,
            "causes": [{ "reason": "FieldValueInvalid", "message": cause, "field": field }],
        });
        if !resource.group.is_empty() {
            details["group"] = json!(resource.group);
        }
        Self::new(
            422,
            "Invalid",
            format!(
                "{} {name:?} is invalid: {field}: {cause}",
                resource.group_kind()
            ),
        )
        .with_details(details)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn resource_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )
    }

    pub fn unsupported_patch(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json-patch+json, application/merge-patch+json (got {content_type:?}; \
                 the fake API server implements no other patch type)"
            ),
        )
    }
}
