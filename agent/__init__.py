"""sensor-sso-agent: Microsoft Entra ID single sign-on for an OT network sensor's console."""

__version__ = "0.1.0"
