"""Giving up root once the sockets are bound: ``--user`` and ``--group``."""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Sequence
from dataclasses import dataclass


class PrivilegeError(Exception):
    """A user or group that cannot be used; ``str(err)`` says why."""


@dataclass(frozen=True)
class Identity:
    """Who to become. ``uid`` is ``None`` when only a group was asked for."""

    uid: int | None
    gid: int
    user: str | None
    group: str

    def describe(self) -> str:
        who = f"user {self.user or self.uid}" if self.uid is not None else "the same user"
        return f"{who}, group {self.group}"


def resolve_identity(user: str | None, group: str | None) -> Identity | None:
    """Look the names (or numeric ids) up; ``None`` when neither is given."""
    if user is None and group is None:
        return None
    entry = _passwd(user) if user is not None else None
    if group is not None:
        gid, group_name = _group(group)
    elif entry is not None:
        gid, group_name = entry.pw_gid, _group_name(entry.pw_gid)
    else:
        raise PrivilegeError(f"user {user} has no passwd entry: give --group as well")
    if user is None:
        return Identity(None, gid, None, group_name)
    uid = entry.pw_uid if entry is not None else int(user)
    return Identity(uid, gid, entry.pw_name if entry is not None else None, group_name)


def require_root() -> None:
    if os.geteuid() != 0:
        raise PrivilegeError("--user and --group need phizer to be started as root")


def drop_privileges(identity: Identity) -> None:
    """Supplementary groups, then the group, then the user: each needs the one before."""
    try:
        if identity.user is not None:
            os.initgroups(identity.user, identity.gid)
        else:
            os.setgroups([])
        os.setgid(identity.gid)
        if identity.uid is not None:
            os.setuid(identity.uid)
    except OSError as err:
        raise PrivilegeError(f"cannot become {identity.describe()}: {err.strerror}") from None
    if identity.uid not in (None, 0) and _can_become_root():
        raise PrivilegeError(f"still able to regain root after becoming {identity.describe()}")


def accessible_as(identity: Identity, checks: Sequence[tuple[str, int]]) -> list[bool]:
    """``os.access(path, mode)`` for each check, as ``identity`` would see it.

    Asked in a short-lived child that drops privileges, so groups and ACLs
    count exactly as they will for the running service.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_fd)
            drop_privileges(identity)
            answer = "".join("1" if os.access(path, mode) else "0" for path, mode in checks)
            os.write(write_fd, answer.encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(pid, 0)
    if len(answer) != len(checks):
        raise PrivilegeError(f"cannot check file access as {identity.describe()}")
    return [flag == "1" for flag in answer]


def _passwd(user: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(user)
    except KeyError:
        pass
    if user.isdecimal():
        try:
            return pwd.getpwuid(int(user))
        except KeyError:
            return None  # a bare numeric id, common in containers
    raise PrivilegeError(f"unknown user {user!r}")


def _group(group: str) -> tuple[int, str]:
    try:
        return grp.getgrnam(group).gr_gid, group
    except KeyError:
        pass
    if group.isdecimal():
        return int(group), _group_name(int(group))
    raise PrivilegeError(f"unknown group {group!r}")


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _can_become_root() -> bool:
    try:
        os.setuid(0)
    except PermissionError:
        return False
    return True
