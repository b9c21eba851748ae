"""What a refused or failed sign-in means for the person in front of the sensor.

Reason codes (shared with the audit log) and AADSTS codes → a title, what happened in the
user's words, and what to do next. Pure data; the web layer renders it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Explanation:
    title: str
    what: str
    todo: str


ADMIN = "Ask your Entra ID administrator"

AADSTS: dict[str, Explanation] = {
    "50011": Explanation("Redirect URI mismatch",
                         "Entra ID does not know this sensor's address as a redirect URI.",
                         f"{ADMIN} to add the sensor's redirect URI exactly as configured "
                         "(Single-page application platform) to the app registration."),
    "50105": Explanation("You are not assigned to this application",
                         "Your account is not assigned to the sensor's app registration.",
                         f"{ADMIN} to assign your account or one of your groups to the app."),
    "50076": Explanation("Multi-factor authentication required",
                         "Your organization requires multi-factor authentication.",
                         "Select Try again and complete the verification Entra ID asks for."),
    "50079": Explanation("Multi-factor authentication registration required",
                         "You must register a verification method before signing in.",
                         "Select Try again and follow Entra ID's registration steps."),
    "53003": Explanation("Blocked by Conditional Access",
                         "A Conditional Access policy of your organization blocked this sign-in.",
                         f"{ADMIN} which policy applies to the sensor's app registration."),
    "65001": Explanation("Admin consent missing",
                         "The sensor's app registration has not been granted consent.",
                         f"{ADMIN} to select 'Grant admin consent' under API permissions."),
    "700016": Explanation("Application not found",
                          "Entra ID does not know the sensor's application (client) ID.",
                          "Ask the sensor administrator to check entra.client_id against the "
                          "app registration's Application (client) ID."),
    "90002": Explanation("Tenant not found",
                         "Entra ID does not know the configured tenant in this cloud.",
                         "Ask the sensor administrator to check entra.cloud first (a tenant "
                         "of a national cloud is unknown to the public one), then "
                         "entra.tenant_id."),
    "90038": Explanation("Tenant in another cloud",
                         "The configured tenant belongs to another Microsoft cloud.",
                         "Ask the sensor administrator to set entra.cloud to the tenant's "
                         "cloud (public, usgov, usgov-dod or china)."),
    "900432": Explanation("Tenant in another cloud",
                          "The sensor's app registration is in another Microsoft cloud than "
                          "the one the sensor signs in with.",
                          "Ask the sensor administrator to set entra.cloud to the tenant's "
                          "cloud."),
    "700005": Explanation("Sign-in code for another tenant",
                          "The sign-in code was issued for another tenant than the sensor's.",
                          "Select Try again. If it happens again, ask the sensor administrator "
                          "to check entra.tenant_id."),
    "7000112": Explanation("The sensor's application is disabled",
                           "Your organization disabled the sensor's application in Entra ID, "
                           "so no one can sign in to this sensor with SSO.",
                           f"{ADMIN} whether the sensor's enterprise application should be "
                           "enabled again (Enabled for users to sign in)."),
    "7000222": Explanation("The sensor's client secret has expired",
                           "Entra ID no longer accepts this sensor's client secret.",
                           "Tell the sensor administrator: create a new client secret in the "
                           "app registration and write it to entra.client_secret_file."),
    "7000215": Explanation("The sensor's client secret is wrong",
                           "Entra ID does not accept this sensor's client secret.",
                           "Tell the sensor administrator: entra.client_secret_file must hold "
                           "the secret's Value, not its Secret ID."),
    "700027": Explanation("The sensor's certificate is not accepted",
                          "Entra ID does not accept the certificate this sensor signs in with.",
                          "Tell the sensor administrator: upload the certificate of "
                          "entra.client_certificate_file to the app registration again."),
    "50020": Explanation("Account from another organization",
                         "Your account (of another organization, or a personal Microsoft "
                         "account) is not a user of this organization's directory.",
                         "Sign in with your organization's account, or ask your Entra ID "
                         "administrator to invite your account as a guest."),
    "50034": Explanation("Account not found",
                         "Entra ID does not know this account in the sensor's organization.",
                         "Check the account name; sign in with your organization's account."),
    "50053": Explanation("Sign-in blocked",
                         "Entra ID blocked this sign-in: your account is locked after too "
                         "many attempts, or the address the sign-in came from was flagged for "
                         "malicious activity.",
                         "Wait a while and select Try again. If it persists, ask your "
                         "Entra ID administrator to check the sign-in logs for this "
                         "attempt."),
    "90072": Explanation("Account from another organization",
                         "Your account comes from another organization and is not a guest of "
                         "the sensor's organization.",
                         f"{ADMIN} to invite your account as a guest, or sign in with an "
                         "account of the sensor's organization."),
    "90094": Explanation("Administrator consent needed",
                         "The sensor's application needs an administrator's consent before "
                         "anyone can use it.",
                         f"{ADMIN} to select 'Grant admin consent' under the app "
                         "registration's API permissions."),
    "90095": Explanation("Administrator consent needed",
                         "The sensor's application needs an administrator's consent before "
                         "anyone can use it.",
                         f"{ADMIN} to select 'Grant admin consent' under the app "
                         "registration's API permissions."),
    "65004": Explanation("Consent declined",
                         "You declined the permissions the sensor's application asks for.",
                         "Select Try again and accept, or ask your Entra ID administrator to "
                         "grant admin consent for the sensor's application."),
    "9002327": Explanation("Single-page application redemption refused",
                           "The redirect URI is registered as a Single-page application, but "
                           "the sensor redeems codes as a Web platform app.",
                           "Either set entra.platform = \"spa\" (and remove the client "
                           "secret or certificate), or ask your Entra ID administrator to move "
                           "the redirect URI to the Web platform. Then check that "
                           "entra.redirect_uri matches the registered URI exactly."),
    "9002326": Explanation("Cross-origin redemption refused",
                           "The redirect URI is registered as a Web platform URI, not as a "
                           "Single-page application.",
                           f"{ADMIN} to move the redirect URI to the Single-page application "
                           "platform in the app registration's Authentication page, or set "
                           "entra.platform = \"web\" with a client secret or certificate "
                           "(client_secret_file or client_certificate_file)."),
    "7000218": Explanation("Client credentials missing",
                           "The app registration expects a client secret or certificate.",
                           "Set entra.platform = \"web\" with client_secret_file or "
                           "client_certificate_file, or ask your Entra ID administrator to "
                           "register the redirect URI as a Single-page application."),
    "700025": Explanation("Client credentials not expected",
                          "The app registration is a public client (Single-page application), "
                          "but the sensor presented a client secret or certificate.",
                          "Set entra.platform = \"spa\" and remove the client secret or "
                          "certificate, or ask your Entra ID administrator to register the "
                          "redirect URI under the Web platform."),
}

# The provider's ``error=`` values (OAuth 2.0 / OpenID Connect), when no AADSTS code says more.
PROVIDER_ERRORS: dict[str, Explanation] = {
    "access_denied": Explanation("Sign-in was declined",
                                 "Entra ID did not let this sign-in through (it was cancelled, "
                                 "declined or blocked by a policy).",
                                 "Select Try again. If you did not cancel it, ask your Entra ID "
                                 "administrator whether a policy blocks the sensor's app."),
    "interaction_required": Explanation("Entra ID needs you to do something",
                                        "Entra ID needs more from you before it signs you in "
                                        "(for example multi-factor authentication or accepting "
                                        "terms of use).",
                                        "Select Try again and complete what Entra ID asks."),
    "login_required": Explanation("Sign in again",
                                  "Entra ID needs you to enter your account details again.",
                                  "Select Try again and sign in."),
    "consent_required": Explanation("Admin consent missing",
                                    "The sensor's app registration lacks consent for the "
                                    "permissions it needs.",
                                    "Ask your Entra ID administrator to select 'Grant admin "
                                    "consent' under the app registration's API permissions."),
}

_MISCONFIGURED = "Sign-in is not set up correctly"
_TRY_AGAIN = "Select Try again. If it happens again, tell your sensor administrator the " \
             "reference below."

REASONS: dict[str, Explanation] = {
    "no_role": Explanation("No access to this sensor",
                           "You signed in, but your account is in none of the Entra ID groups "
                           "that give access to this sensor.",
                           "Ask {contact} to add you to the sensor's Admin, Security analyst "
                           "or Read only group."),
    "no_app_role": Explanation("No access to this sensor",
                               "You signed in, but your account has none of the app roles "
                               "that give access to this sensor.",
                               "Ask {contact} or your Entra ID administrator to assign you "
                               "an app role of the sensor's application (Admin, Security "
                               "analyst or Read only), then sign in again."),
    "missing_attributes": Explanation("Your account is incomplete",
                                      "Your Entra ID account lacks: {missing}. The sensor needs "
                                      "a first name, a last name and a user principal name.",
                                      f"{ADMIN} to fill in the missing attributes of your "
                                      "account, then sign in again."),
    "wrong_tenant": Explanation("Account from another organization",
                                "You signed in with an account of another Entra ID tenant.",
                                "Sign out of that account and sign in with your organization's "
                                "account."),
    "idp_error": Explanation("Entra ID did not sign you in",
                             "Entra ID answered: {error}.",
                             _TRY_AGAIN),
    "state_expired": Explanation("The sign-in request expired",
                                 "The sign-in took too long to complete.", "Select Try again."),
    "state_unknown": Explanation("Sign-in response not recognized",
                                 "This sign-in response is unknown or was already used "
                                 "(for example after the Back button).", "Select Try again."),
    "attribute_too_long": Explanation(
        "Account attribute too long",
        "Your account's User principal name is longer than this sensor accepts.",
        "Ask {contact} or your Entra ID administrator to check the account."),
    "upn_unusable": Explanation(
        "Account attribute not usable",
        "Your account's User principal name holds characters this sensor cannot accept.",
        "Ask {contact} or your Entra ID administrator to check the account."),
    "state_evicted": Explanation("Sign-in dropped",
                                 "Very many sign-ins were started at the same time, and this "
                                 "one was dropped to make room.", "Select Try again."),
    "browser_mismatch": Explanation("Sign-in started elsewhere",
                                    "This sign-in was started in another browser or window.",
                                    "Select Try again in this browser."),
    "sso_off": Explanation("Single sign-on is off for this sensor",
                           "No SSO setting applies to this sensor, so it offers no SSO sign-in.",
                           "Ask {contact} to add this sensor's site, zone or name to an SSO "
                           "setting's scope."),
    "auth_context_missing": Explanation(
        "Additional verification required",
        "This sensor requires a stronger sign-in (a Conditional Access authentication "
        "context) that your sign-in did not satisfy.",
        "Select Try again and complete the verification Entra ID asks for. If Entra ID asks "
        "for nothing more, ask your Entra ID administrator to check the Conditional Access "
        "policy for the sensor's authentication context."),
    "reauthentication_required": Explanation(
        "Sign in again",
        "Your Entra ID sign-in is older than this sensor allows.",
        "Select Try again and enter your credentials again."),
    "state_unwritable": Explanation("Sign-in could not be completed",
                                    "Your account was accepted, but the sensor cannot save "
                                    "new sessions right now: its disk is full or read-only. "
                                    "Users already signed in keep working.",
                                    "Tell the sensor's administrator (the agent's state "
                                    "directory cannot be written), then select Try again."),
    "client_credential_rejected": Explanation(
        "Single sign-on is not set up correctly",
        "Entra ID rejected this sensor's own credentials (its client secret or certificate), "
        "so no one can sign in with SSO until they are fixed.",
        "Tell the sensor's administrator: the agent's log line client_credential_rejected "
        "and /readyz say what to fix."),
    "guest_not_allowed": Explanation(
        "Guest accounts cannot sign in here",
        "You signed in with a guest account (an account of another organization invited "
        "into this one). This sensor accepts only the organization's own accounts.",
        "Sign in with an account of the sensor's organization, or ask {contact} whether "
        "guests should be allowed."),
    "too_many_sign_ins": Explanation("Too many sign-in attempts",
                                     "Too many sign-ins were started from your address.",
                                     "Wait a minute, then select Try again."),
    # Configuration problems met at sign-in (HTTP 500): trying again will not help.
    "client_credential_unreadable": Explanation(
        _MISCONFIGURED,
        "The sensor cannot read its client credential file (entra.client_secret_file or "
        "client_certificate_file), so it cannot sign anyone in with Entra ID. Users already "
        "signed in keep working.",
        "Tell {contact}: the agent's client credential file is missing or unreadable "
        "('sensor-sso-agent check-config' names it)."),
    "client_credential_unusable": Explanation(
        _MISCONFIGURED,
        "The sensor's client credential file cannot be used, so it cannot sign anyone in "
        "with Entra ID. Users already signed in keep working.",
        "Tell {contact}: the agent's client credential needs fixing "
        "('sensor-sso-agent check-config' says what is wrong with it)."),
    "graph_forbidden": Explanation(
        _MISCONFIGURED,
        "Microsoft Graph refused the sensor's request for your account's details: the app "
        "registration's Microsoft Graph permissions have no admin consent.",
        f"{ADMIN} to grant admin consent for the sensor's app registration (API "
        "permissions), then select Try again."),
}

MISCONFIGURED = Explanation(_MISCONFIGURED,
                            "The sensor cannot use {dependency} as it is configured.",
                            "Tell {contact} the reference below.")

UNAVAILABLE = Explanation("Sign-in service unreachable",
                          "The sensor could not complete your sign-in because {dependency} "
                          "is unreachable, too slow or failing.",
                          "Wait a moment and select Try again. If it persists, ask the sensor "
                          "administrator to run 'sensor-sso-agent check-connectivity'.")

WRONG_TENANT = Explanation("Single sign-on is not set up correctly",
                            "Entra ID does not accept the tenant this sensor's sign-in is set "
                            "up for, so no one can sign in with SSO until the sensor's "
                            "configuration is fixed.",
                            "Tell the sensor's administrator: 'sensor-sso-agent "
                            "check-connectivity' names what to fix (entra.tenant_id, "
                            "entra.cloud).")

REJECTED = Explanation("Sign-in response rejected",
                       "The sign-in response could not be trusted ({detail}).",
                       "Select Try again. If it happens again, tell your sensor administrator "
                       "the reference below.")

ROLE_TOO_LOW = Explanation("This page needs a higher role",
                           "You are signed in as {role}, but this page is for {needed} users only.",
                           "Ask {contact} for the {needed} role if your work needs this page, "
                           "or go back to the Overview.")
