"""Who may do what: three roles carried by Django groups, checked in one place.

- reader: any signed-in user; reads everything and submits artifacts, datasets and experiment runs
  (CI tokens are readers).
- reviewer: also promotes or halts an artifact, with a written reason, and uploads traffic logs
  (a window can raise a red alert on the production model, and its runs take worker time; a CI
  job that uploads traffic does so with a reviewer's token).
- admin: also edits thresholds and model families and manages tokens. Staff and superusers are
  admins whatever their groups.
- owner (of a family, not a group): also versions the golden sets the family gates on and moves
  the versions it pins.

The groups are created by a data migration (registry/migrations/0002_role_groups.py).
"""

from collections.abc import Iterable
from functools import partial

from rest_framework import permissions

READER, REVIEWER, ADMIN = "reader", "reviewer", "admin"
ROLE_GROUPS = (READER, REVIEWER, ADMIN)
_CACHE_ATTRIBUTE = "_driftboard_role_groups"


def _group_names(user) -> frozenset[str]:
    """The user's role groups, read once per user object (that is, once per request)."""
    if not hasattr(user, _CACHE_ATTRIBUTE):
        names = user.groups.filter(name__in=ROLE_GROUPS).values_list("name", flat=True)
        setattr(user, _CACHE_ATTRIBUTE, frozenset(names))
    return getattr(user, _CACHE_ATTRIBUTE)


def can_administer(user) -> bool:
    if not (user and user.is_authenticated and user.is_active):
        return False
    return user.is_staff or user.is_superuser or ADMIN in _group_names(user)


def can_review(user) -> bool:
    if not (user and user.is_authenticated and user.is_active):
        return False
    return can_administer(user) or REVIEWER in _group_names(user)


def can_change_families(user, families: Iterable) -> bool:
    """Admins change any family's golden sets and pins; anyone else only families they all own.

    `families` are model families with `owners` (prefetched where there are many).
    """
    if not (user and user.is_authenticated and user.is_active):
        return False
    return can_administer(user) or all(user in family.owners.all() for family in families)


def role_of(user) -> str | None:
    """The strongest role, for display; None for anonymous visitors."""
    if can_administer(user):
        return ADMIN
    if can_review(user):
        return REVIEWER
    return READER if user and user.is_authenticated else None


def role_flags(request) -> dict:
    """Template context processor: `can_review`, `can_administer` and `role` on every page.

    Callables, so that a page that never asks costs no query (templates call them on use).
    """
    return {
        "can_review": partial(can_review, request.user),
        "can_administer": partial(can_administer, request.user),
        "role": partial(role_of, request.user),
    }


class IsReviewer(permissions.BasePermission):
    message = "Only reviewers and admins may promote or halt an artifact."

    def has_permission(self, request, view) -> bool:
        return can_review(request.user)


class IsReviewerOrReadOnly(permissions.BasePermission):
    """Any signed-in user reads; only reviewers and admins upload (traffic logs)."""

    message = "Only reviewers and admins may upload traffic: a window can raise a red alert on the production model."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in permissions.SAFE_METHODS or can_review(request.user)


class IsAdminOrReadOnly(permissions.BasePermission):
    """Any signed-in user reads; only admins write."""

    message = "Only admins may change this."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in permissions.SAFE_METHODS or can_administer(request.user)
