#!/usr/bin/python3
"""smtplib_device.py - a device that speaks through Python's smtplib (a
client nobody on the team wrote), for interop tests:

  smtplib_device.py --port P [--helo NAME] [--mail-option OPT]...
      [--rcpt-option OPT]... [--from A] [--to B]

Sends one short message with sendmail(..., mail_options, rcpt_options) and
prints one JSON line: {"ok": true} or {"ok": false, "code": N, "reply": ".."}.
Exit 0 when the message was accepted, 1 otherwise.
"""
import argparse
import json
import smtplib
import sys

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--helo", default="dsn-device.lan")
p.add_argument("--from", dest="sender", default="scan@printer.test")
p.add_argument("--to", default="a@example.com")
p.add_argument("--mail-option", action="append", default=[])
p.add_argument("--rcpt-option", action="append", default=[])
a = p.parse_args()

msg = "Subject: from smtplib\r\n\r\nhello\r\n"
try:
    with smtplib.SMTP("127.0.0.1", a.port, local_hostname=a.helo, timeout=20) as s:
        s.sendmail(a.sender, [a.to], msg, a.mail_option, a.rcpt_option)
    print(json.dumps({"ok": True}))
    sys.exit(0)
except smtplib.SMTPRecipientsRefused as e:
    code, reply = list(e.recipients.values())[0]
except smtplib.SMTPResponseException as e:
    code, reply = e.smtp_code, e.smtp_error
print(json.dumps({"ok": False, "code": code,
                  "reply": reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply}))
sys.exit(1)
