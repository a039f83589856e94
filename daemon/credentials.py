"""Venue API credentials for live trading, from the environment or systemd credentials; never printed.

Binance signs with an HMAC secret or an Ed25519 private key:

    BINANCE_API_KEY           or $CREDENTIALS_DIRECTORY/binance_api_key
    BINANCE_API_SECRET        or $CREDENTIALS_DIRECTORY/binance_api_secret      (HMAC)
    BINANCE_PRIVATE_KEY_FILE  or $CREDENTIALS_DIRECTORY/binance_private_key     (Ed25519 PEM; instead)

`BINANCE_PRIVATE_KEY_FILE` names a file holding the PEM key. The other venues
take the secrets their trading client lists (`connectors.registry.TRADING`),
each from `<VENUE>_<NAME>` or `$CREDENTIALS_DIRECTORY/<venue>_<name>`:

    BYBIT_API_KEY, BYBIT_API_SECRET
    OKX_API_KEY, OKX_API_SECRET, OKX_API_PASSPHRASE
    COINBASE_API_KEY_NAME, COINBASE_API_PRIVATE_KEY        (PEM: ES256 or Ed25519)
    KRAKEN_API_KEY, KRAKEN_API_SECRET

Errors name the variable, credential or file that is missing or wrong — never a value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from Crypto.PublicKey import ECC

from connectors.binance.session import ApiCredentials
from daemon.config import Secret, load_secret
from daemon.errors import ConfigError

API_KEY_ENV: Final = "BINANCE_API_KEY"
API_SECRET_ENV: Final = "BINANCE_API_SECRET"
PRIVATE_KEY_FILE_ENV: Final = "BINANCE_PRIVATE_KEY_FILE"
API_KEY_CREDENTIAL: Final = "binance_api_key"
API_SECRET_CREDENTIAL: Final = "binance_api_secret"
PRIVATE_KEY_CREDENTIAL: Final = "binance_private_key"


@dataclass(frozen=True, slots=True)
class BinanceCredentials:
    """A Binance API key with its HMAC secret or its Ed25519 private key (PEM)."""

    api_key: Secret
    api_secret: Secret | None
    private_key: Secret | None

    def for_connector(self) -> ApiCredentials:
        """Hand the values to the REST connector, which signs with them."""
        return ApiCredentials(
            api_key=self.api_key.reveal(),
            api_secret=None if self.api_secret is None else self.api_secret.reveal(),
            private_key=None if self.private_key is None else self.private_key.reveal(),
        )


def load_binance_credentials(environ: Mapping[str, str] | None = None) -> BinanceCredentials:
    """Load the Binance API key and its signing secret; raise ConfigError naming what is missing."""
    env = os.environ if environ is None else environ
    api_key = load_secret(API_KEY_ENV, API_KEY_CREDENTIAL, env)
    if api_key is None:
        raise ConfigError(
            f"live trading on binance needs an API key: set {API_KEY_ENV} or the systemd credential "
            f"{API_KEY_CREDENTIAL} ($CREDENTIALS_DIRECTORY)"
        )
    secret = load_secret(API_SECRET_ENV, API_SECRET_CREDENTIAL, env)
    private_key = _private_key(env)
    if secret is not None and private_key is not None:
        raise ConfigError(
            f"binance credentials: both an HMAC secret ({API_SECRET_ENV}/{API_SECRET_CREDENTIAL}) and an "
            f"Ed25519 key ({PRIVATE_KEY_FILE_ENV}/{PRIVATE_KEY_CREDENTIAL}) are set; keep one"
        )
    if secret is None and private_key is None:
        raise ConfigError(
            f"live trading on binance needs a signing secret: set {API_SECRET_ENV} (or the systemd "
            f"credential {API_SECRET_CREDENTIAL}) for HMAC, or {PRIVATE_KEY_FILE_ENV} (or the credential "
            f"{PRIVATE_KEY_CREDENTIAL}) for an Ed25519 key"
        )
    return BinanceCredentials(api_key, secret, private_key)


def _private_key(environ: Mapping[str, str]) -> Secret | None:
    path_text = environ.get(PRIVATE_KEY_FILE_ENV)
    if path_text is not None:
        where = f"{PRIVATE_KEY_FILE_ENV} file {path_text}"
        key = _read_key(Path(path_text), where)
    else:
        directory = environ.get("CREDENTIALS_DIRECTORY")
        path = Path(directory) / PRIVATE_KEY_CREDENTIAL if directory else None
        if path is None or not path.exists():
            return None
        where = f"credential {path}"
        key = _read_key(path, where)
    _check_ed25519(key, where)
    return key


def _read_key(path: Path, where: str) -> Secret:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read it ({type(exc).__name__})") from None
    if not text:
        raise ConfigError(f"{where}: is empty")
    return Secret(text)


def _check_ed25519(key: Secret, where: str) -> None:
    try:
        parsed = ECC.import_key(key.reveal())
    except (ValueError, IndexError, TypeError):
        # The parser's message may quote the key material: say only what is wrong.
        raise ConfigError(f"{where}: not a PEM private key") from None
    if parsed.curve != "Ed25519" or not parsed.has_private():
        raise ConfigError(f"{where}: must be an Ed25519 private key (RSA and other curves are not used)")


def secret_env_name(venue: str, secret: str) -> str:
    """Return a venue secret's environment variable (`okx`, `api_passphrase` → OKX_API_PASSPHRASE)."""
    return f"{venue}_{secret}".upper()


def load_venue_secrets(
    venue: str, names: Sequence[str], environ: Mapping[str, str] | None = None
) -> list[Secret]:
    """Load every secret a venue's trading client takes; ConfigError names the venue and what is missing.

    Each comes from its environment variable (`secret_env_name`) or the systemd credential of the
    same name in lower case (`$CREDENTIALS_DIRECTORY/okx_api_passphrase`).
    """
    env = os.environ if environ is None else environ
    found: list[Secret] = []
    missing: list[str] = []
    for name in names:
        variable = secret_env_name(venue, name)
        secret = load_secret(variable, variable.lower(), env)
        if secret is None:
            missing.append(variable)
        else:
            found.append(secret)
    if missing:
        raise ConfigError(
            f"live trading on {venue} needs {', '.join(missing)}: set each in the environment or as the "
            f"systemd credential of the same name in lower case ($CREDENTIALS_DIRECTORY), or set "
            f"[venues.{venue}] trade = false to keep {venue} market-data only"
        )
    return found
