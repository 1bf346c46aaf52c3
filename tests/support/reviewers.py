"""A reviewer on the test stack, signed in as the Argilla UI signs in (a bearer token)."""

from __future__ import annotations

from typing import Any

import httpx


def reviewer_headers(stack: Any, username: str) -> dict[str, str]:
    """Create the annotator ``username`` on ``stack`` (an ``argilla_stack.stack.Stack``) and return
    the ``Authorization`` header of their session (``POST /api/v1/token``, as the UI does)."""
    api_url, _ = stack.credentials()
    password = stack.add_user(username, role="annotator")
    token = httpx.post(f"{api_url}/api/v1/token", data={"username": username, "password": password}).json()
    return {"Authorization": f"Bearer {token['access_token']}"}
