"""The installation's PKI: a root CA, one intermediate per organization, registered (bring your
own) CAs, device certificates issued from CSRs, revocation lists for the broker, and audits.

Everything uses the ``cryptography`` package; nothing shells out to openssl."""
