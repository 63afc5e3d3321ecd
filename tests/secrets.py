"""API keys used by the suite.

They are distinctive strings so the session-wide leak scanner in ``conftest.py`` can search every
captured log line, stdout/stderr chunk and failure report for them.
"""

KEY_A = "vxk-test-alpha-7Hq2ZP9wLm3R"
KEY_B = "vxk-test-bravo-Q8sN4tYc1KfD"

# Fake AWS credentials for the moto S3 server (tests/s3_fixtures.py). Distinctive, so the scanner
# catches them (and presigned URLs, which carry the access key id and, with temporary
# credentials, the session token) anywhere in the output.
AWS_ACCESS_KEY_ID = "AKIAVOXLAKETEST7QX2M"
AWS_SECRET_ACCESS_KEY = "vxs3-secret-Zq8Pn4Lr2Tw6Yb0KdM1c"
AWS_SESSION_TOKEN = "vxs3-session-Hn5Jt9Wq3Ze7Ua1Pf"
# The webhook receiver's auth header value (tests/test_webhooks.py): a secret like the others.
WEBHOOK_SECRET = "vxwh-secret-Lp3Ks8Nd2Qx6Rv0T"
ALL_KEYS = (
    KEY_A,
    KEY_B,
    AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY,
    AWS_SESSION_TOKEN,
    WEBHOOK_SECRET,
)

#: Query parameters of presigned URLs (SigV4 and V2): a signature must never be logged either.
SIGNATURE_MARKERS = ("X-Amz-Signature=", "X-Amz-Credential=", "&Signature=", "?Signature=")
