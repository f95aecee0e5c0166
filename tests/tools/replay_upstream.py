#!/usr/bin/python3
"""replay_upstream.py - an SMTP upstream that plays recorded provider dialogues.

A stand-in for Microsoft 365, Gmail, Amazon SES, SendGrid and Mailgun, which
cannot be reached from the tests: each dialogue is what the provider was
seen to answer in public transcripts (greeting, EHLO capabilities, the
STARTTLS reply) up to the one refusal the dialogue is about, written with
the provider's own words and line breaks. The dialogue names are the ids of
the rows of the provider table (proxy/core/provider.c), plus a few for
other tests. Run with /usr/bin/python3 (asyncio + ssl only):

  replay_upstream.py --dialogue m365-5.7.139-basic-auth-disabled \\
      --certs DIR --record FILE [--port 0] [--lifetime 120]
  replay_upstream.py --list          the dialogue names, one per line

--certs DIR holds tests/tools/gen_certs.sh's files; STARTTLS presents
server.crt (a dialogue may ask for another one, e.g. expired.crt). Prints
"READY <port>" when listening. Each connection is played from the start.

Record (compact JSON lines, appended with O_APPEND):
  {"event":"connect","conn":N}
  {"event":"command","conn":N,"tls":bool,"verb":"EHLO","arg":"..."}
        (for AUTH only the mechanism: credentials are never recorded)
  {"event":"tls","conn":N,"version":"TLSv1.3"}
  {"event":"refused","conn":N,"phase":"auth","reply":"535 5.7.139 ..."}
  {"event":"alert_sent","conn":N,"client_hello_bytes":N}
  {"event":"message","conn":N,"mail_from":..,"rcpt_tos":[..],
   "mail_options":[..],"rcpt_options":[..],"data_len":N,"helo":..}
  {"event":"close","conn":N}
Exits 0 on SIGTERM/SIGINT and after --lifetime seconds.
"""

import argparse
import asyncio
import base64
import itertools
import json
import os
import signal
import ssl
import sys

# ---- provider profiles: what a healthy session with them looks like --------
# Greetings and capabilities as seen in public transcripts (MailKit,
# PHPMailer, nodemailer, mautic and email-oauth2-proxy issue threads).
PROFILES = {
    "m365": {
        "greeting": "220 LO4P302CA0005.outlook.office365.com Microsoft ESMTP MAIL Service "
                    "ready at Thu, 10 Oct 2024 22:49:55 +0000 [08DCE8B62813AB2B]",
        "ehlo": ["LO4P302CA0005.outlook.office365.com Hello [192.0.2.1]", "SIZE 157286400",
                 "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "STARTTLS", "8BITMIME",
                 "BINARYMIME", "CHUNKING", "SMTPUTF8"],
        "ehlo_tls": ["LO4P302CA0005.outlook.office365.com Hello [192.0.2.1]", "SIZE 157286400",
                     "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "AUTH LOGIN XOAUTH2",
                     "8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8"],
        "starttls": "220 2.0.0 SMTP server ready",
        "auth_ok": "235 2.7.0 Authentication successful",
        "mail_ok": "250 2.1.0 Sender OK",
        "rcpt_ok": "250 2.1.5 Recipient OK",
        "data_ok": "354 Start mail input; end with <CRLF>.<CRLF>",
        "dot_ok": "250 2.0.0 OK <MSGID@LO4P302MB0005.GBRP302.PROD.OUTLOOK.COM> "
                  "[Hostname=LO4P302MB0005.GBRP302.PROD.OUTLOOK.COM]",
    },
    "gmail": {
        "greeting": "220 smtp.gmail.com ESMTP g19sm112160pjl.25 - gsmtp",
        "ehlo": ["smtp.gmail.com at your service, [192.0.2.1]", "SIZE 35882577", "8BITMIME",
                 "STARTTLS", "ENHANCEDSTATUSCODES", "PIPELINING", "CHUNKING", "SMTPUTF8"],
        "ehlo_tls": ["smtp.gmail.com at your service, [192.0.2.1]", "SIZE 35882577",
                     "8BITMIME", "AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER XOAUTH",
                     "ENHANCEDSTATUSCODES", "PIPELINING", "CHUNKING", "SMTPUTF8"],
        "starttls": "220 2.0.0 Ready to start TLS",
        "auth_ok": "235 2.7.0 Accepted",
        "mail_ok": "250 2.1.0 OK g19sm112160pjl.25 - gsmtp",
        "rcpt_ok": "250 2.1.5 OK g19sm112160pjl.25 - gsmtp",
        "data_ok": "354  Go ahead g19sm112160pjl.25 - gsmtp",
        "dot_ok": "250 2.0.0 OK  1700000000 g19sm112160pjl.25 - gsmtp",
    },
    "ses": {
        "greeting": "220 email-smtp.amazonaws.com ESMTP SimpleEmailService-d-ABCDEFGH1",
        "ehlo": ["email-smtp.us-west-2.amazonaws.com", "8BITMIME", "STARTTLS",
                 "AUTH PLAIN LOGIN", "Ok"],
        "ehlo_tls": ["email-smtp.us-west-2.amazonaws.com", "8BITMIME", "AUTH PLAIN LOGIN", "Ok"],
        "starttls": "220 Ready to start TLS",
        "auth_ok": "235 Authentication successful.",
        "mail_ok": "250 Ok",
        "rcpt_ok": "250 Ok",
        "data_ok": "354 End data with <CR><LF>.<CR><LF>",
        "dot_ok": "250 Ok 0101018b0000000-0000-0000-0000-000000000000-000000",
    },
    "sendgrid": {
        "greeting": "220 SG ESMTP service ready at ismtpd0001p1lon1.sendgrid.net",
        "ehlo": ["smtp.sendgrid.net", "8BITMIME", "PIPELINING", "SIZE 31457280", "STARTTLS",
                 "AUTH PLAIN LOGIN", "AUTH=PLAIN LOGIN"],
        "ehlo_tls": ["smtp.sendgrid.net", "8BITMIME", "PIPELINING", "SIZE 31457280",
                     "AUTH PLAIN LOGIN", "AUTH=PLAIN LOGIN"],
        "starttls": "220 Begin TLS negotiation now",
        "auth_ok": "235 Authentication successful",
        "mail_ok": "250 Sender address accepted",
        "rcpt_ok": "250 Recipient address accepted",
        "data_ok": "354 Continue",
        "dot_ok": "250 Ok: queued as AbCdEfGhIjKlMnOpQrStUv",
    },
    "mailgun": {
        # Greeting and capabilities are generic: no public transcript of
        # smtp.mailgun.org's exact words was found.
        "greeting": "220 smtp.mailgun.org ESMTP ready",
        "ehlo": ["smtp.mailgun.org", "AUTH PLAIN LOGIN", "8BITMIME", "ENHANCEDSTATUSCODES",
                 "SIZE 52428800", "STARTTLS", "PIPELINING", "SMTPUTF8"],
        "ehlo_tls": ["smtp.mailgun.org", "AUTH PLAIN LOGIN", "8BITMIME", "ENHANCEDSTATUSCODES",
                     "SIZE 52428800", "PIPELINING", "SMTPUTF8"],
        "starttls": "220 2.0.0 Ready to start TLS",
        "auth_ok": "235 2.0.0 OK",
        "mail_ok": "250 Sender address accepted",
        "rcpt_ok": "250 Recipient address accepted",
        "data_ok": "354 Continue",
        "dot_ok": "250 Great success",
    },
}


def d(profile, phase, reply, close=False, **extra):
    """A dialogue: `profile` until `phase`, where `reply` (a list of lines,
    codes included) answers instead; close: the server hangs up after it."""
    return dict(profile=profile, phase=phase, reply=reply, close=close, **extra)


# ---- the recorded refusals ----------------------------------------------------
DIALOGUES = {
    "m365-5.7.139-basic-auth-disabled": d("m365", "auth", [
        "535 5.7.139 Authentication unsuccessful, basic authentication is disabled. "
        "[PN0PR01CA0024.INDPRD01.PROD.OUTLOOK.COM 2025-01-26T18:54:30.055Z 08DD3DD7D75D7743]"]),
    "m365-5.7.139-smtp-auth-disabled": d("m365", "auth", [
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
        "Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. "
        "[TY1PR01CA0183.jpnprd01.prod.outlook.com]"]),
    "m365-5.7.139-security-defaults": d("m365", "auth", [
        "535 5.7.139 Authentication unsuccessful, user is locked by your organization's "
        "security defaults policy. Contact your administrator. "
        "[BN9PR03CA0123.namprd03.prod.outlook.com]"]),
    "m365-5.7.139-bad-credentials": d("m365", "auth", [
        "535 5.7.139 Authentication unsuccessful, the user credentials were incorrect. "
        "[PH0PR07CA0004.namprd07.prod.outlook.com]"]),
    "m365-5.7.139-policy": d("m365", "auth", [
        "535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be "
        "authenticated successfully. Contact your administrator. "
        "[MN2PR07CA0004.namprd07.prod.outlook.com 2024-08-13T18:27:55.030Z 08DCBB430284475F]"]),
    "m365-5.7.30-basic-auth-retired": d("m365", "auth", [
        "550 5.7.30 Basic authentication is not supported for Client Submission."]),
    "m365-5.7.57-not-authenticated": d("m365", "mail", [
        "530 5.7.57 Client not authenticated to send mail. "
        "[US22278CA0034.US7P278.PROD.OUTLOOK.COM 2024-10-24T07:08:15.123Z 08DCF3B2C1D0E0F0]"],
        proxy_auth="none"),
    "m365-5.2.252-send-as-denied": d("m365", "dot", [
        "554 5.2.252 SendAsDenied; u@example.com not allowed to send as scan@printer.test; "
        "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed "
        "to process message due to a permanent exception with message "
        "[BeginDiagnosticData]Cannot submit message. 0.35250:1F009983, 1.36674:0A000000, "
        "1.61250:00000000, 1.45378:02000000 [Hostname=LO4P302MB0005.GBRP302.PROD.OUTLOOK.COM]"]),
    "m365-5.7.60-no-send-as": d("m365", "dot", [
        "550 5.7.60 SMTP; Client does not have permissions to send as this sender "
        "[MW2PR1901MB2155.namprd19.prod.outlook.com]"]),
    "m365-5.6.11-bare-lf": d("m365", "dot", [
        "550 5.6.11 SMTPSEND.BareLinefeedsAreIllegal; message contains bare linefeeds, which "
        "cannot be sent via DATA"]),
    "m365-4.7.66-tls-too-old": d("m365", "ehlo2", [
        "421 4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to "
        "support TLS 1.2. Visit https://aka.ms/smtp_auth_tls. "
        "[SA9P221CA0019.NAMP221.PROD.OUTLOOK.COM]"], close=True),
    "m365-4.3.2-thread-limit": d("m365", "dot", [
        "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded "
        "[Hostname=DM5SPR00MB2471.namprd08.prod.outlook.com]"]),
    "m365-4.7.500-server-busy": d("m365", "greeting", [
        "451 4.7.500 Server busy. Please try again later from [127.0.0.1]. (S77719) "
        "[BN8NAM12FT012.eop-nam12.prod.protection.outlook.com]"], close=True),
    "gmail-5.7.9-app-password": d("gmail", "auth", [
        "534-5.7.9 Application-specific password required. For more information, go to",
        "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor "
        "ffacd0b85a97d-368119970e7sm1809147f8f.21 - gsmtp"]),
    "gmail-5.7.8-bad-credentials": d("gmail", "auth", [
        "535-5.7.8 Username and Password not accepted. Learn more at",
        "535 5.7.8  https://support.google.com/mail/?p=BadCredentials y10sm11524926ejh.105 "
        "- gsmtp"]),
    "gmail-xoauth2-400": d("gmail", "xoauth2", [
        "334 eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xl"
        "LmNvbS8ifQ=="], proxy_auth="xoauth2", final=[
        "535-5.7.8 Username and Password not accepted. Learn more at",
        "535 5.7.8  https://support.google.com/mail/?p=BadCredentials "
        "k6-20020a17090a404600b00277371fd346sm2482723p - gsmtp"]),
    "gmail-xoauth2-401": d("gmail", "xoauth2", [
        "334 eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIG1hYyIsInNjb3BlIjoiaHR0cHM6Ly9tYWls"
        "Lmdvb2dsZS5jb20vIn0K"], proxy_auth="xoauth2", final=[
        "535-5.7.8 Username and Password not accepted. Learn more at",
        "535 5.7.8  https://support.google.com/mail/?p=BadCredentials "
        "c7sm19648018pfp.164 - gsmtp"]),
    "gmail-5.7.0-starttls-first": d("gmail", "mail", [
        "530 5.7.0 Must issue a STARTTLS command first. pe5sm5768337wjb.15 - gsmtp"],
        proxy_auth="none", proxy_tls="none"),
    "gmail-5.4.5-daily-limit": d("gmail", "dot", [
        "550-5.4.5 Daily user sending limit exceeded. For more information on Gmail",
        "550-5.4.5 sending limits go to",
        "550 5.4.5  https://support.google.com/a/answer/166852 "
        "d2e1a72fcca58-76e7d551493sm9728466b3a.112 - gsmtp"]),
    "gmail-4.7.0-try-later": d("gmail", "mail", [
        "421 4.7.0 Try again later, closing connection. (MAIL) g19sm112160pjl.25 - gsmtp"],
        close=True),
    # Every EHLO name is refused, the address literal too.
    "gmail-5.5.4-helo-refused": d("gmail", "ehlo", [
        "501-5.5.4 HELO/EHLO argument \"{arg}\" invalid, closing connection.",
        "501 5.5.4  https://support.google.com/mail/?p=helo g19sm112160pjl.25 - gsmtp"],
        close=True),
    # Not a table row: Gmail refuses a name it dislikes but takes an address
    # literal ([192.0.2.1]), which the proxy tries once on a new connection.
    "gmail-helo-literal-ok": d("gmail", "ehlo", [
        "501-5.5.4 HELO/EHLO argument \"{arg}\" invalid, closing connection.",
        "501 5.5.4  https://support.google.com/mail/?p=helo g19sm112160pjl.25 - gsmtp"],
        close=True, unless_literal=True),
    "ses-identity-not-verified": d("ses", "dot", [
        "554 Message rejected: Email address is not verified. The following identities failed "
        "the check in region US-WEST-2: scan@printer.test"]),
    "ses-throttling": d("ses", "dot", ["454 Throttling failure: Maximum sending rate exceeded."]),
    "sendgrid-sender-identity": d("sendgrid", "dot", [
        "550 The from address does not match a verified Sender Identity. Mail cannot be sent "
        "until this error is resolved. Visit https://sendgrid.com/docs/for-developers/"
        "sending-email/sender-identity/ to see the Sender Identity requirements"]),
    "sendgrid-credits-exceeded": d("sendgrid", "auth", [
        "451 Authentication failed: Maximum credits exceeded"]),
    "mailgun-domain-not-verified": d("mailgun", "mail", [
        "421 Domain printer.test is not allowed to send: Domain not verified"], close=True),
    "mailgun-account-not-activated": d("mailgun", "mail", [
        "421 Domain sandbox0123.mailgun.org is not allowed to send: Please activate your Mailgun "
        "account. Check your inbox or log in to your control panel to resend the activation "
        "email."], close=True),
    # A stand-in for a server whose TLS set-up is broken (Debian 12's
    # OpenSMTPD with a key it cannot use): it answers the ClientHello with
    # a fatal internal_error alert.
    "tls-peer-alert": d("gmail", "tls-alert", []),
    "tls-certificate": d("gmail", "tls-cert", [], cert="expired"),
}

ALERT_INTERNAL_ERROR = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x50])

_conn_ids = itertools.count(1)
ARGS = None


def record(**ev):
    line = (json.dumps(ev, separators=(",", ":")) + "\n").encode()
    fd = os.open(ARGS.record, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class Session:
    def __init__(self, reader, writer, dlg):
        self.r, self.w = reader, writer
        self.dlg = dlg
        self.p = PROFILES[dlg["profile"]]
        self.id = next(_conn_ids)
        self.tls = False
        self.helo = None
        self.mail_from = None
        self.mail_options, self.rcpt_tos, self.rcpt_options = [], [], []

    async def send(self, *lines):
        self.w.write("".join(l + "\r\n" for l in lines).encode())
        await self.w.drain()

    async def multi(self, code, items):
        await self.send(*["%s%s%s" % (code, "-" if i < len(items) - 1 else " ", t)
                          for i, t in enumerate(items)])

    async def readline(self):
        line = await asyncio.wait_for(self.r.readline(), ARGS.io_timeout)
        if not line:
            raise EOFError
        return line.decode("utf-8", "replace").rstrip("\r\n")

    def refusing(self, phase):
        return self.dlg["phase"] == phase

    async def refuse(self, phase, arg=""):
        lines = [l.replace("{arg}", arg) for l in self.dlg["reply"]]
        record(event="refused", conn=self.id, phase=phase, reply="\n".join(lines))
        await self.send(*lines)
        if self.dlg["close"]:
            raise EOFError

    def command(self, verb, arg):
        record(event="command", conn=self.id, tls=self.tls, verb=verb,
               arg=arg.split(" ")[0] if verb == "AUTH" else arg)

    async def starttls(self):
        await self.send(self.p["starttls"])
        if self.refusing("tls-alert"):
            # Read the ClientHello record, then abort as a broken server does.
            head = await asyncio.wait_for(self.r.readexactly(5), ARGS.io_timeout)
            body = await asyncio.wait_for(self.r.readexactly(int.from_bytes(head[3:5], "big")),
                                          ARGS.io_timeout)
            record(event="alert_sent", conn=self.id, client_hello_bytes=5 + len(body))
            self.w.write(ALERT_INTERNAL_ERROR)
            await self.w.drain()
            raise EOFError
        try:
            await self.w.start_tls(server_ctx(self.dlg))
        except (ssl.SSLError, OSError) as e:
            record(event="tls_failed", conn=self.id, error=str(e))
            raise EOFError
        self.tls = True
        record(event="tls", conn=self.id,
               version=self.w.get_extra_info("ssl_object").version())

    async def auth(self, arg):
        mech = arg.split(" ")[0].upper()
        if self.refusing("xoauth2") and mech == "XOAUTH2":
            await self.refuse("auth")   # the 334 challenge
            await self.readline()       # the client's empty answer
            await self.send(*self.dlg["final"])
            return False
        if mech == "LOGIN":
            if " " not in arg:
                await self.send("334 VXNlcm5hbWU6")
                await self.readline()
            await self.send("334 UGFzc3dvcmQ6")
            await self.readline()
        elif mech == "PLAIN" and " " not in arg:
            await self.send("334 ")
            await self.readline()
        if self.refusing("auth"):
            await self.refuse("auth")
            return False
        await self.send(self.p["auth_ok"])
        return True

    async def data(self):
        if self.refusing("data"):
            await self.refuse("data")
            return
        await self.send(self.p["data_ok"])
        size = 0
        while True:
            line = await asyncio.wait_for(self.r.readline(), ARGS.io_timeout)
            if not line:
                raise EOFError
            if line == b".\r\n":
                break
            size += len(line)
        if self.refusing("dot"):
            await self.refuse("dot")
        else:
            record(event="message", conn=self.id, mail_from=self.mail_from,
                   rcpt_tos=self.rcpt_tos, mail_options=self.mail_options,
                   rcpt_options=self.rcpt_options, data_len=size, helo=self.helo)
            await self.send(self.p["dot_ok"])
        self.mail_from, self.rcpt_tos = None, []

    async def ehlo(self, arg):
        self.helo = arg
        literal = arg.startswith("[") and arg.endswith("]")
        if (self.refusing("ehlo") and not (self.dlg.get("unless_literal") and literal)) or \
                (self.refusing("ehlo2") and self.tls):
            await self.refuse("ehlo" if not self.tls else "ehlo2", arg)
            return
        await self.multi("250", self.p["ehlo_tls" if self.tls else "ehlo"])

    async def run(self):
        record(event="connect", conn=self.id)
        if self.refusing("greeting"):
            await self.refuse("greeting")
            return
        await self.send(self.p["greeting"])
        while True:
            line = await self.readline()
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            self.command(verb, arg)
            if verb in ("EHLO", "HELO"):
                await self.ehlo(arg)
            elif verb == "STARTTLS":
                await self.starttls()
            elif verb == "AUTH":
                await self.auth(arg)
            elif verb == "MAIL":
                if self.refusing("mail"):
                    await self.refuse("mail")
                    continue
                addr, _, opts = arg.partition(" ")
                self.mail_from, self.mail_options = addr, opts.split()
                await self.send(self.p["mail_ok"])
            elif verb == "RCPT":
                if self.refusing("rcpt"):
                    await self.refuse("rcpt")
                    continue
                addr, _, opts = arg.partition(" ")
                self.rcpt_tos.append(addr)
                self.rcpt_options.extend(opts.split())
                await self.send(self.p["rcpt_ok"])
            elif verb == "DATA":
                await self.data()
            elif verb == "RSET":
                self.mail_from, self.rcpt_tos = None, []
                await self.send("250 2.0.0 OK")
            elif verb == "QUIT":
                await self.send("221 2.0.0 closing connection")
                return
            else:
                await self.send("502 5.5.1 Unrecognized command.")


def server_ctx(dlg):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    name = dlg.get("cert", "server")
    ctx.load_cert_chain(os.path.join(ARGS.certs, name + ".crt"),
                        os.path.join(ARGS.certs, name + ".key"))
    return ctx


async def handle(reader, writer):
    s = Session(reader, writer, DIALOGUES[ARGS.dialogue])
    try:
        await s.run()
    except (EOFError, asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError,
            ssl.SSLError, OSError):
        pass
    finally:
        record(event="close", conn=s.id)
        try:
            writer.close()
        except Exception:
            pass


async def main():
    server = await asyncio.start_server(handle, ARGS.host, ARGS.port, limit=1 << 16)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write("READY %d\n" % port)
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.call_later(ARGS.lifetime, stop.set)
    await stop.wait()
    server.close()


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--dialogue")
    p.add_argument("--list", action="store_true")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--certs")
    p.add_argument("--record")
    p.add_argument("--lifetime", type=float, default=120.0)
    p.add_argument("--io-timeout", type=float, default=30.0)
    a = p.parse_args()
    if a.list:
        return a
    if a.dialogue not in DIALOGUES:
        p.error("unknown dialogue %r (see --list)" % a.dialogue)
    if not a.certs or not a.record:
        p.error("--certs and --record are needed")
    return a


if __name__ == "__main__":
    ARGS = parse_args()
    if ARGS.list:
        for name, dlg in DIALOGUES.items():
            print("%s %s" % (name, json.dumps({k: v for k, v in dlg.items()
                                               if k.startswith("proxy_")})))
        sys.exit(0)
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
