"""A small client of Superset's REST API (the standard library's HTTP; the project's own
environment has no Superset): log in, then import a bundle."""

from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.request
import uuid
from typing import Any

from retrolytics.bi import BiError

# The import endpoints, in the order the objects depend on one another. Each overwrites only
# its own kind (the dependencies it carries are imported without overwriting), so every kind
# is imported in turn.
IMPORT_ENDPOINTS = ("database", "dataset", "chart", "dashboard")


class SupersetApi:
    def __init__(self, base_url: str, timeout_s: float = 300.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        self._headers: dict[str, str] = {}

    def login(self, username: str, password: str) -> None:
        """A bearer token, then a CSRF token bound to this client's session cookie."""
        body = {"username": username, "password": password, "provider": "db", "refresh": False}
        token = self.request("POST", "/api/v1/security/login", body)["access_token"]
        self._headers = {"Authorization": f"Bearer {token}"}
        csrf = self.request("GET", "/api/v1/security/csrf_token/")["result"]
        self._headers |= {"X-CSRFToken": csrf, "Referer": self.base_url}

    def import_bundle(self, bundle: bytes, passwords: dict[str, str]) -> None:
        for kind in IMPORT_ENDPOINTS:
            fields = {"overwrite": "true", "passwords": json.dumps(passwords)}
            body, content_type = _multipart(fields, "formData", "bundle.zip", bundle)
            self.request("POST", f"/api/v1/{kind}/import/", body, content_type=content_type)

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | bytes | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        headers = {**self._headers, "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(
            self.base_url + path, data=data, headers=headers, method=method
        )
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:2000]
            raise BiError(
                f"Superset answered {method} {path} with {error.code}: {detail}"
            ) from error
        except (urllib.error.URLError, TimeoutError) as error:
            raise BiError(f"Superset at {self.base_url} did not answer {path}: {error}") from error


def _multipart(
    fields: dict[str, str], file_field: str, file_name: str, content: bytes
) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        disposition = f'Content-Disposition: form-data; name="{name}"'
        parts.append(f"--{boundary}\r\n{disposition}\r\n\r\n{value}\r\n".encode())
    parts.append(
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; '
            f'filename="{file_name}"\r\nContent-Type: application/zip\r\n\r\n'
        ).encode()
        + content
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
