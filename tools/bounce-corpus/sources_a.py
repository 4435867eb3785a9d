"""Appliances, groupware and smaller MTAs (written from their documented layouts)."""
from __future__ import annotations

H, S = "hard", "soft"
# RFC 3463 code for a reason when a report states none (class added by the caller).
DETAIL = {"userunknown": "1.1", "hostunknown": "1.2", "mailboxfull": "2.2", "suspend": "2.1",
          "blocked": "7.1", "spamdetected": "7.1", "virusdetected": "7.1",
          "policyviolation": "7.1", "securityerror": "7.1", "mesgtoobig": "3.4",
          "networkerror": "4.1", "expired": "4.7", "systemerror": "3.0", "norelaying": "7.1",
          "rejected": "7.1", "hasmoved": "1.6", "contenterror": "6.0", "ratelimited": "7.0",
          "toomanyconn": "4.5", "exceedlimit": "2.3", "notaccept": "1.10",
          "systemfull": "3.1"}


def inf(reason: str, klass: str = "5") -> str:
    return f"{klass}.{DETAIL[reason]}"


def write_a(add, plain, mixed, original, date) -> None:  # noqa: ANN001, C901
    # -- Lotus / HCL Domino --------------------------------------------------------------
    for addr, because, reason, kind in (
        ("ruth.ng@corp-domino.example", "User ruth.ng (ruth.ng@corp-domino.example) not "
         "listed in Domino Directory", "userunknown", H),
        ("p.olsen@corp-domino.example", "Unable to deliver message: recipient's mailbox is "
         "full", "mailboxfull", S),
        ("k.ito@corp-domino.example", "Error transferring to mx1.corp-domino.example; SMTP "
         "Protocol Returned a Permanent Error 554 5.7.1 Service unavailable; Client host "
         "[198.51.100.7] blocked using b.barracudacentral.org", "blocked", S),
    ):
        body = (f"Your message\n\n  Subject: Your booking at Hotel Aurora\n\nwas not delivered "
                f"to:\n\n  {addr}\n\nbecause:\n\n  {because}\n")
        status = "5.7.1" if "5.7.1" in because else inf(reason)
        add("domino", "Lotus/HCL Domino router NDR (admin guide: 'was not delivered to' / "
            "'because:')", mixed("Postmaster <postmaster@corp-domino.example>",
                                 f"DELIVERY FAILURE: {because[:60]}", body,
                                 orig=original(addr), ctype="multipart/mixed"),
            [(addr, status, kind, reason)])
    # -- Courier MTA ------------------------------------------------------------------------
    for addr, transcript, status, reason, kind, with_dsn in (
        ("lee@courier-dest.example", "<<< 550 5.1.1 <lee@courier-dest.example>... User "
         "unknown", "5.1.1", "userunknown", H, False),
        ("mai@courier-dest.example", "<<< 552 5.2.2 mailbox quota exceeded for this "
         "recipient", "5.2.2", "mailboxfull", S, True),
        ("ned@courier-dest.example", "<<< 554 5.7.1 Rejected: 198.51.100.7 listed at "
         "zen.spamhaus.org", "5.7.1", "blocked", S, True),
    ):
        human = ("This is a delivery status notification from mx.courier.example,\n"
                 "running the Courier mail server, version 1.0.16.\n\n"
                 "The original message was received on Mon, 07 Dec 2026 10:00:00 +0000\n"
                 "from localhost [127.0.0.1]\n\n"
                 "-----------------------------------------------------------------------\n\n"
                 "                           UNDELIVERABLE MAIL\n\n"
                 "Your message to the following recipients cannot be delivered:\n\n"
                 f"<{addr}>:\n    mx.courier-dest.example [192.0.2.40]:\n"
                 f">>> RCPT TO:<{addr}>\n{transcript}\n\n"
                 "-----------------------------------------------------------------------\n")
        report = None
        if with_dsn:
            report = ("Reporting-MTA: dns; mx.courier.example\nArrival-Date: " + date()
                      + f"\n\nFinal-Recipient: rfc822; {addr}\nAction: failed\n"
                      f"Status: {status}\nRemote-MTA: dns; mx.courier-dest.example\n")
        add("courier", "Courier MTA courierdsn text (courier/module.dsn), "
            + ("with" if with_dsn else "without") + " its delivery-status part",
            mixed("Courier mail server at mx.courier.example <@>", "NOTICE: mail delivery "
                  "status.", human, orig=original(addr), report=report,
                  ctype="multipart/report; report-type=delivery-status" if with_dsn
                  else "multipart/mixed"),
            [(addr, status, kind, reason)])
    # -- Oracle/Sun Communications Messaging Server ---------------------------------------
    for addr, why, diag, status, reason, kind in (
        ("ola@sun-dest.example", "Remote SMTP server has rejected address",
         "smtp;550 5.1.1 unknown or illegal alias: ola@sun-dest.example", "5.1.1",
         "userunknown", H),
        ("pat@sun-dest.example", "Over quota", "", "5.2.2", "mailboxfull", S),
        ("quinn@sun-dest.example", "Remote SMTP server has rejected address",
         "smtp;554 5.7.1 Message refused: spam content detected", "5.7.1",
         "spamdetected", S),
    ):
        human = ("This report relates to a message you sent with the following header "
                 "fields:\n\n  Message-id: <bk7@app.example.com>\n  Date: " + date()
                 + f"\n  From: Hotel Aurora <booking@example.com>\n  To: {addr}\n"
                 "  Subject: Your booking at Hotel Aurora\n\n"
                 "Your message cannot be delivered to the following recipients:\n\n"
                 f"  Recipient address: {addr}\n  Original address: {addr}\n"
                 f"  Reason: {why}\n"
                 + (f"  Diagnostic code: {diag}\n  Remote system: dns;mx.sun-dest.example "
                    "(TCP|192.0.2.7|41522|192.0.2.50|25)\n" if diag else ""))
        add("sunms", "Oracle (Sun Java System) Messaging Server NDR text, no DSN part",
            mixed("Internet Mail Delivery <postmaster@sun-dest.example>",
                  "Delivery Notification: Delivery has failed", human, orig=original(addr),
                  ctype="multipart/mixed"),
            [(addr, status, kind, reason)])
    # -- Novell/Micro Focus GroupWise ----------------------------------------------------
    for addr, why, reason, kind in (
        ("rhea@gw-dest.example", "User not found", "userunknown", H),
        ("sami@gw-dest.example", "Mailbox full", "mailboxfull", S),
    ):
        body = ("The message that you sent was undeliverable to the following:\n"
                f"\t{addr} ({why})\n\nPossibly truncated original message follows:\n\n"
                + original(addr))
        add("groupwise", "GroupWise GWIA undeliverable notice (plain text)",
            plain("Mail Delivery System <postmaster@gw-dest.example>",
                  "Message status - undeliverable", body),
            [(addr, inf(reason), kind, reason)])
    # -- MDaemon ---------------------------------------------------------------------------
    for addr, reply, status, reason, kind in (
        ("tia@md-dest.example", "550 5.1.1 <tia@md-dest.example>... User unknown", "5.1.1",
         "userunknown", H),
        ("uli@md-dest.example", "554 5.7.1 Your IP address 198.51.100.7 has been blocked by "
         "SORBS", "5.7.1", "blocked", S),
    ):
        body = ("The attached message had PERMANENT fatal delivery errors!\n\n"
                "After one or more unsuccessful delivery attempts the attached message has\n"
                "been removed from the mail queue on this server.  The number and frequency\n"
                "of delivery attempts are determined by local configuration parameters.\n\n"
                "YOUR MESSAGE WAS NOT DELIVERED TO ANY OF ITS RECIPIENTS!\n\n"
                "--- Session Transcript ---\n"
                " Mon 2026-12-07 10:00:00.000: Parsing message <md1.msg>\n"
                f" Mon 2026-12-07 10:00:00.100: *  Message-ID: <bk@app.example.com>\n"
                f" Mon 2026-12-07 10:00:00.200: *  Route slip host: mx.md-dest.example\n"
                f" Mon 2026-12-07 10:00:00.300: *  Route slip recipient(s): {addr}\n"
                " Mon 2026-12-07 10:00:00.400: Attempting SMTP connection to mx.md-dest.example\n"
                " Mon 2026-12-07 10:00:00.500: --> MAIL From:<booking@example.com>\n"
                " Mon 2026-12-07 10:00:00.600: <-- 250 2.1.0 Ok\n"
                f" Mon 2026-12-07 10:00:00.700: --> RCPT To:<{addr}>\n"
                f" Mon 2026-12-07 10:00:00.800: <-- {reply}\n"
                "--- End Transcript ---\n")
        add("mdaemon", "MDaemon 'PERMANENT fatal delivery errors' notice with transcript",
            mixed("MDaemon@md.example", "Warning: Could not deliver message", body,
                  orig=original(addr), ctype="multipart/mixed"),
            [(addr, status, kind, reason)])
    # -- hMailServer -----------------------------------------------------------------------
    for addr, reply, status, reason, kind in (
        ("vic@hm-dest.example", "550 5.1.1 <vic@hm-dest.example>: Recipient address "
         "rejected: User unknown in virtual mailbox table", "5.1.1", "userunknown", H),
        ("wil@hm-dest.example", "552 5.2.2 Mailbox size limit exceeded", "5.2.2",
         "mailboxfull", S),
        ("xan@hm-dest.example", "550 5.7.1 Email rejected per DMARC policy for example.com",
         "5.7.1", "securityerror", S),
    ):
        body = ("Your message did not reach some or all of the intended recipients.\n\n"
                "   Sent: " + date() + "\n   Subject: Your booking at Hotel Aurora\n\n"
                "The following recipient(s) could not be reached:\n\n"
                f"{addr}\n   Error Type: SMTP\n   Remote server (192.0.2.60) issued an error.\n"
                f"   hMailServer sent: RCPT TO:<{addr}>\n   Remote server replied: {reply}\n\n")
        add("hmailserver", "hMailServer 5 undeliverable notice (free text)",
            plain("mailer-daemon@hm.example", "Message undeliverable: Your booking at Hotel "
                  "Aurora", body),
            [(addr, status, kind, reason)])
    # -- Barracuda Email Security Gateway ---------------------------------------------------
    for addr, reason_text, reason in (
        ("yves@barra-dest.example", "Message content rejected as spam (score 9.8)",
         "spamdetected"),
        ("zara@barra-dest.example", "Blocked by Barracuda Reputation System: 198.51.100.7",
         "blocked"),
    ):
        body = (f"Your message to: {addr}\nwas blocked by our Spam Firewall. The email you sent"
                " with the following subject has NOT BEEN DELIVERED:\n\n"
                "Subject: Your booking at Hotel Aurora\n\n"
                f"Reason: {reason_text}\n")
        add("barracuda", "Barracuda Spam Firewall 'NOT BEEN DELIVERED' notice",
            plain("Barracuda Spam Firewall <mailer-daemon@barra-dest.example>",
                  "Message you sent blocked by our bulk email filter", body),
            [(addr, inf(reason), S, reason)])
    # -- Cisco IronPort ESA -----------------------------------------------------------------
    for addr, why, status, reason, kind in (
        ("abel@iron-dest.example", "5.1.0 - Unknown address error 550-'5.1.1 "
         "<abel@iron-dest.example>: Recipient address rejected: User unknown in relay "
         "recipient table'", "5.1.0", "userunknown", H),
        ("bree@iron-dest.example", "5.4.7 - Delivery expired (message too old) 'was "
         "unable to deliver within 72 hours'", "5.4.7", "expired", S),
        ("cruz@iron-dest.example", "5.3.0 - Other mail system problem 552-'5.7.0 This "
         "message was blocked because its content presents a potential security issue'",
         "5.3.0", "securityerror", S),
    ):
        body = (f"The following message to <{addr}> was undeliverable.\n"
                f"The reason for the problem:\n{why}\n")
        add("ironport", "Cisco IronPort ESA bounce text ('The reason for the problem:')",
            mixed("Mail Delivery System <MAILER-DAEMON@iron.example>",
                  "Delivery Status Notification (Failure)", body, orig=original(addr),
                  ctype="multipart/mixed"),
            [(addr, status, kind, reason)])
    # -- Mimecast ------------------------------------------------------------------------------
    for addr, reply, status, reason, kind in (
        ("dina@mc-dest.example", "550 Rejected by header based Anti-Spoofing policy",
         inf("securityerror"), "securityerror", S),
        ("eli@mc-dest.example", "550 Invalid Recipient - https://community.mimecast.com/docs"
         "/DOC-1369#550", inf("userunknown"), "userunknown", H),
        ("fay@mc-dest.example", "554 Email rejected due to security policies - "
         "https://community.mimecast.com/docs/DOC-1369#554", inf("policyviolation"),
         "policyviolation", S),
    ):
        body = (f"Your message to {addr} could not be delivered.\n\n"
                f"The recipient's email system rejected it with this response:\n\n  {reply}\n\n"
                "Original headers follow.\n")
        add("mimecast", "Mimecast rejection relayed as a plain-text bounce",
            mixed("Mail Delivery Subsystem <postmaster@mc-relay.example>",
                  "Undeliverable: Your booking at Hotel Aurora", body, orig=original(addr),
                  headers_only=True, ctype="multipart/mixed"),
            [(addr, status, kind, reason)])
    # -- Proofpoint (as relayed by a Postfix edge) ---------------------------------------
    for addr, said, status, reason, kind in (
        ("gus@pp-dest.example", "554 Blocked - see https://ipcheck.proofpoint.com/"
         "?ip=198.51.100.7", "5.0.0", "blocked", S),
        ("hana@pp-dest.example", "550 5.1.1 User Unknown", "5.1.1", "userunknown", H),
        ("ivo@pp-dest.example", "554 5.7.1 Message rejected: spam. Proofpoint Protection "
         "Server", "5.7.1", "spamdetected", S),
    ):
        human = ("This is the mail system at host edge.example.com.\n\nI'm sorry to have to "
                 "inform you that your message could not\nbe delivered to one or more "
                 "recipients. It's attached below.\n\n                   The mail system\n\n"
                 f"<{addr}>: host mx0a.pphosted.example[192.0.2.77] said: {said} (in reply "
                 "to RCPT TO command)\n")
        report = (f"Reporting-MTA: dns; edge.example.com\n\nFinal-Recipient: rfc822; {addr}\n"
                  f"Action: failed\nStatus: {status}\nRemote-MTA: dns; mx0a.pphosted.example\n"
                  f"Diagnostic-Code: smtp; {said}\n")
        add("proofpoint", "Proofpoint refusal as relayed by a Postfix edge MTA (DSN)",
            mixed("MAILER-DAEMON@edge.example.com (Mail Delivery System)",
                  "Undelivered Mail Returned to Sender", human, orig=original(addr),
                  report=report),
            [(addr, status, kind, reason)])
    # -- Sophos Email Appliance / Sophos Central ---------------------------------------------
    for addr, why, reason in (
        ("jo@sophos-dest.example", "The message contained a virus (Troj/Agent-XYZ) and was "
         "quarantined", "virusdetected"),
        ("kim@sophos-dest.example", "The message was identified as spam and rejected",
         "spamdetected"),
    ):
        body = ("This message was created automatically by the Sophos Email Appliance.\n\n"
                f"Your message to {addr} was not delivered.\n\nReason: {why}\n")
        add("sophos", "Sophos Email Appliance notification (plain text)",
            plain("Sophos Email Appliance <postmaster@sophos-dest.example>",
                  "Message not delivered: Your booking at Hotel Aurora", body),
            [(addr, inf(reason), S, reason)])
    # -- Trend Micro Hosted Email Security ----------------------------------------------------
    for addr, reply, status, reason, kind in (
        ("lou@tm-dest.example", "550 5.7.1 Message rejected by ERS - Trend Micro Email "
         "Reputation Services (see https://ers.trendmicro.com)", "5.7.1", "blocked", S),
        ("max@tm-dest.example", "550 5.1.1 Recipient address does not exist", "5.1.1",
         "userunknown", H),
    ):
        body = ("Undeliverable message.\n\nThe message could not be delivered to the "
                f"following recipient:\n\n  {addr}\n\nReason: {reply}\n\n"
                "This message was generated by Trend Micro Hosted Email Security.\n")
        add("trendmicro", "Trend Micro Hosted Email Security undeliverable notice",
            plain("Trend Micro Hosted Email Security <postmaster@tm-dest.example>",
                  "Undeliverable: Your booking at Hotel Aurora", body),
            [(addr, status, kind, reason)])
    # -- McAfee (MX Logic) SaaS Email Protection ----------------------------------------------
    for addr, reply, status, reason, kind in (
        ("nia@mx-logic-dest.example", "550 Denied by policy (Mode: normal)",
         inf("policyviolation"), "policyviolation", S),
        ("oto@mx-logic-dest.example", "550 5.1.1 Recipient unknown <oto@mx-logic-dest."
         "example>", "5.1.1", "userunknown", H),
    ):
        body = (f"Delivery to the following recipient failed permanently:\n\n     {addr}\n\n"
                f"Technical details of permanent failure:\nThe recipient server returned: "
                f"{reply}\n\nMcAfee SaaS Email Protection\n")
        add("mcafee", "McAfee SaaS Email Protection (MX Logic) bounce, free text",
            plain("McAfee Email Protection <mailer-daemon@mxlogic.example>",
                  "Delivery failure notification", body),
            [(addr, status, kind, reason)])
    # -- vpopmail / netqmail local deliveries (QSBMF) ------------------------------------
    for addr, para, status, reason, kind in (
        ("pam@vpop-dest.example", "Sorry, no mailbox here by that name. vpopmail (#5.1.1)",
         "5.1.1", "userunknown", H),
        ("rob@vpop-dest.example", "user is over quota", inf("mailboxfull"), "mailboxfull",
         S),
    ):
        body = ("Hi. This is the qmail-send program at mail.vpop-dest.example.\n"
                "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
                "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
                f"<{addr}>:\n{para}\n\n--- Below this line is a copy of the message.\n\n"
                + original(addr))
        add("vpopmail", "vpopmail on netqmail: QSBMF with vpopmail's sentences",
            plain("MAILER-DAEMON@mail.vpop-dest.example", "failure notice", body),
            [(addr, status, kind, reason)])
    # -- Kerio Connect --------------------------------------------------------------------
    for addr, why, status, reason, kind in (
        ("sol@kerio-dest.example", "550 5.1.1 <sol@kerio-dest.example>: Recipient address "
         "rejected: User unknown", "5.1.1", "userunknown", H),
        ("tam@kerio-dest.example", "554 5.7.1 Service unavailable; Client host [198.51.100.7]"
         " blocked using zen.spamhaus.org", "5.7.1", "blocked", S),
    ):
        body = (f"Your message did not reach some or all of the intended recipients.\n\n"
                f"   Subject: Your booking at Hotel Aurora\n   Sent: {date()}\n\n"
                f"The following recipient(s) could not be reached:\n\n{addr}\n"
                f"   Error Type: SMTP\n   Remote server replied: {why}\n\n"
                "Kerio Connect 10.0.2\n")
        add("kerio", "Kerio Connect undeliverable notice",
            plain("Mail Delivery Subsystem <MAILER-DAEMON@kerio.example>",
                  "Undeliverable: Your booking at Hotel Aurora", body),
            [(addr, status, kind, reason)])
    # -- Zimbra (Postfix inside, with its own wording around it) ------------------------------
    for addr, said, status, reason, kind in (
        ("uma@zimbra-dest.example", "550 5.1.1 <uma@zimbra-dest.example>: Recipient address "
         "rejected: zimbra-dest.example", "5.1.1", "userunknown", H),
        ("val@zimbra-dest.example", "552 5.2.2 <val@zimbra-dest.example>: Mailbox full",
         "5.2.2", "mailboxfull", S),
    ):
        body = ("This is the mail system at host mta.zimbra.example.\n\nI'm sorry to have to "
                "inform you that your message could not\nbe delivered to one or more "
                "recipients. It's attached below.\n\nFor further assistance, please send mail "
                "to postmaster.\n\n                   The mail system\n\n"
                f"<{addr}>: host mx.zimbra-dest.example[192.0.2.81] said:\n    {said} (in "
                "reply to RCPT TO command)\n")
        add("zimbra", "Zimbra's Postfix bounce with the DSN part stripped by a forwarder",
            mixed("MAILER-DAEMON@mta.zimbra.example (Mail Delivery System)",
                  "Undelivered Mail Returned to Sender", body, orig=original(addr),
                  ctype="multipart/mixed"),
            [(addr, status, kind, reason)])
