"""DKIM signing, one stage (Postfix + OpenDKIM as a milter; KumoMTA's `msg:dkim_sign`).

- `signer`: signs each message for its sender's domain before it is spooled.
- `keys`: private key files and the DNS record to publish.
- `keytool`: the `dkim keygen | list | check` verbs' logic.
- `settings`: the `dkim:` section of config.yaml.
"""
