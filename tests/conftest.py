"""Settings every test shares."""

import os

from identity.privacy import DEMO_KEY_ENV, KEY_ENV

# All test data is fake: the public demo HMAC key is fine, and tests must not depend on a developer's real key.
os.environ.pop(KEY_ENV, None)
os.environ[DEMO_KEY_ENV] = "1"
