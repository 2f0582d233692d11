"""`Authorization: Token <key>` for the tokens users make at /account/tokens/.

Listed before DRF's TokenAuthentication: a key without this app's prefix is left to it, so the tokens
made in the shell (`drf_create_token`) keep working. A `read` token is refused (403) any method that is not
safe, whatever the view, before the view's own permissions are asked.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from rest_framework import authentication, exceptions, permissions

from driftboard.accounts import selectors, services
from driftboard.accounts.models import ApiToken


class ApiTokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key: str):
        if not key.startswith(services.KEY_PREFIX):
            return None
        token = selectors.api_token_by_key_hash(services.key_hash(key))
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        services.api_token_touch(token=token)
        return token.user, token

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is not None and not _scope_allows(result[1], request.method):
            raise exceptions.PermissionDenied(
                f"This token's scope is read: {request.method} needs a token with the submit scope."
            )
        return result


def _scope_allows(token: ApiToken, method: str) -> bool:
    return token.scope == ApiToken.Scope.SUBMIT or method in permissions.SAFE_METHODS


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """The schema names these tokens apart from DRF's, though both travel as `Authorization: Token <key>`."""

    target_class = ApiTokenAuthentication
    name = "apiTokenAuth"

    def get_security_definition(self, auto_schema) -> dict:
        definition = build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Token")
        definition["description"] = (
            "A token made at /account/tokens/ (its key starts with dbt_). A read token gets 403 on any write."
        )
        return definition
