"""A bucket origin's AWS credentials: botocore's chain, never on the event loop.

botocore finds them (environment, shared credentials and config files
and their profiles, web identity tokens, SSO, container and instance
metadata) and refreshes temporary ones; both may read files or call a
metadata endpoint, which blocks. So they are looked up once when the
worker starts, and afterwards only in a thread: the event loop signs with
a frozen copy, and while botocore says a refresh is due (its advisory
window, minutes before the expiry) one refresh runs in a thread while
requests go on with the copy in hand, waiting only when it is about to
expire. Credentials that could not be found are looked for again, at most
every ``retry_seconds``: a metadata endpoint may answer late after boot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import botocore.session
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials
from botocore.exceptions import BotoCoreError

from phizer.errors import OriginError

log = logging.getLogger("phizer.origins")

RETRY_SECONDS = 30.0
# Below this many seconds before the expiry a request waits for the refresh.
URGENT_SECONDS = 60
DEFAULT_REGION = "us-east-1"

# Raised by botocore's providers besides BotoCoreError: unreadable files,
# malformed JSON from a process or endpoint, a refresh that stays expired.
_LOOKUP_ERRORS = (BotoCoreError, OSError, ValueError, RuntimeError)


@dataclass(frozen=True)
class Found:
    """What a lookup gave: the credentials (or why none) and the region."""

    credentials: Credentials | None
    problem: str | None = None
    region: str | None = None


def lookup(profile: str | None) -> Found:
    """botocore's chain for ``profile`` (None: AWS_PROFILE or the default). Blocks."""
    try:
        session = botocore.session.Session(profile=profile)
        region = session.get_config_variable("region")
        credentials = session.get_credentials()
    except _LOOKUP_ERRORS as err:
        return Found(None, str(err) or type(err).__name__)
    if credentials is None:
        where = f"profile {profile}" if profile else "the environment, files or metadata"
        return Found(None, f"no AWS credentials found in {where}", region)
    return Found(credentials, None, region)


class CredentialSource:
    """The credentials one bucket origin signs with."""

    def __init__(
        self,
        find: Callable[[], Found],
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self._find = find
        self._retry_seconds = retry_seconds
        self._credentials: Credentials | None = None
        self._frozen: ReadOnlyCredentials | None = None
        self.problem: str | None = None
        self.region: str | None = None
        self._pending: asyncio.Future[None] | None = None
        self._next_attempt = 0.0

    @property
    def method(self) -> str | None:
        """Where botocore found them (``env``, ``shared-credentials-file``,
        ``iam-role``, ...); None while there are none."""
        return self._credentials.method if self._credentials is not None else None

    def load(self) -> None:
        """Look them up now, blocking (at startup, or in a thread)."""
        found = self._find()
        self.region = found.region
        credentials, problem = found.credentials, found.problem
        if credentials is not None:
            try:
                # Temporary credentials found near their expiry refresh here.
                self._take(credentials, credentials.get_frozen_credentials())
                return
            except _LOOKUP_ERRORS as err:
                problem = f"{credentials.method} credentials: {err}"
        self.problem = problem
        # Not again at once: a missing metadata endpoint costs seconds.
        self._next_attempt = time.monotonic() + self._retry_seconds

    def _take(self, credentials: Credentials, frozen: ReadOnlyCredentials) -> None:
        self._credentials = credentials
        self._frozen = frozen
        self.problem = None

    async def current(self, origin: str) -> ReadOnlyCredentials:
        """The credentials to sign with now; ``OriginError`` when there are none."""
        credentials = self._credentials
        due = credentials is None or (
            isinstance(credentials, RefreshableCredentials) and credentials.refresh_needed()
        )
        if due and self._pending is None and time.monotonic() >= self._next_attempt:
            self._next_attempt = time.monotonic() + self._retry_seconds
            self._pending = asyncio.ensure_future(self._in_thread(origin))
        pending = self._pending
        if pending is not None and self._must_wait():
            await asyncio.shield(pending)
        if self._frozen is None:
            raise OriginError(f"origin {origin} has no credentials")
        return self._frozen

    def _must_wait(self) -> bool:
        credentials = self._credentials
        if credentials is None or self._frozen is None:
            return True
        return isinstance(credentials, RefreshableCredentials) and credentials.refresh_needed(
            URGENT_SECONDS
        )

    async def _in_thread(self, origin: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._credentials is None:
                await loop.run_in_executor(None, self.load)
                if self._credentials is None:
                    log.error("origin %s: %s; answering 502", origin, self.problem)
                else:
                    log.warning("origin %s: found credentials (%s)", origin, self.method)
            else:
                credentials = self._credentials
                frozen = await loop.run_in_executor(None, credentials.get_frozen_credentials)
                self._take(credentials, frozen)
        except _LOOKUP_ERRORS as err:
            log.error("origin %s: refreshing the credentials failed: %s", origin, err)
        finally:
            self._pending = None
