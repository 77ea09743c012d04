# Minimal Horizon settings for driving the dashboard against Vela (see probe.py).
import os
import tempfile

from openstack_dashboard.settings import *  # noqa: F401,F403

OPENSTACK_KEYSTONE_URL = os.environ.get("HORIZON_KEYSTONE_URL", "http://127.0.0.1:9393/v3")
SECRET_KEY = "vela-e2e-horizon-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["*"]
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
COMPRESS_ENABLED = False
COMPRESS_OFFLINE = False
OPENSTACK_KEYSTONE_DEFAULT_DOMAIN = "Default"
HORIZON_IMAGES_UPLOAD_MODE = os.environ.get("HORIZON_UPLOAD_MODE", "legacy")
OPENSTACK_API_VERSIONS = {"identity": 3, "image": 2}
WEBROOT = "/"
LOGIN_URL = "/auth/login/"
LOGOUT_URL = "/auth/logout/"
LOGIN_REDIRECT_URL = "/"
STATIC_ROOT = os.environ.get("HORIZON_STATIC_ROOT", os.path.join(tempfile.gettempdir(), "horizon-static"))
# HORIZON_ANGULAR_IMAGES=0 switches to the older Django images panel.
ANGULAR_FEATURES = {**ANGULAR_FEATURES, "images_panel": os.environ.get("HORIZON_ANGULAR_IMAGES", "1") == "1"}
IMAGES_ALLOW_LOCATION = True  # "create from a URL": a location on the image
# Browser sign-on (WebSSO) through Vela's embedded identity and an OpenID provider: Horizon's
# login page offers "OpenID Connect" beside the password form and sends the browser to
# /v3/auth/OS-FEDERATION/identity_providers/<idp>/protocols/openid/websso.
if os.environ.get("HORIZON_WEBSSO_IDP"):
    WEBSSO_ENABLED = True
    WEBSSO_CHOICES = (("credentials", "Keystone Credentials"), ("oidc", "OpenID Connect"))
    WEBSSO_IDP_MAPPING = {"oidc": (os.environ["HORIZON_WEBSSO_IDP"], "openid")}
    WEBSSO_INITIAL_CHOICE = "credentials"
