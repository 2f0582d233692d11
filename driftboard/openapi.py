"""The OpenAPI generator of the API: drf-spectacular's, plus the error answers each operation can give.

drf-spectacular documents only the success response. Clients (and the schema-driven tests) also
need to know that a bad body answers 400, a missing token 401, a role too weak 403, an unknown
object 404 and an oversized upload 413, and what those bodies look like.
"""

from drf_spectacular import openapi

DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
VALIDATION_ERRORS = {
    "type": "object",
    "description": "Messages by field name (lists of strings), or `detail` for the whole request.",
    "additionalProperties": {},
}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error_responses(operation: dict) -> dict[str, dict]:
    """The errors this operation can answer, judged from its parameters and body."""
    parameters = operation.get("parameters", [])
    has_body = "requestBody" in operation
    errors = {
        "401": _json(DETAIL, "No valid credentials were sent."),
        "403": _json(DETAIL, "The signed-in user's role does not allow this."),
    }
    if has_body or any(p["in"] == "query" for p in parameters):
        errors["400"] = _json(VALIDATION_ERRORS, "The request is invalid; the body says why.")
    if any(p["in"] == "path" or p["name"] == "page" for p in parameters):
        errors["404"] = _json(DETAIL, "No such object, or no such page.")
    if has_body:
        errors["413"] = _json(DETAIL, "The body or upload is larger than the server accepts.")
    return errors


class AutoSchema(openapi.AutoSchema):
    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is not None:
            for code, response in error_responses(operation).items():
                operation["responses"].setdefault(code, response)
        return operation
