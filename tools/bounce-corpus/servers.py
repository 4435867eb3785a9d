"""Loopback SMTP servers for capturing real MTAs' bounces.

rejector PORT MODE: answers by scenario (local part of RCPT) -- MODE rcpt|banner|mail|data
sink PORT DIR: stores every message it gets into DIR/<n>.eml
"""
import asyncio
import os
import sys

# local part -> (stage, reply). stage: rcpt or data (reply at end of DATA)
SCENARIOS = {
    "u1": ("rcpt", "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in local recipient table"),
    "u2": ("rcpt", "550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n550 5.1.1 double-checking the recipient's email address for typos."),
    "u3": ("rcpt", "550 No such user here"),
    "u4": ("rcpt", "550 5.1.1 Requested action not taken: mailbox unavailable (no such mailbox)"),
    "u5": ("rcpt", "553 sorry, that domain isn't in my list of allowed rcpthosts"),
    "h1": ("rcpt", "550 5.1.2 Host unknown (Name server: nx.invalid: host not found)"),
    "mv": ("rcpt", "551 5.1.6 User has moved; please try <new-address@dest.test>"),
    "na": ("rcpt", "556 5.1.10 Recipient address has null MX"),
    "m1": ("rcpt", "552 5.2.2 <{rcpt}>: Mailbox full, quota exceeded"),
    "m2": ("rcpt", "452 4.2.2 The email account that you tried to reach is over quota"),
    "s1": ("rcpt", "550 5.2.1 The email account that you tried to reach is disabled"),
    "s2": ("rcpt", "550 5.2.1 Mailbox disabled, not accepting messages"),
    "x1": ("data", "552 5.2.3 Message exceeds the recipient's mailbox size limit"),
    "tb": ("data", "552 5.3.4 Message size exceeds fixed maximum message size"),
    "bl": ("rcpt", "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/127.0.0.1"),
    "b2": ("rcpt", "550 5.1.1 Client host [127.0.0.1] blocked using bl.spamcop.net"),
    "b3": ("rcpt", "550 5.7.1 Our system has detected that this message is likely suspicious due to the very low reputation of the sending IP address"),
    "b4": ("rcpt", "554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access denied"),
    "b5": ("rcpt", "550 5.7.606 Access denied, banned sending IP [127.0.0.1]"),
    "sp": ("data", "550 5.7.1 Message rejected as spam by Content Filtering"),
    "s3": ("data", "554 5.7.1 This message has been blocked because it looks like spam (score 12.3)"),
    "vi": ("data", "554 5.7.1 The message contains a virus (Eicar-Test-Signature)"),
    "ce": ("data", "554 5.6.0 Message content rejected: malformed MIME header"),
    "pv": ("data", "550 5.7.9 Message rejected by policy: header From has multiple addresses"),
    "au": ("data", "550 5.7.26 Unauthenticated email from src.test is not accepted due to domain's DMARC policy"),
    "sf": ("rcpt", "550 5.7.23 SPF check failed: src.test does not designate 127.0.0.1 as permitted sender"),
    "tl": ("rcpt", "530 5.7.0 Must issue a STARTTLS command first"),
    "rl": ("rcpt", "554 5.7.1 <{rcpt}>: Relay access denied"),
    "rj": ("rcpt", "553 5.7.1 <sender@src.test>: Sender address rejected: not owned by user"),
    "sx": ("rcpt", "501 5.1.3 Bad recipient address syntax"),
    "se": ("data", "554 5.3.0 Local delivery error: mail system configuration error"),
    "sy": ("data", "552 5.3.1 Mail system full"),
    "tc": ("rcpt", "421 4.7.0 Too many concurrent SMTP connections; please try again later"),
    "ra": ("rcpt", "450 4.7.28 Our system has detected an unusual rate of mail originating from your IP address"),
    "gl": ("rcpt", "450 4.2.0 <{rcpt}>: Recipient address rejected: Greylisted, please try again in 300 seconds"),
    "tf": ("rcpt", "451 4.3.0 Temporary local problem - please try later"),
    "ok": ("rcpt", "250 2.1.5 Ok"),
}


async def handle(reader, writer, mode, outdir, counter):
    def send(line):
        writer.write((line + "\r\n").encode())
    if mode == "banner":
        send("554 5.7.1 mx.banner.test ESMTP not accepting mail from 127.0.0.1: listed at b.barracudacentral.org")
        await writer.drain()
        try:
            await asyncio.wait_for(reader.readline(), 5)
            send("503 5.5.1 go away")
            await writer.drain()
        except Exception:
            pass
        writer.close()
        return
    send("220 mx.dest.test ESMTP test")
    await writer.drain()
    rcpts = []
    data_reply = None
    while True:
        try:
            line = await asyncio.wait_for(reader.readline(), 60)
        except asyncio.TimeoutError:
            break
        if not line:
            break
        cmd = line.decode("latin-1").strip()
        verb = cmd[:4].upper()
        if verb in ("EHLO",):
            send("250-mx.dest.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES")
        elif verb == "HELO":
            send("250 mx.dest.test")
        elif verb == "MAIL":
            rcpts, data_reply = [], None
            if mode == "mail":
                send("550 5.7.1 Sender rejected: your domain src.test is listed in dbl.spamhaus.org")
            else:
                send("250 2.1.0 Ok")
        elif verb == "RCPT":
            addr = cmd.split(":", 1)[1].strip().strip("<>").split(">")[0]
            local = addr.split("@")[0].lower()
            stage, reply = SCENARIOS.get(local.split("+")[0].split("-")[0], ("rcpt", "250 2.1.5 Ok"))
            reply = reply.format(rcpt=addr)
            if stage == "rcpt":
                send(reply)
                if reply.startswith("2"):
                    rcpts.append(addr)
            else:
                send("250 2.1.5 Ok")
                rcpts.append(addr)
                data_reply = reply.format(rcpt=addr)
        elif verb == "DATA":
            if not rcpts:
                send("554 5.5.1 Error: no valid recipients")
                continue
            send("354 End data with <CR><LF>.<CR><LF>")
            await writer.drain()
            chunks = []
            while True:
                l = await reader.readline()
                if not l or l in (b".\r\n", b".\n"):
                    break
                chunks.append(l[1:] if l.startswith(b"..") else l)
            if outdir:
                counter[0] += 1
                with open(os.path.join(outdir, f"{os.getpid()}_{counter[0]:04d}.eml"), "wb") as f:
                    f.write(b"".join(chunks))
            send(data_reply or "250 2.0.0 Ok: queued as TEST")
        elif verb == "RSET":
            rcpts = []
            send("250 2.0.0 Ok")
        elif verb == "QUIT":
            send("221 2.0.0 Bye")
            await writer.drain()
            break
        elif verb == "NOOP":
            send("250 2.0.0 Ok")
        else:
            send("502 5.5.2 Error: command not recognized")
        await writer.drain()
    writer.close()


async def main():
    kind, port = sys.argv[1], int(sys.argv[2])
    arg = sys.argv[3]
    counter = [0]
    if kind == "sink":
        os.makedirs(arg, exist_ok=True)
        mode, outdir = "sink", arg
    else:
        mode, outdir = arg, None
    server = await asyncio.start_server(lambda r, w: handle(r, w, mode, outdir, counter),
                                        "127.0.0.1", port)
    async with server:
        await asyncio.wait_for(server.serve_forever(), 3 * 3600)

if __name__ == "__main__":
    asyncio.run(main())
