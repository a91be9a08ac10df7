"""Drives Azure's official Python SDK, unmodified, against the keyvault-emulator.

Name resolution is redirected inside this process only: the vault and AAD host names on port 443 are
mapped to the emulator's HTTPS listener by wrapping socket.getaddrinfo. TLS trusts the emulator's
test CA. Every check raises on failure; the last line printed is "sdk-roundtrip: ok".
"""

import base64
import hashlib
import os
import socket
import sys

PORT = int(os.environ["KVEMU_HTTPS_PORT"])
CA = os.environ["KVEMU_CA"]
TENANT = os.environ["KVEMU_TENANT"]
CLIENT_ID = os.environ["KVEMU_CLIENT_ID"]
CLIENT_SECRET = os.environ["KVEMU_CLIENT_SECRET"]
VAULT_URL = os.environ["KVEMU_VAULT_URL"]
PFX_PATH = os.environ["KVEMU_PFX"]
PFX_PASSWORD = os.environ["KVEMU_PFX_PASSWORD"]
PEM_PATH = os.environ["KVEMU_PEM_BUNDLE"]
LEAF_DER_SHA1 = os.environ["KVEMU_LEAF_SHA1"]

EMULATED_SUFFIXES = (".vault.azure.net",)
EMULATED_HOSTS = {"login.microsoftonline.com"}
_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, port, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if name and (name in EMULATED_HOSTS or name.endswith(EMULATED_SUFFIXES)) and int(port or 443) == 443:
        return _real_getaddrinfo("127.0.0.1", PORT, *args, **kwargs)
    return _real_getaddrinfo(host, port, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo

from azure.core.exceptions import ResourceNotFoundError  # noqa: E402
from azure.identity import ClientSecretCredential  # noqa: E402
from azure.keyvault.certificates import (  # noqa: E402
    CertificateClient,
    CertificateContentType,
    CertificatePolicy,
)
from azure.keyvault.keys import KeyClient, KeyCurveName, KeyType  # noqa: E402
from azure.keyvault.secrets import SecretClient  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12  # noqa: E402


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def main():
    credential = ClientSecretCredential(TENANT, CLIENT_ID, CLIENT_SECRET, connection_verify=CA)
    secrets = SecretClient(VAULT_URL, credential, connection_verify=CA)
    keys = KeyClient(VAULT_URL, credential, connection_verify=CA)
    certs = CertificateClient(VAULT_URL, credential, connection_verify=CA)

    # Secrets: set two versions, get latest and by version, list versions across pages.
    first = secrets.set_secret("sdk-secret", "value-1")
    second = secrets.set_secret("sdk-secret", "value-2", content_type="text/plain", tags={"k": "v"})
    check(len(first.properties.version) == 32, "version is 32 hex chars")
    latest = secrets.get_secret("sdk-secret")
    check(latest.value == "value-2", f"latest value: {latest.value!r}")
    check(latest.properties.content_type == "text/plain", "content type")
    check(latest.properties.tags == {"k": "v"}, "tags")
    check(latest.properties.recovery_level == "Recoverable+Purgeable", "recovery level")
    check(secrets.get_secret("sdk-secret", first.properties.version).value == "value-1", "by version")
    versions = list(secrets.list_properties_of_secret_versions("sdk-secret", max_page_size=1))
    check(sorted(v.version for v in versions) == sorted([first.properties.version, second.properties.version]),
          "paged version list")
    secrets.update_secret_properties("sdk-secret", first.properties.version, enabled=False)
    disabled = [v for v in secrets.list_properties_of_secret_versions("sdk-secret") if not v.enabled]
    check([v.version for v in disabled] == [first.properties.version], "disabled version listed")
    try:
        secrets.get_secret("no-such-secret")
        raise AssertionError("missing secret did not raise")
    except ResourceNotFoundError as e:
        check(e.error.code == "SecretNotFound", f"404 code {e.error.code}")

    # Keys: RSA and EC creation, get.
    rsa = keys.create_rsa_key("sdk-rsa", size=2048)
    check(rsa.key_type == KeyType.rsa, f"rsa kty {rsa.key_type}")
    check(len(rsa.key.n) == 256 and rsa.key.e == b"\x01\x00\x01", "rsa n/e")
    ec = keys.create_ec_key("sdk-ec", curve=KeyCurveName.p_384)
    check(ec.key.crv == KeyCurveName.p_384 and len(ec.key.x) == 48, "ec key")
    got = keys.get_key("sdk-rsa")
    check(got.id == rsa.id and got.key.n == rsa.key.n, "get key")
    check(got.properties.version == rsa.properties.version, "key version")

    # Certificates: import a password-protected PFX, read the certificate, its secret and its key.
    with open(PFX_PATH, "rb") as f:
        pfx = f.read()
    imported = certs.import_certificate("sdk-cert", pfx, password=PFX_PASSWORD)
    check(hashlib.sha1(bytes(imported.cer)).hexdigest() == LEAF_DER_SHA1, "cer is the leaf")
    check(imported.properties.x509_thumbprint.hex() == LEAF_DER_SHA1, "x5t")
    fetched = certs.get_certificate("sdk-cert")
    check(fetched.id == imported.id, "get certificate")
    check(fetched.policy.content_type == CertificateContentType.pkcs12, "policy content type")
    check(fetched.policy.key_type == KeyType.rsa and fetched.policy.key_size == 2048, "policy key props")
    backing = secrets.get_secret("sdk-cert")
    check(backing.properties.content_type == "application/x-pkcs12", "backing secret content type")
    check(backing.properties.managed, "backing secret managed")
    check(backing.properties.key_id == fetched.key_id, "backing secret kid")
    key, cert, _ = pkcs12.load_key_and_certificates(base64.b64decode(backing.value), None)
    check(key is not None and cert is not None, "backing PFX opens without a password")
    leaf = cert.public_bytes(Encoding.DER)
    check(hashlib.sha1(leaf).hexdigest() == LEAF_DER_SHA1, "backing PFX holds the leaf")
    backing_key = keys.get_key("sdk-cert")
    check(backing_key.properties.managed, "backing key managed")
    check(backing_key.id == fetched.key_id, "backing key id")

    # PEM import: the SDK base64-encodes the PEM text; the backing secret is PEM.
    with open(PEM_PATH, "rb") as f:
        pem_bundle = f.read()
    policy = CertificatePolicy(content_type=CertificateContentType.pem)
    certs.import_certificate("sdk-pem", pem_bundle, policy=policy)
    pem_secret = secrets.get_secret("sdk-pem")
    check(pem_secret.properties.content_type == "application/x-pem-file", "pem content type")
    check(pem_secret.value.startswith("-----BEGIN PRIVATE KEY-----"), "pem secret starts with the key")
    check(pem_secret.value.count("-----BEGIN CERTIFICATE-----") == 1, "pem secret holds the certificate")

    print("sdk-roundtrip: ok")


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # report and fail; the Rust test prints stderr
        import traceback

        traceback.print_exc()
        print(f"sdk-roundtrip: FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
