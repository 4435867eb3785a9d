"""From an enhanced status code and a sentence to a reason of the vocabulary.

KumoMTA counterpart: `bounce-classify`'s rules; the reason names are
Sisimai's (gateway.bounces.verdicts.Reason). Two tables, documented here and
nowhere else; `gateway.bounces.verdicts.verdict()` decides between them:

- `_BY_STATUS`: RFC 3463 (and RFC 5248 registry) subject.detail codes whose
  meaning is one reason (X.1.1 a bad mailbox, X.2.2 a full one, X.7.26 a
  DMARC failure). `_WEAK_STATUS` is the fallback by subject alone
  (X.7.x "some security or policy matter") when no text rule matches.
- `_BY_TEXT`: ordered (pattern, reason, subject.detail) rules for the
  sentences servers actually write, in English and in the languages of the
  big European, Russian and Japanese providers. The first match wins, so the
  rules that name the *sender's or the path's* fault (a blocklist, a spam or
  virus verdict, SPF/DKIM/DMARC, a relay refusal, a rejected sender) come
  before the address rules: "Sender address rejected: Domain not found" is
  about our sender, not the recipient's domain. The subject.detail builds a
  status when the report carries none, with the class the report implies.

Before matching, e-mail addresses are blanked out of the text (so
`<spam@example.com>: user unknown` is not "spam") and so is Postfix's
"host mx.example.com[192.0.2.1] said:" prefix (a host named
spamfilter.example.com says nothing about the failure).

Security: the inputs are untrusted text; the patterns are linear (no nested
quantifiers) and only the first 4 KiB of a sentence is searched.
"""

from __future__ import annotations

import re

__all__ = ["WEAK", "find_status", "infer", "infer_rule", "reason_for_status", "searchable"]

_STATUS = re.compile(r"(?<![\d.])([45])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
_MAX_TEXT = 4096

# subject.detail → reason, for the codes that mean one thing (RFC 3463, RFC 5248's registry,
# RFC 7505 for X.1.10 and X.7.27, RFC 7372 for X.7.20-26).
_BY_STATUS = {
    "1.1": "userunknown", "1.3": "userunknown", "1.2": "hostunknown",
    "1.6": "hasmoved", "1.7": "rejected", "1.8": "rejected",
    "2.1": "suspend", "2.2": "mailboxfull", "2.3": "exceedlimit", "2.4": "systemerror",
    "3.1": "systemfull", "3.4": "mesgtoobig", "3.5": "systemerror",
    "4.2": "networkerror", "4.3": "networkerror",
    "4.4": "hostunknown", "4.5": "toomanyconn", "4.6": "networkerror", "4.7": "expired",
    "5.1": "syntaxerror", "5.2": "syntaxerror", "5.3": "ratelimited", "5.4": "syntaxerror",
    "5.6": "syntaxerror",
    "6.0": "contenterror", "6.1": "contenterror", "6.2": "contenterror",
    "6.3": "contenterror", "6.4": "contenterror", "6.5": "contenterror",
    "6.6": "contenterror", "6.7": "contenterror", "6.8": "contenterror",
    "6.9": "contenterror", "6.10": "contenterror",
    "7.2": "policyviolation", "7.3": "securityerror", "7.4": "securityerror",
    "7.5": "securityerror", "7.6": "securityerror", "7.7": "securityerror",
    "7.8": "securityerror", "7.10": "securityerror",
    "7.11": "securityerror", "7.13": "suspend", "7.14": "securityerror",
    "7.15": "securityerror", "7.16": "securityerror",
    "7.17": "hasmoved", "7.18": "hasmoved", "7.19": "securityerror",
    "7.20": "securityerror", "7.21": "securityerror", "7.22": "securityerror",
    "7.23": "securityerror", "7.24": "securityerror", "7.25": "securityerror",
    "7.26": "securityerror", "7.27": "rejected", "7.28": "ratelimited",
    "7.29": "securityerror", "7.30": "securityerror",
}
# By subject only: what a generic code (X.7.1, X.0.0, X.2.0) narrows it down to.
_WEAK_STATUS = {
    "0": "undefined", "1": "undefined", "2": "undefined", "3": "systemerror",
    "4": "networkerror", "5": "syntaxerror", "6": "contenterror", "7": "policyviolation",
}

# Blocklists and reputation services by name; their appearance is the strongest sign
# that our IP or domain, not the recipient, was refused.
_LISTS = (r"spamhaus|spamcop|sorbs|barracuda ?(?:central|reputation|rbl)|barracudacentral"
          r"|abuseat|uceprotect|surbl|uribl|\bpsbl\b|mailspike|senderscore|invaluement"
          r"|spamrats|backscatterer|\bcbl\b|\bdnsbl\b|\brbl\b|\bsbl\b|\bxbl\b|\bpbl\b"
          r"|\bdbl\b|proofpoint dynamic reputation|cloudmark|trend ?micro (?:rbl|ers)"
          r"|mail-abuse|njabl|\bivmsip\b|sender ?base|talos")

WEAK = "weak"  # a rule whose match does not outrank a specific status code

_RULES: tuple[tuple[str, ...], ...] = (
    # -- the sender's or the path's fault -----------------------------------------------------
    (r"virus|malware|infected|trojan|eicar|malicious (?:content|attachment|payload)"
     r"|\bworm\b|ウイルス|вирус", "virusdetected", "7.1"),
    # a blocklist or reputation service named: the strongest sign that our IP or domain,
    # not the recipient, was refused ("Sender rejected: … listed in dbl.spamhaus.org",
    # "rate limited due to IP reputation")
    (r"reputation|" + _LISTS, "blocked", "7.1"),
    # the sender, refused as such (before any address rule: "Sender address rejected:
    # Domain not found" is about our domain)
    (r"sender address rejected|sender (?:address )?(?:is )?(?:rejected|refused|denied|blocked"
     r"|not allowed|unknown|invalid)|sender verif\w* failed|unverified sender|sender (?:address )?"
     r"verification|rejected sender|invalid sender|bad sender|mail from .{0,40}(?:rejected"
     r"|refused|denied)|domain of sender address|sender domain (?:does not exist|must resolve"
     r"|not found|is invalid)|sender(?:'s)? domain .{0,30}(?:not|no) (?:exist|resolv|found)"
     r"|envelope sender|return path .{0,20}(?:invalid|rejected)|not owned by user"
     r"|from address .{0,30}(?:rejected|not allowed|denied)|your address is not allowed"
     r"|absender .{0,30}(?:abgelehnt|ungültig)", "rejected", "7.1"),
    (r"\b(?:spf|dkim|dmarc|arc)\b|sender policy framework|domainkeys|unauthenticated (?:email"
     r"|mail|message)|not authenticated|authentication (?:is )?required|must (?:first )?"
     r"(?:issue|use) (?:a |the )?starttls|starttls (?:is )?required|tls (?:is )?required"
     r"|requires? (?:encryption|tls)|encryption required|must authenticate|auth(?:entication)?"
     r" (?:failed|failure)|authenticat\w* (?:failed|failure)|spoof|forged|impersonat"
     r"|does not designate|not (?:a )?permitted sender|security (?:issue|risk|threat)"
     r"|sender ?id|failed (?:the )?(?:spf|dkim|dmarc)", "securityerror", "7.1"),
    (r"relay(?:ing)? (?:access )?(?:is )?(?:denied|not permitted|prohibited|not allowed"
     r"|refused)|not permitted to relay|unable to relay|(?:we|i) do not relay|relay not"
     r" permitted|cannot relay|no relaying|isn'?t in my list of allowed rcpthosts"
     r"|not in my list of allowed rcpthosts|open relay", "norelaying", "7.1"),
    # the recipient's account, suspended — before "blocked" ("account blocked")
    (r"account (?:has been |is |was )?(?:disabled|suspended|deactivated|locked|inactive"
     r"|blocked|frozen|closed|expired|terminated|cancell?ed|discontinued)"
     r"|(?:mailbox|account|user|recipient|address) (?:is |has been )?(?:temporarily |currently )?"
     r"(?:disabled|inactive|suspended|deactivated|frozen|locked|not active)"
     r"|inactive (?:user|mailbox|account)|no longer active|is not active|has been disabled"
     r"|disabled (?:mailbox|account|user)|mailbox (?:is )?(?:on hold|unavailable for "
     r"(?:incoming|delivery))|dormant|account (?:expired|not active)|abgeschaltet|gesperrt"
     r"|deaktiviert|заблокирован|отключен", "suspend", "2.1"),
    (r"too many (?:concurrent |simultaneous |parallel )?(?:smtp )?(?:connections|sessions)"
     r"|connection limit|concurrent (?:connections|sessions)|connections? (?:from your "
     r"(?:ip|host) )?(?:exceeded|over limit)|too many open", "toomanyconn", "4.5"),
    (r"rate limit|ratelimit|rate-limit|too many (?:messages|recipients|mails|emails|e-mails"
     r"|errors|invalid)|sending rate|unusual rate|rate of|throttl|slow down|exceeded .{0,30}"
     r"(?:rate|quota of messages|sending (?:limit|quota))|sending (?:limit|quota)|mail flood"
     r"|receiving mail at a rate|greylist|graylist|grey-list|gray-list", "ratelimited",
     "7.0"),
    (r"spam|junk|unsolicited|\bbulk\b|\buce\b|content filter|looks suspicious|phish"
     r"|suspicious|scam|(?:rejected|refused) (?:as|because of|due to) (?:spam|junk|bulk)"
     r"|filtered|score|spam-?assassin|rejected by the"
     r" recipient'?s? (?:filter|server)|спам|スパム|迷惑", "spamdetected", "7.1"),
    (_LISTS + r"|blocked using|block ?list(?:ed)?|black ?list(?:ed)?|deny ?list"
     r"|(?<!not )listed (?:at|in|on|by)|is listed|are listed|ip (?:address )?(?:\S+ )?"
     r"(?:is |was |has been )?(?:listed|blocked|banned|blacklisted|rejected|not allowed"
     r"|on (?:our|a) )|reputation|client host (?:\[[^\]]{0,60}\] )?(?:rejected|blocked)"
     r"|refused to talk to me|(?:your|sending|the sending|client) (?:ip|server|host|network"
     r"|mail server|mta|domain|access)\b|(?:connection|access) (?:refused|rejected|blocked"
     r"|denied) (?:from|due|for|because)|blocked (?:by|due|for)|temporarily (?:blocked"
     r"|deferred due to)|(?:\bip\b|host|server|domain|connection|sender) (?:\S+ )?(?:was |is "
     r"|has been )?blocked|dynamic ip|dial-?up|residential|generic (?:reverse|rdns|ptr"
     r"|hostname)|reverse (?:dns|lookup)|\bptr\b|\brdns\b|\bhelo\b|\behlo\b"
     r"|not accepted from this ip|too many (?:complaints|spam)|abuse report|spam source"
     r"|sending spam|(?:permanently|temporarily) deferred|will not be accepted from"
     r"|not accepting (?:mail|messages|connections) from|messages from (?:\S+ ){0,3}"
     r"(?:will be |are |have been )?(?:permanently |temporarily )?(?:deferred|refused"
     r"|rejected|blocked)", "blocked", "7.1"),
    # -- the recipient's mailbox, by its state --------------------------------------------------
    (r"insufficient system (?:storage|resources)|system (?:storage|disk) (?:is )?full"
     r"|disk (?:is )?full|out of disk|no space left|system full|mail system full"
     r"|server (?:storage|disk) full", "systemfull", "3.1"),
    (r"exceeds? (?:the )?(?:recipient'?s?|user'?s?|mailbox) (?:\S+ )?(?:size )?limit"
     r"|exceeds (?:his|her|their) (?:mailbox|storage)|message would exceed", "exceedlimit",
     "2.3"),
    (r"over ?quota|quota (?:exceeded|exceed|full|reached)|exceeded (?:\S+ )?(?:storage|the quota"
     r"|quota|storage allocation)|mailbox (?:is )?(?:full|overfull)|mailbox has exceeded"
     r"|insufficient (?:user )?storage|out of storage|full mailbox|mail ?(?:folder|box) (?:is )?"
     r"full|mailbox size limit|disk quota|storage (?:quota|limit)|user(?:'s)? (?:mailbox|quota)"
     r" (?:is )?(?:full|exceeded)|inbox (?:is )?full|too much mail|postfach (?:ist )?voll"
     r"|speicherplatz|boîte (?:aux lettres )?pleine|casella (?:piena|.{0,10}piena)"
     r"|buzón (?:lleno|está lleno)|caixa (?:postal )?(?:cheia|lotada)|переполнен|容量"
     r"|ボックスがいっぱい|mailbox_full|mailboxfull|mailbox (?:size )?exceeded"
     r"|recipient'?s? mailbox exceeded|exceeded (?:the )?local limit", "mailboxfull", "2.2"),
    (r"message (?:size |length )?(?:is )?too (?:large|big|long)|message size exceeds"
     r"|exceeds (?:the )?(?:maximum |max |fixed )?(?:allowed |permitted )?(?:message )?size"
     r"|size (?:limit|exceeds)|message length exceeds|too (?:large|big) for|mail size"
     r"|message exceeds|exceeded the maximum (?:message )?size|zu groß|trop (?:grand|volumineux)"
     r"|слишком (?:большое|велико)", "mesgtoobig", "3.4"),
    # -- the address itself ------------------------------------------------------------------------
    (r"has moved|user has moved|moved to (?:a )?(?:new|another)|no longer (?:at|with|works)"
     r"|new address|forwarding address|address (?:has )?changed", "hasmoved", "1.6"),
    (r"null mx|does not accept (?:any )?(?:e-?)?mail|not accept(?:ing)? (?:any )?(?:e-?)?mail"
     r"|accepts? no (?:e-?)?mail|domain (?:does not|doesn'?t) receive", "notaccept", "1.10"),
    (r"host (?:or domain name )?not found|domain (?:name )?not found|no such domain"
     r"|domain (?:\S+ )?(?:does not|doesn'?t) exist|name service error|nxdomain|unknown domain"
     r"|unrouteable (?:mail )?domain|domain (?:is )?invalid|invalid domain|non-?existent"
     r" (?:host|domain)|host unknown|unknown host|no mx|mx (?:record )?(?:lookup )?(?:failed"
     r"|not found)|couldn'?t find any host|unable to look up host|unrouteable address"
     r"|all relevant mx records point to non-existent hosts|domain .{0,40} not (?:exist|found)"
     r"|не найден.{0,10}домен|ドメインが(?:存在し|見つかり)", "hostunknown", "1.2"),
    (r"user unknown|unknown user|no such (?:user|mailbox|recipient|person|address|account"
     r"|local user)|(?:user|mailbox|recipient|address|account|local part|e-?mail address)"
     r" (?:\S+ )?(?:does not|doesn'?t|did not|not) exist|does not exist|doesn'?t exist"
     r"|not exist|unknown (?:recipient|mailbox|address|local|account|e-?mail)|recipient"
     r" (?:address )?(?:not found|unknown|invalid|rejected|not valid)|invalid (?:recipient"
     r"|mailbox|user|address|e-?mail)|no mailbox|mailbox (?:not found|unavailable"
     r"|does not|name not allowed|invalid)|not a valid (?:user|mailbox|recipient|address)"
     r"|address rejected|unrouteable address|doesn'?t have an? \S+ account"
     r"|not our customer|user not found|no account|unknown address|undeliverable address"
     r"|recipientnotfound|resolver\.adr\.|bad destination mailbox|bad (?:recipient|destination)"
     r" address syntax|not listed in (?:the |public |domino )|no (?:such )?(?:user|mailbox)"
     r" here|no mailbox here by that name|addressee unknown|user not local|unknown or illegal"
     r"|mailbox (?:is )?not available|not a known user|no valid recipients|address unknown"
     r"|recipient (?:is )?not (?:found|known|listed)|account (?:does not|doesn'?t) exist"
     r"|(?:wasn'?t|was not) found at|unknown to address|couldn'?t be found|could not be found"
     r"|invalid address|inexistent|nicht vorhanden|unbekannt|existiert nicht|inexistant"
     r"|n'existe pas|introuvable|inesistente|no existe|desconocido|inexistente"
     r"|не существует|нет такого|несуществующ|宛先不明|存在しない|存在しません|見つかりません",
     "userunknown", "1.1"),
    # "blocked" or "banned" alone names no cause: a specific code outranks it (WEAK)
    (r"\bblocked\b|\bbanned\b|has been blocked", "blocked", "7.1", WEAK),
    # -- everything else ------------------------------------------------------------------------
    (r"retry time(?:out)? (?:not reached|exceeded)|retry timeout|message (?:has )?expired"
     r"|expired|gave up|giving up|could not be delivered within|not (?:be )?delivered (?:for|in)"
     r" (?:\d+|more than)|time limit|delivery time|too long in (?:the )?queue|in the queue too long"
     r"|not going to try again|queue lifetime"
     r"|maximum (?:time|queue)|has not been delivered (?:for|in)|exceeded the maximum time"
     r"|message timeout|undeliverable for|abgelaufen", "expired", "4.7"),
    (r"connection (?:refused|timed out|reset|lost|closed|dropped)|lost connection|timed? ?out"
     r"|network error"
     r"|network (?:is )?unreachable|no route to host|could not connect|unable to connect"
     r"|can'?t connect|failed to connect|conversation with|connect to .{0,80} failed"
     r"|mail loops back|loop(?:s)? detected|routing loop|mail loop|too many hops|hop count"
     r"|dns (?:error|failure|lookup failed|timeout)|temporary (?:dns|name) (?:failure|error)"
     r"|name server|servfail|tls (?:handshake|negotiation) failed|ssl (?:error|handshake)",
     "networkerror", "4.1"),
    (r"polic(?:y|ies)|prohibited|not allowed|not authori[sz]ed|administrative prohibition"
     r"|content restriction|denied by|access denied|message refused|refused by|rejected by"
     r"|header error|multiple addresses|attachment (?:type )?(?:is )?(?:not allowed|blocked"
     r"|prohibited)|(?:forbidden|not permitted|blocked) (?:file|attachment)|executable"
     r"|delivery not authori[sz]ed|not permitted", "policyviolation", "7.1"),
    (r"\bmime\b|malformed|header (?:is )?(?:invalid|missing|too long)|invalid header|line too long"
     r"|bare lf|bare cr|8-?bit|encoding|message (?:is )?corrupt|rfc ?5322|rfc ?2822"
     r"|rfc ?822|not rfc compliant|content error|missing (?:\S+ )?header|duplicate header"
     r"|message-id|content (?:was )?(?:rejected|refused)", "contenterror", "6.0"),
    (r"syntax error|command (?:not )?(?:recogni[sz]ed|unrecogni[sz]ed)|unrecogni[sz]ed command"
     r"|invalid command|bad sequence|out of sequence|protocol error|command not implemented"
     r"|improper use of smtp", "syntaxerror", "5.2"),
    (r"system error|internal (?:server )?error|local (?:error|problem)|server error|configuration"
     r" error|mailer error|unexpected error|temporary (?:local )?(?:problem|failure|error)"
     r"|try (?:again )?later|service (?:is )?(?:not |un)?available|temporarily unavailable"
     r"|try again|transient"
     r"|storedrv|processing error|resources? (?:temporarily )?unavailable|database error"
     r"|i/o error|not (?:currently )?available|unavailable", "systemerror", "3.0"),
)

_BY_TEXT: tuple[tuple[re.Pattern[str], str, str, bool], ...] = tuple(
    # Matched against lower-cased text (searchable()): without IGNORECASE the engine
    # compares literals directly, which halves the cost of the long alternations.
    (re.compile(rule[0]), rule[1], rule[2], WEAK not in rule[3:])
    for rule in _RULES)

_ADDRESSES = re.compile(r"<[^<>\s]{0,256}@[^<>\s]{0,256}>|[\w.!#$%&'*+/=?^`{|}~-]{1,128}"
                        r"@[\w-]{1,63}(?:\.[\w-]{1,63})+")
# Postfix's "host mx.example.com[192.0.2.1] said:", Exim's "host mx.example.com [192.0.2.1]",
# "Remote-MTA"-like host names: a host's name is not a diagnosis.
_HOST_PREFIX = re.compile(r"\b(?:host|server|mx|by|from|at)\s+[\w.-]{1,255}\s?\[[\d.a-f:]{2,45}\]",
                          re.IGNORECASE)


def find_status(text: str) -> str | None:
    """The first RFC 3463 failure code (4.x.x or 5.x.x) in `text`, or None."""
    m = _STATUS.search(text[:_MAX_TEXT])
    return f"{m[1]}.{m[2]}.{m[3]}" if m else None


def reason_for_status(status: str) -> tuple[str, bool]:
    """(reason, specific): `specific` is False for codes that only narrow it down."""
    subject_detail = status.split(".", 1)[1] if "." in status else ""
    reason = _BY_STATUS.get(subject_detail)
    if reason is not None:
        return reason, True
    if subject_detail == "1.10":
        # RFC 7505's null MX, but Exchange Online answers "5.1.10 RecipientNotFound" for
        # an unknown user: the text decides, and null MX is the fallback.
        return "notaccept", False
    return _WEAK_STATUS.get(subject_detail.split(".")[0], "undefined"), False


def searchable(text: str) -> str:
    """`text` capped, lower-cased, on one line, without addresses and host names (see
    the module docstring)."""
    text = " ".join(text[:_MAX_TEXT].lower().split())  # folded and wrapped: one line
    if "@" in text:
        text = _ADDRESSES.sub(" ", text)
    if "[" in text:
        text = _HOST_PREFIX.sub(" ", text)
    return text


def infer(text: str) -> tuple[str, str | None]:
    """(reason, subject.detail) from a sentence alone; ("undefined", None) if no rule fits."""
    reason, detail, _ = infer_rule(text)
    return reason, detail


def infer_rule(text: str) -> tuple[str, str | None, bool]:
    """(reason, subject.detail, strong): `strong` is False for the rules marked WEAK."""
    text = searchable(text)
    for pattern, reason, detail, strong in _BY_TEXT:
        if pattern.search(text):
            return reason, detail, strong
    return "undefined", None, False
