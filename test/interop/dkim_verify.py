#!/usr/bin/python3
"""Verifies the DKIM-Signature of a message with python3-dkim (dkimpy), a verifier independent of
ours, for the interoperability suite (test/interop/postfix.test.ts).

Usage: dkim_verify.py TXT_NAME TXT_VALUE < message
The only DNS answer dkimpy gets is TXT_VALUE for TXT_NAME (the record our API tells the tenant to
publish); any other name gets nothing, so no real DNS is ever asked.
Prints "pass" and exits 0 when the signature verifies, prints "fail" and exits 1 otherwise.
"""
import sys

import dkim


def main() -> int:
    name, value = sys.argv[1], sys.argv[2]
    wanted = name.lower().rstrip(".")

    def dnsfunc(qname, timeout=5):
        if isinstance(qname, bytes):
            qname = qname.decode("ascii")
        return value.encode("ascii") if qname.lower().rstrip(".") == wanted else b""

    message = sys.stdin.buffer.read()
    ok = dkim.verify(message, dnsfunc=dnsfunc)
    print("pass" if ok else "fail")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
