"""Who may write: a bearer token or basic auth from `ui.auth` (a Secret). Without them every
page still reads; write actions answer 401 (no or wrong credentials) and change nothing.

CSRF: a browser sends cached basic-auth credentials with a forged cross-site form, so every
write form carries a token bound to the user (HMAC with a per-process key) and a write must
present it; a cross-origin Origin header is refused as well."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from starlette.requests import Request

from jobstream.config.ui_section import UiAuthSettings


class AuthError(Exception):
    """A write was refused; status is 401 (who are you) or 403 (forged or cross-site)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class Auth:
    def __init__(self, cfg: UiAuthSettings) -> None:
        self.passwords = {u: p.get_secret_value() for u, p in cfg.passwords.items()}
        self.tokens = {u: t.get_secret_value() for u, t in cfg.tokens.items()}
        self._key = secrets.token_bytes(32)

    @property
    def enabled(self) -> bool:
        return bool(self.passwords or self.tokens)

    def user(self, request: Request) -> str | None:
        """The authenticated user, None without (valid) credentials."""
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value:
            for user, token in self.tokens.items():
                if _same(value.strip(), token):
                    return user
        elif scheme.lower() == "basic" and value:
            try:
                name, sep, password = base64.b64decode(value.strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            expected = self.passwords.get(name)
            if sep and expected is not None and _same(password, expected):
                return name
        return None

    def csrf_token(self, user: str) -> str:
        return hmac.new(self._key, user.encode(), hashlib.sha256).hexdigest()

    def require_write(self, request: Request, form_token: str | None) -> str:
        """The user allowed to write, or AuthError."""
        if not self.enabled:
            raise AuthError(401, "write actions are off: no credentials are configured "
                                 "(ui.auth.passwords or ui.auth.tokens)")
        user = self.user(request)
        if user is None:
            raise AuthError(401, "this action needs credentials: sign in (basic auth) or send "
                                 "a bearer token")
        origin = request.headers.get("origin")
        if origin and origin != "null" and origin.rstrip("/") != _own_origin(request):
            raise AuthError(403, f"refused: the form came from another site ({origin})")
        if not form_token or not _same(form_token, self.csrf_token(user)):
            raise AuthError(403, "refused: the form's CSRF token is missing or wrong "
                                 "(reload the page and try again)")
        return user


def _own_origin(request: Request) -> str:
    host = request.headers.get("host", "")
    return f"{request.url.scheme}://{host}"
