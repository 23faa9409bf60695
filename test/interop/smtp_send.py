#!/usr/bin/python3
"""Sends one message with Python's smtplib, an SMTP client independent of ours, for the
interoperability suite (test/interop/clients.test.ts).

Usage: smtp_send.py MODE PORT FROM TO SUBJECT [CAFILE USER PASSWORD]
  MODE mx-plain:       plain SMTP to our MX, no TLS, no AUTH
  MODE mx-starttls:    our MX, STARTTLS verified against CAFILE, no AUTH
  MODE submission:     STARTTLS verified against CAFILE, then AUTH LOGIN (smtplib's login())
Prints one JSON line {"ok": bool, "code": int, "reply": str} and exits 0 when the message was
accepted, 2 on an SMTP refusal (the reply is in the JSON), anything else on a crash.
The message body carries a fixed line so the test can compare the stored bytes.
"""
import json
import smtplib
import ssl
import sys
from email.message import EmailMessage

BODY = "Sent by Python smtplib.\nA second line, with a dot at the start of the next one:\n.leading dot\n"


def main() -> int:
    mode, port, sender, rcpt, subject = sys.argv[1:6]
    cafile, user, password = (sys.argv[6:9] + [None, None, None])[:3]
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = rcpt
    msg["Subject"] = subject
    msg.set_content(BODY)
    try:
        with smtplib.SMTP("127.0.0.1", int(port), local_hostname="python.client.test", timeout=20) as smtp:
            smtp.ehlo()
            if mode in ("mx-starttls", "submission"):
                ctx = ssl.create_default_context(cafile=cafile)
                smtp.starttls(context=ctx)
                smtp.ehlo()
            if mode == "submission":
                smtp.login(user, password)
            smtp.send_message(msg)
            code, reply = smtp.noop()
    except smtplib.SMTPResponseException as err:
        print(json.dumps({"ok": False, "code": err.smtp_code, "reply": err.smtp_error.decode("utf-8", "replace")}))
        return 2
    except smtplib.SMTPRecipientsRefused as err:
        code, reply = next(iter(err.recipients.values()))
        print(json.dumps({"ok": False, "code": code, "reply": reply.decode("utf-8", "replace")}))
        return 2
    print(json.dumps({"ok": True, "code": code, "reply": reply.decode("utf-8", "replace")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
