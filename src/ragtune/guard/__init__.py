"""Trust: document access groups, injection scanning, PII redaction and the audit log."""

from ragtune.guard.pii import PII_KINDS, PiiMatch, find_pii, has_pii, pii_kinds, redact, redact_value

__all__ = ["PII_KINDS", "PiiMatch", "find_pii", "has_pii", "pii_kinds", "redact", "redact_value"]
