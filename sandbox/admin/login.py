"""A person's login through Keycloak's real browser login form, driven over HTTP.

Authorization code flow with PKCE (S256): GET the login page, POST the username and password form, POST the
one-time-code form with a TOTP code computed from the person's secret (pyotp) when the account has OTP, answer
the consent page when the client asks for consent, take the code from the redirect, exchange it for tokens.
Tenant admins log in with the realm's ``sandbox-broker-admin`` client (:func:`admin_login`); a user who lets an
agent act for them logs in with ``sandbox-user-login`` and consents to the agent (:func:`user_login`).

Keycloak marks its login cookies ``Secure``. Browsers treat loopback (127.0.0.1, localhost) as a secure
context and send such cookies over plain http; this helper does the same, for loopback only.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from typing import Any

import httpx
import pyotp
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from sandbox.errors import SandboxError
from sandbox.idp.realm import ADMIN_LOGIN_CLIENT_ID, USER_LOGIN_CLIENT_ID, delegation_scope
from sandbox.issued import remember_answer
from sandbox.loopback import is_loopback_host
from sandbox.oidc import discover_async

REDIRECT_URI = "http://127.0.0.1/broker-admin/callback"  # never served: the code is read from the redirect
MAX_STEPS = 8


class LoginFailed(SandboxError):
    pass


@dataclass(frozen=True)
class LoginTokens:
    access_token: str = field(repr=False)
    id_token: str | None = field(repr=False)
    expires_in: int


AdminTokens = LoginTokens


@dataclass
class _Form:
    id: str | None
    action: str
    inputs: dict[str, str] = field(default_factory=dict)
    buttons: set[str] = field(default_factory=set)  # names of its submit buttons (the consent page: accept, cancel)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[_Form] = []
        self.errors: list[str] = []
        self._in_error = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(_Form(values.get("id"), values.get("action", "")))
        elif tag == "input" and self.forms and values.get("name") and values.get("type") != "submit":
            self.forms[-1].inputs[values["name"]] = values.get("value", "")
        elif tag in ("button", "input") and self.forms and values.get("name"):
            self.forms[-1].buttons.add(values["name"])
        elif "kc-feedback-text" in values.get("class", "") or values.get("id") == "input-error":
            self._in_error = True

    def handle_data(self, data: str) -> None:
        if self._in_error and data.strip():
            self.errors.append(data.strip())
            self._in_error = False


def _parse(html: str) -> _FormParser:
    parser = _FormParser()
    parser.feed(html)
    return parser


def _seconds_to_next_code(otp_secret: str) -> float:
    interval = pyotp.TOTP(otp_secret).interval
    return interval - time.time() % interval + 0.2


def totp_now(otp_secret: str) -> str:
    """The current six-digit code for a base32 TOTP secret (what an authenticator app shows)."""
    return pyotp.TOTP(otp_secret).now()


class _LoopbackBrowser:
    """Cookie handling as a browser does it for a loopback origin (Secure cookies sent over http)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.cookies: dict[str, str] = {}

    async def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        host = httpx.URL(url).host
        if not is_loopback_host(host):
            raise LoginFailed(f"refusing to log in to non-loopback host {host}", "use the sandbox's own Keycloak")
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        response = await self.http.request(method, url, headers=headers, **kwargs)
        for header in response.headers.get_list("set-cookie"):
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        return response


async def admin_login(
    issuer: str,
    username: str,
    password: str,
    otp_secret: str | None = None,
    *,
    otp_code: str | None = None,
    client_id: str = ADMIN_LOGIN_CLIENT_ID,
    timeout: float = 15.0,
) -> LoginTokens:
    """Log in as a tenant admin; with an OTP the token proves MFA (``amr`` contains ``otp``).

    ``otp_secret`` (base32) computes the code; ``otp_code`` is one typed by a person.
    """
    return await login(issuer, username, password, otp_secret, otp_code=otp_code, client_id=client_id, timeout=timeout)


async def user_login(
    issuer: str,
    username: str,
    password: str,
    *,
    delegate_to: list[str],
    otp_secret: str | None = None,
    consent: bool = True,
    timeout: float = 15.0,
) -> LoginTokens:
    """Log in as a user of the tenant and let the agents ``delegate_to`` (client ids) act for them.

    The login asks for each agent's delegation scope and the person consents on Keycloak's consent page, so the
    token's ``aud`` names those agents: each may exchange it for a token of its own that acts for the user.
    """
    scope = " ".join(["openid", *(delegation_scope(agent) for agent in delegate_to)])
    return await login(
        issuer,
        username,
        password,
        otp_secret,
        client_id=USER_LOGIN_CLIENT_ID,
        scope=scope,
        consent=consent,
        timeout=timeout,
    )


async def login(
    issuer: str,
    username: str,
    password: str,
    otp_secret: str | None = None,
    *,
    client_id: str,
    otp_code: str | None = None,
    scope: str = "openid",
    consent: bool = False,
    timeout: float = 15.0,
) -> LoginTokens:
    """Log in through the realm's login form as ``client_id`` asks; ``consent`` answers yes on a consent page."""
    verifier = secrets.token_urlsafe(48)
    state = secrets.token_urlsafe(16)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http:
        browser = _LoopbackBrowser(http)
        endpoints = await discover_async(issuer, http)
        response = await browser.send(
            "GET",
            endpoints.authorization_endpoint,
            params={
                "client_id": client_id,
                "response_type": "code",
                "redirect_uri": REDIRECT_URI,
                "scope": scope,
                "state": state,
                "code_challenge": create_s256_code_challenge(verifier),
                "code_challenge_method": "S256",
            },
        )
        submitted: set[str] = set()
        waited = False
        for _ in range(MAX_STEPS):
            if response.is_redirect:
                location = httpx.URL(response.headers["location"])
                if str(location).startswith(REDIRECT_URI):
                    return await _exchange(http, endpoints.token_endpoint, client_id, location, state, verifier)
                response = await browser.send("GET", str(location))
                continue
            page = _parse(response.text)
            reason = "; ".join(page.errors) or f"HTTP {response.status_code}"
            if response.status_code != 200 or not page.forms:
                raise LoginFailed(f"Keycloak login of {username} failed: {reason}", "check the realm and the user")
            form = page.forms[0]
            step = (
                "password"
                if "password" in form.inputs
                else "otp"
                if "otp" in form.inputs
                else "consent"
                if "accept" in form.buttons
                else form.id or "?"
            )
            if step == "otp" and step in submitted and otp_secret and not waited:
                # Keycloak refuses a code used once (replay protection): wait for the next one, as a person would.
                waited = True
                await asyncio.sleep(_seconds_to_next_code(otp_secret))
            elif step in submitted:
                raise LoginFailed(f"Keycloak refused the {step} of {username}: {reason}", f"check the {step}")
            if step == "password":
                data = {"username": username, "password": password, "credentialId": ""}
            elif step == "otp":
                if otp_secret is None and otp_code is None:
                    raise LoginFailed(f"{username} has OTP configured but no one-time code was given", "pass the OTP")
                data = {**form.inputs, "otp": otp_code or totp_now(otp_secret or "")}
            elif step == "consent":
                if not consent:
                    raise LoginFailed(
                        f"Keycloak asks {username} to consent to what {client_id} requests ({scope})",
                        "log in with consent, as the person would say yes on the consent page",
                    )
                data = {**form.inputs, "accept": "Yes"}
            else:
                raise LoginFailed(
                    f"Keycloak asked {username} for an unexpected step (form {form.id!r}: {sorted(form.inputs)})",
                    "finish the account's required actions in the Keycloak account console",
                )
            submitted.add(step)
            response = await browser.send("POST", str(response.url.join(form.action)), data=data)
        raise LoginFailed(f"the login of {username} did not finish in {MAX_STEPS} steps", "check the realm's flow")


async def _exchange(
    http: httpx.AsyncClient, token_endpoint: str, client_id: str, location: httpx.URL, state: str, verifier: str
) -> LoginTokens:
    params = location.params
    if params.get("state") != state:
        raise LoginFailed("the login redirect carried a foreign state", "retry the login")
    if "code" not in params:
        raise LoginFailed(f"the login ended with {params.get('error')}: {params.get('error_description')}", "retry")
    response = await http.post(
        token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": REDIRECT_URI,
            "client_id": client_id,
            "code_verifier": verifier,
        },
    )
    if response.status_code != 200:
        raise LoginFailed(f"the code exchange failed ({response.status_code})", "retry the login")
    body = response.json()
    remember_answer(body)  # only when a test run keeps a registry of what it was issued
    return LoginTokens(body["access_token"], body.get("id_token"), int(body.get("expires_in", 0)))
