"""What a stored prompt or answer keeps: credentials always redacted, the project's optional
rules applied, the size capped."""

from __future__ import annotations

from oneflow_ai.gateway.body_log import MAX_TEXT_CHARS, BodyRedactor
from oneflow_ai.observability.logging import Redactor


def test_redaction_rules_and_the_size_cap() -> None:
    text = (
        "ana@example.com paid with 4111 1111 1111 1111, call +1 (555) 010-9999; "
        "key sk-of-abc123-SECRETSECRET and the master secret"
    )
    credentials_only = BodyRedactor(Redactor(["the master secret"]), ())
    assert credentials_only.text(text) == (
        "ana@example.com paid with 4111 1111 1111 1111, call +1 (555) 010-9999; "
        "key [REDACTED] and [REDACTED]"
    )
    everything = BodyRedactor(Redactor(), ("emails", "card_numbers", "phone_numbers"))
    assert everything.text(text).startswith(
        "[EMAIL] paid with [CARD], call [PHONE]; key [REDACTED]"
    )
    long = BodyRedactor(Redactor(), ()).text("x" * (MAX_TEXT_CHARS + 10))
    assert long.endswith("… [10 more characters]") and len(long) < MAX_TEXT_CHARS + 30
