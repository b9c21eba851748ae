"""Guests (Entra B2B): accounts of another tenant invited into the sensor's.

A guest is refused (``guest_not_allowed``) unless ``[entra] allow_guests = true``, because
Entra ID offboards guests differently: revoking a guest's sessions in the sensor's tenant does
not revoke the refresh tokens, which only the guest's home tenant can
(MicrosoftDocs/entra-docs, ``docs/identity-platform/refresh-tokens.md``), and a guest often
lacks a first or last name and gets no ``upn`` claim unless the optional claim's
``include_externally_authenticated_upn`` is set (Graph then gives ``name_home#EXT#@tenant``).

Recognised by the ID token's ``idp`` claim, which names the home tenant's issuer when it is not
the sensor's tenant (``id-token-claims-reference.md``: absent, or naming the same tenant, for a
member), or by ``#EXT#`` in the UPN. ``readable_upn`` shows ``jo_fabrikam.com#EXT#@contoso...``
as ``jo@fabrikam.com (guest)``; the session keeps the UPN Entra gave.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import SignInRefused

EXTERNAL_MARK = "#EXT#"


def is_guest(claims: Mapping[str, Any], tenant_id: str, upn: str | None = None) -> bool:
    """Another tenant's account: ``idp`` names another issuer, or the UPN carries #EXT#."""
    idp = claims.get("idp")
    if isinstance(idp, str) and idp and idp != claims.get("iss") and \
            tenant_id.lower() not in idp.lower():
        return True
    return any(isinstance(u, str) and EXTERNAL_MARK in u.upper()
               for u in (upn, claims.get("upn")))


def refuse_guest(claims: Mapping[str, Any], tenant_id: str, allowed: bool,
                 upn: str | None = None) -> None:
    if not allowed and is_guest(claims, tenant_id, upn):
        raise SignInRefused("guest_not_allowed", "the account is a guest from another tenant "
                            "and [entra] allow_guests is false", upn=upn)


def readable_upn(upn: str) -> str:
    """``jo_fabrikam.com#EXT#@contoso.onmicrosoft.com`` → ``jo@fabrikam.com (guest)``."""
    at = upn.upper().find(EXTERNAL_MARK)
    if at < 0:
        return upn
    local = upn[:at]
    name, sep, domain = local.rpartition("_")
    return f"{name}@{domain} (guest)" if sep and name and domain else f"{local} (guest)"
