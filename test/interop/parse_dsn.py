#!/usr/bin/python3
"""Parses a bounce with Python's `email` package, a MIME parser independent of ours, for the
interoperability suite (test/interop/postfix.test.ts), and prints what it understood as JSON:
the top-level type and report-type, each part's content type, the per-message and
per-recipient fields of the message/delivery-status part, and the returned header block.

Usage: parse_dsn.py < bounce
"""
import email
import email.policy
import json
import sys


def main() -> int:
    msg = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
    out = {
        "content_type": msg.get_content_type(),
        "report_type": msg.get_param("report-type"),
        "defects": [type(d).__name__ for d in msg.defects],
        "parts": [],
        "per_message": {},
        "per_recipient": [],
        "original_headers": "",
    }
    for part in msg.iter_parts():
        out["parts"].append(part.get_content_type())
        if part.get_content_type() == "message/delivery-status":
            # the payload is a list of header blocks: per-message first, then one per recipient
            blocks = part.get_payload()
            out["per_message"] = dict(blocks[0].items())
            out["per_recipient"] = [dict(b.items()) for b in blocks[1:]]
        elif part.get_content_type() in ("text/rfc822-headers", "message/rfc822-headers"):
            out["original_headers"] = part.get_payload(decode=True).decode("utf-8", "replace")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
